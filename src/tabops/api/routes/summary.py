"""The dashboard summary of a use case: its figures over a window, from the audit store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from tabops.api.deps import EngineDep, ModelsDep, services_of
from tabops.store.summary import parse_window, summarize

__all__ = ["router"]

router = APIRouter(tags=["monitoring"])

_PREDICT_ROUTES = frozenset(
    {"/usecases/{name}/predict", "/usecases/{name}/predict/{entity_id}", "/predict"}
)


class LatencySummary(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    max: float | None


class ScoreHistogram(BaseModel):
    edges: list[float] = Field(description="Bin edges over [0, 1]")
    counts: list[int]


class TimelinePoint(BaseModel):
    start: datetime = Field(description="Start of the bucket (UTC)")
    label: str
    count: int


class ErrorSummary(BaseModel):
    """Prediction calls answered by this server since it started (every use case): the
    audit store records only the predictions that were served."""

    requests: int
    rejected: int = Field(description="Answered with a 4xx status (invalid input, bad key)")
    failed: int = Field(description="Answered with a 5xx status")
    rate: float | None = Field(description="Share of calls that were rejected or failed")


class UseCaseFigures(BaseModel):
    """A use case's figures over a time window, computed by the database."""

    usecase: str
    window: str
    since: datetime | None
    until: datetime
    predictions: int = Field(description="Predictions served (shadow scores excluded)")
    requests: int = Field(description="Prediction calls (a batch is one call)")
    first_at: datetime | None
    last_at: datetime | None
    labels: dict[str, int] = Field(description="Predictions per label")
    positive_class: str | None
    positive_rate: float | None = Field(description="Share predicted as the positive class")
    mean_score: float | None
    latency_ms: LatencySummary = Field(description="Scoring time of each call")
    feedback: int = Field(description="Feedback received in the window")
    score_histogram: ScoreHistogram
    bucket_s: int = Field(description="Width of the timeline's buckets in seconds")
    timeline: list[TimelinePoint]
    errors: ErrorSummary


def _errors(request: Request) -> ErrorSummary:
    """Prediction calls by outcome, from this process's HTTP request counter."""
    total = rejected = failed = 0
    for family in services_of(request.app).metrics.registry.collect():
        if family.name != "tabops_http_requests":
            continue
        for sample in family.samples:
            if (
                not sample.name.endswith("_total")
                or sample.labels.get("route") not in _PREDICT_ROUTES
            ):
                continue
            count = int(sample.value)
            status = sample.labels.get("status", "")
            total += count
            rejected += count if status.startswith("4") else 0
            failed += count if status.startswith("5") else 0
    rate = (rejected + failed) / total if total else None
    return ErrorSummary(requests=total, rejected=rejected, failed=failed, rate=rate)


@router.get("/usecases/{name}/summary", response_model=UseCaseFigures)
async def summary(
    name: str,
    request: Request,
    models: ModelsDep,
    engine: EngineDep,
    window: Annotated[
        str, Query(description="How far back: 30m, 24h, 7d (a number and m, h or d), or all")
    ] = "24h",
) -> UseCaseFigures:
    """Predictions, positive rate, scoring latency (p50/p95/p99), score distribution,
    predictions over time by label and feedback count over a window, aggregated by the
    database; and the error rate of prediction calls answered by this server."""
    spec = models.state(name).spec
    parsed = parse_window(window)
    figures: dict[str, Any] = await run_in_threadpool(
        summarize, engine, name, spec.target.classes, spec.positive_class, parsed
    )
    return UseCaseFigures(**figures, errors=_errors(request))
