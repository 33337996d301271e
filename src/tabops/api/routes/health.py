"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tabops import __version__
from tabops.api.deps import EngineDep, ModelsDep
from tabops.api.schemas import Health, ModelHealth, Readiness, RecentLatencySummary
from tabops.store.db import ping

router = APIRouter(tags=["health"])

_PING_S = 0.8
"""Longest wait for the database in ``/ready``: a probe always has its answer within 1 s,
even from a hung database (the ping thread itself ends by the statement or connect
timeout)."""


@router.get("/health", response_model=Health)
async def health(request: Request) -> Health:
    """Liveness: the process answers. Also its version, uptime, loaded models and recent
    prediction latency, all read from this process's memory: no database, no registry."""
    state = request.app.state
    started = getattr(state, "started", None)
    services = getattr(state, "services", None)  # None until the lifespan opened them
    models = services.models if services is not None else None
    count, (p50, p95) = state.latency.summary((0.5, 0.95))
    return Health(
        version=__version__,
        uptime_s=round(time.monotonic() - started[1], 3) if started else 0.0,
        started_at=datetime.fromtimestamp(started[0], tz=UTC).isoformat() if started else None,
        models={
            name: ModelHealth(
                status=s.status, version=s.served.version if s.served is not None else None
            )
            for name, s in (models.states.items() if models is not None else ())
        },
        latency=RecentLatencySummary(
            window_s=state.latency.window_s,
            requests=count,
            p50_ms=None if p50 is None else round(p50 * 1000, 3),
            p95_ms=None if p95 is None else round(p95 * 1000, 3),
        ),
    )


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
