"""The audit trail: recorded predictions, their requests and feedback."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BeforeValidator

from tabops.api.deps import DataPlaneDep, EngineDep, UseCaseDep
from tabops.api.schemas import PredictionPage, RecordedPrediction
from tabops.store.queries import PredictionFilter, get_prediction, list_predictions

CURSOR = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
"""What a listing's ``next`` looks like: a prediction id."""

router = APIRouter(tags=["audit"])

_NUMBER = re.compile(r"\s*[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?\s*")


def _iso_only(value: Any) -> Any:
    # pydantic also reads a number as Unix seconds: the documented form is ISO 8601 only
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_only)]


@router.get("/usecases/{name}/predictions", response_model=PredictionPage)
async def predictions(
    name: str,
    _usecase: UseCaseDep,
    engine: EngineDep,
    dataplane: DataPlaneDep,
    since: Annotated[IsoTime | None, Query(description="From this time (ISO 8601)")] = None,
    until: Annotated[IsoTime | None, Query(description="Before this time (ISO 8601)")] = None,
    model_version: Annotated[str | None, Query()] = None,
    label: Annotated[str | None, Query()] = None,
    has_feedback: Annotated[bool | None, Query()] = None,
    entity_id: Annotated[
        str | None,
        Query(description="A client's history: predictions made by id for this entity"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[
        str | None,
        Query(description="Cursor: the `next` of the previous page", pattern=CURSOR),
    ] = None,
) -> dict[str, Any]:
    """Recorded predictions of a use case, newest first, filtered and paginated."""
    # rows keep the entity id pseudonymised: match it through the same keyed hash
    pseudonym = dataplane.pseudonymizer.hash(entity_id) if entity_id is not None else None
    where = PredictionFilter(since, until, model_version, label, has_feedback, pseudonym)
    items, cursor = await run_in_threadpool(list_predictions, engine, name, where, limit, after)
    return {"items": items, "next": cursor}


@router.get("/usecases/{name}/predictions/{prediction_id}", response_model=RecordedPrediction)
async def prediction(
    name: str, prediction_id: str, _usecase: UseCaseDep, engine: EngineDep
) -> dict[str, Any]:
    """One recorded prediction: its inputs, output, request and every feedback received."""
    return await run_in_threadpool(get_prediction, engine, name, prediction_id)
