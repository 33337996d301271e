"""Predictions: one record or a batch, for a named use case or the default one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from tabops.api.deps import ModelsDep, SettingsDep
from tabops.serving import ServedModel, new_prediction_id, parse_json

router = APIRouter(tags=["predictions"])


async def _predict(served: ServedModel, request: Request, max_batch: int) -> JSONResponse:
    payload = parse_json(await request.body())
    records, is_batch = served.parse_records(payload, max_batch)
    # the pipeline is CPU work: keep it off the event loop
    scores = await run_in_threadpool(served.scorer.score, records)
    version = served.scorer.version
    predictions: list[dict[str, Any]] = [
        {
            "prediction_id": new_prediction_id(),
            "label": label,
            "probabilities": probabilities,
            "threshold": scores.threshold,
            "model_version": version,
        }
        for label, probabilities in zip(scores.labels, scores.probability_dicts(), strict=True)
    ]
    if is_batch:
        return JSONResponse({"model_version": version, "predictions": predictions})
    return JSONResponse(predictions[0])


@router.post("/usecases/{name}/predict", name="predict")
async def predict(
    name: str, request: Request, models: ModelsDep, settings: SettingsDep
) -> JSONResponse:
    """Score one record, or a batch given as `{"records": [...]}`.

    The documented request and response schemas of each use case are listed under its own
    path in these docs (`/usecases/<name>/predict`)."""
    return await _predict(models.served(name), request, settings.api.max_batch)


@router.post("/predict", name="predict_default")
async def predict_default(
    request: Request, models: ModelsDep, settings: SettingsDep
) -> JSONResponse:
    """Score with the default use case (`TABOPS_API__DEFAULT_USECASE`)."""
    return await _predict(models.served(models.default or ""), request, settings.api.max_batch)
