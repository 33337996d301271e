"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tabops.api.deps import EngineDep, ModelsDep
from tabops.api.schemas import Health, Readiness
from tabops.store.db import ping

router = APIRouter(tags=["health"])

_PING_S = 0.8
"""Longest wait for the database in ``/ready``: a probe always has its answer within 1 s,
even from a hung database (the ping thread itself ends by the statement or connect
timeout)."""


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process answers."""
    return Health()


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request, models: ModelsDep, engine: EngineDep) -> JSONResponse:
    """Readiness: every champion is loaded and the database answers (503 otherwise, and
    503 at once when the server is shutting down). Answers within 1 s."""
    try:
        database_ok = await asyncio.wait_for(asyncio.to_thread(ping, engine), _PING_S)
    except TimeoutError:
        database_ok = False
    draining = bool(getattr(request.app.state, "draining", False))
    ok = database_ok and models.ready() and not draining
    body = Readiness(
        status="ready" if ok else ("draining" if draining else "not ready"),
        database="ok" if database_ok else "unreachable",
        usecases={n: s.status for n, s in models.states.items()},
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
