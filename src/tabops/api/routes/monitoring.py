"""Monitoring: drift of live inputs against the reference, its history, live quality, and
the features live predictions lean on (their recorded explanations)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from tabops.api.deps import (
    EngineDep,
    KeyDep,
    MetricsSinkDep,
    ServedDep,
    SettingsDep,
    UseCaseDep,
)
from tabops.errors import PermissionDeniedError
from tabops.monitoring.influence import live_influence
from tabops.monitoring.quality import live_performance, run_drift
from tabops.monitoring.report import render_html
from tabops.store.monitoring import drift_history

router = APIRouter(tags=["monitoring"])


@router.get(
    "/usecases/{name}/drift",
    response_model=None,
    responses={
        200: {
            "description": "The drift report (JSON), or with `format=html` a self-contained page",
            "content": {"application/json": {}, "text/html": {"schema": {"type": "string"}}},
        }
    },
)
async def drift(
    name: str,
    served: ServedDep,
    key: KeyDep,
    settings: SettingsDep,
    engine: EngineDep,
    sink: MetricsSinkDep,
    window: Annotated[
        int | None, Query(ge=10, le=100_000, description="Live rows (default: the spec's)")
    ] = None,
    format: Annotated[Literal["json", "html"], Query()] = "json",
) -> JSONResponse | HTMLResponse:
    """Compare the champion's recent live inputs, scores and labels with its reference
    sample: per-feature statistics, p-values, effect sizes and the use case's tier
    (stable, watch, retrain, or insufficient_data). The run is stored in the history.
    `?format=html` gives a self-contained report with per-feature histograms.
    A window over `TABOPS_API__MAX_DRIFT_WINDOW` (10,000) needs an admin key."""
    # a run costs seconds of CPU per 100k rows and stores a history row: bounded for
    # predict keys (the role was checked by the router's dependency)
    if (
        window is not None
        and window > settings.api.max_drift_window
        and (key is None or key.role != "admin")
    ):
        raise PermissionDeniedError(
            f"a drift window over {settings.api.max_drift_window} rows needs an admin key"
        )
    report, hists = await run_in_threadpool(run_drift, engine, served.loaded, window)
    sink(report)
    if format == "html":
        return HTMLResponse(render_html(report, hists, served.spec.title))
    body = report.as_dict()
    body["histograms"] = {k: h.as_dict() for k, h in hists.items()}
    return JSONResponse(body)


@router.get("/usecases/{name}/drift/history")
async def history(
    name: str,
    _usecase: UseCaseDep,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """Stored drift runs, newest first: time, model version, window, tier."""
    return await run_in_threadpool(drift_history, engine, name, limit)


@router.get("/usecases/{name}/performance")
async def performance(
    name: str,
    served: ServedDep,
    engine: EngineDep,
    window: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    model_version: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """Live quality of the champion (or another version): measured from feedback where it
    exists (accuracy, F1, ROC AUC, Brier score, calibration), estimated from the model's
    probabilities before labels arrive (CBPE), beside the hold-out figures."""
    return await run_in_threadpool(live_performance, engine, served.loaded, window, model_version)


@router.get("/usecases/{name}/explanations")
async def explanations(
    name: str,
    served: ServedDep,
    engine: EngineDep,
    window: Annotated[
        int | None,
        Query(ge=1, le=100_000, description="Explained predictions to average (default 1,000)"),
    ] = None,
) -> dict[str, Any]:
    """The global view: each feature's mean absolute contribution over the champion's last
    `window` explained live predictions, beside its training importance (permutation
    importance on the hold-out), compared by rank (`rank_correlation`, and
    `shift = (1 - rho) / 2`). `explanations` is the count averaged."""
    return await run_in_threadpool(live_influence, engine, served.loaded, window)
