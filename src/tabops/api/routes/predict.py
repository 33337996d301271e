"""Predictions: one record or a batch, for a named use case or the default one; and by
entity id, with the features read from the use case's table. Transport only: the data
plane parses, validates, scores, records and shadows."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.routing import Route

from tabops.api.deps import PredictionDep, prediction_call
from tabops.serving.dataplane import Predictions

router = APIRouter(tags=["predictions"])
"""Each route admits predict-role callers through its one dependency (:data:`PredictionDep`)."""

Explain = Annotated[
    bool,
    Query(
        description="Explain each prediction: base value, per-feature contributions and "
        "reasons (a spec with `explain: always` explains without it; `never` refuses it)"
    ),
]


def _json(answer: Predictions) -> Response:
    # orjson: a 1,000-prediction answer in a tenth of the stdlib encoder's time
    return Response(orjson.dumps(answer.envelope()), media_type="application/json")


@router.post("/usecases/{name}/predict", name="predict")
async def predict(
    name: str, request: Request, prediction: PredictionDep, explain: Explain = False
) -> Response:
    """Score one record, or a batch given as `{"records": [...]}`.

    The documented request and response schemas of each use case are listed under its own
    path in these docs (`/usecases/<name>/predict`)."""
    dataplane, call = prediction.dataplane, prediction.call
    return _json(await dataplane.predict(name, await request.body(), call, explain))


@router.post("/predict", name="predict_default")
async def predict_default(
    request: Request, prediction: PredictionDep, explain: Explain = False
) -> Response:
    """Score with the default use case (`TABOPS_API__DEFAULT_USECASE`)."""
    dataplane, call = prediction.dataplane, prediction.call
    return _json(await dataplane.predict(None, await request.body(), call, explain))


@router.post("/usecases/{name}/predict/{entity_id}", name="predict_by_id")
async def predict_by_id(
    name: str, entity_id: str, prediction: PredictionDep, explain: Explain = False
) -> Response:
    """Score the entity whose features are stored in the use case's table under this id."""
    dataplane, call = prediction.dataplane, prediction.call
    return _json(await dataplane.predict_by_id(name, entity_id, call, explain))


# The same three routes, served without FastAPI's request handling. The routes above stay
# for the OpenAPI document; these are served by the app's fast path (api/fastpath.py), so
# they answer. FastAPI's per-request work on a route (its dependency solver, the query and path
# parameter models) was about a tenth of an audited prediction's CPU; here the one
# dependency is called directly and the one query parameter read by the same rules.

_BOOL = TypeAdapter(bool)


def _explain(request: Request) -> bool:
    """The ``explain`` query parameter, as FastAPI would read it (a 422 naming it)."""
    if not request.scope["query_string"]:  # the common case: no query to parse
        return False
    raw = request.query_params.get("explain")
    if raw is None:
        return False
    try:
        return _BOOL.validate_python(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", "explain")} for error in exc.errors()]
        ) from None


async def _predict(request: Request) -> Response:
    prediction = await prediction_call(request)
    body = await request.body()
    name = request.path_params.get("name")
    return _json(await prediction.dataplane.predict(name, body, prediction.call, _explain(request)))


async def _predict_by_id(request: Request) -> Response:
    prediction = await prediction_call(request)
    name, entity_id = request.path_params["name"], request.path_params["entity_id"]
    answer = await prediction.dataplane.predict_by_id(
        name, entity_id, prediction.call, _explain(request)
    )
    return _json(answer)


direct = [
    Route("/usecases/{name}/predict", _predict, methods=["POST"], include_in_schema=False),
    Route("/predict", _predict, methods=["POST"], include_in_schema=False),
    Route(
        "/usecases/{name}/predict/{entity_id}",
        _predict_by_id,
        methods=["POST"],
        include_in_schema=False,
    ),
]
"""The prediction routes as served, ahead of the framework (:mod:`tabops.api.fastpath`)."""
