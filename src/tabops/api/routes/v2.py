"""The Open Inference Protocol (V2) over REST, as KServe, MLServer and Triton speak it, so
their clients work unchanged. Transport only: the data plane validates, scores, records,
counts and shadows exactly as for ``POST /usecases/{name}/predict``.

Errors under ``/v2`` are the protocol's ``{"error": "..."}`` (see ``api/errors.py``).
Health answers with its status code only: 200 for true, 400 for false.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from tabops.api.deps import DataPlaneDep, PredictionDep
from tabops.serving.dataplane import (
    CallInfo,
    DataPlane,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
)

__all__ = ["health", "inference", "router"]

health = APIRouter(prefix="/v2", tags=["open inference protocol"])
"""Probes: no API key, like ``/health`` and ``/ready``."""
router = APIRouter(prefix="/v2", tags=["open inference protocol"])
"""Metadata and readiness of models: a predict-role key (the app's router dependency)."""
inference = APIRouter(prefix="/v2", tags=["open inference protocol"])
"""Inference: each route admits predict-role callers through its one dependency
(:data:`PredictionDep`), which also hands it the data plane and the call."""


def _status(ok: bool) -> Response:
    return Response(status_code=200 if ok else 400)


@health.get("/health/live", name="v2_live")
async def live() -> Response:
    """The server is live."""
    return _status(True)


@health.get("/health/ready", name="v2_ready")
async def ready(dataplane: DataPlaneDep) -> Response:
    """Every champion is loaded (untrained use cases have nothing to load)."""
    return _status(dataplane.models.ready())


@router.get("", response_model=MetadataServerResponse, name="v2_server_metadata")
async def server_metadata(dataplane: DataPlaneDep) -> MetadataServerResponse:
    """Server name, version and protocol extensions."""
    return dataplane.server_metadata()


@router.get("/models/{name}", response_model=MetadataModelResponse, name="v2_model_metadata")
async def model_metadata(name: str, dataplane: DataPlaneDep) -> MetadataModelResponse:
    """A use case's model: one input per feature, the outputs `label` and `probabilities`,
    and its classes in column order (`parameters.classes`)."""
    return dataplane.metadata(name)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=MetadataModelResponse,
    name="v2_model_version_metadata",
)
async def model_version_metadata(
    name: str, version: str, dataplane: DataPlaneDep
) -> MetadataModelResponse:
    """The metadata of the version served (404 for any other)."""
    return dataplane.metadata(name, version)


@router.get("/models/{name}/ready", name="v2_model_ready")
async def model_ready(name: str, dataplane: DataPlaneDep) -> Response:
    """The use case has a champion loaded (404 for an unknown one)."""
    return _status(dataplane.model_state(name).served is not None)


@router.get("/models/{name}/versions/{version}/ready", name="v2_model_version_ready")
async def model_version_ready(name: str, version: str, dataplane: DataPlaneDep) -> Response:
    """This version is the one loaded."""
    return _status(dataplane.model_state(name, version).served is not None)


_INFER = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}
        },
    }
}
"""The body is read raw (it may carry binary tensor data), so its schema is named here."""


async def _infer(
    name: str, version: str | None, request: Request, dataplane: DataPlane, call: CallInfo
) -> Response:
    length = request.headers.get("inference-header-content-length")
    try:
        header_length = int(length) if length is not None else None
    except ValueError:
        header_length = -1  # refused by the data plane, which says why
    answer = await dataplane.infer(name, version, await request.body(), call, header_length)
    body = orjson.dumps(answer.model_dump(exclude_none=True))
    return Response(body, media_type="application/json")


@inference.post(
    "/models/{name}/infer",
    response_model=InferenceResponse,
    openapi_extra=_INFER,
    name="v2_infer",
)
async def infer(name: str, request: Request, prediction: PredictionDep) -> Response:
    """Score the records of the input tensors: one tensor per feature, or one row-major
    `[n, n_features]` tensor in feature order. The response's `parameters.prediction_ids`
    name the recorded predictions, for feedback. With `parameters: {"explain": true}` (or
    the `explanation` output named, or a spec saying `explain: always`) the response adds
    the output `explanation`: a BYTES tensor of shape `[n]`, each row's explanation as JSON."""
    return await _infer(name, None, request, prediction.dataplane, prediction.call)


@inference.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferenceResponse,
    openapi_extra=_INFER,
    name="v2_infer_version",
)
async def infer_version(
    name: str, version: str, request: Request, prediction: PredictionDep
) -> Response:
    """Score with this version, if it is the one served (404 otherwise)."""
    return await _infer(name, version, request, prediction.dataplane, prediction.call)
