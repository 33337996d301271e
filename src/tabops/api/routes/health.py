"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from tabops.api.deps import EngineDep, ModelsDep
from tabops.api.schemas import Health, Readiness
from tabops.store.db import ping

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process answers."""
    return Health()


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(models: ModelsDep, engine: EngineDep) -> JSONResponse:
    """Readiness: every champion is loaded and the database answers (503 otherwise)."""
    database_ok = await run_in_threadpool(ping, engine)
    ok = database_ok and models.ready()
    body = Readiness(
        status="ready" if ok else "not ready",
        database="ok" if database_ok else "unreachable",
        usecases={n: s.status for n, s in models.states.items()},
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
