"""Predictions: one record or a batch, for a named use case or the default one; and by
entity id, with the features read from the use case's table. Transport only: the data
plane parses, validates, scores, records and shadows."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tabops.api.deps import PredictionDep
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
