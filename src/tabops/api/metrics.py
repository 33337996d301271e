"""``GET /metrics`` and the middleware that times every HTTP request.

The middleware is plain ASGI, not ``BaseHTTPMiddleware``: it sits on the hot path of every
prediction, so it only wraps ``send`` to read the status code and, once the response is
sent, reads the route template the router put in the scope (``scope["route"].path``), so
that ``/usecases/credit/predict`` counts as ``/usecases/{name}/predict``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tabops.telemetry.metrics import CONTENT_TYPE, Metrics

__all__ = ["UNMATCHED_ROUTE", "MetricsMiddleware", "install_metrics", "refresh_metrics"]

log = logging.getLogger(__name__)

UNMATCHED_ROUTE = "(unmatched)"
"""The ``route`` label of requests no route matched (404): raw paths would be unbounded."""


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status code.

    Args:
        app: The application to wrap.
        metrics: Where to record.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before responding

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or UNMATCHED_ROUTE
            elapsed = time.perf_counter() - started
            self.metrics.observe_request(scope["method"], path, status, elapsed)


def refresh_metrics(metrics: Metrics, state: State) -> None:
    """Sample what this process holds: the audit writer's state and the loaded models.

    A failure is logged, never raised: a metric must not fail a scrape or the server
    (the spool size, for one, races with the writer deleting replayed files).

    Args:
        metrics: Where to publish.
        state: The application state (``audit`` and ``models`` once the lifespan ran).
    """
    try:
        writer = getattr(state, "audit", None)
        if writer is not None:
            metrics.record_audit(writer.stats())
        models = getattr(state, "models", None)
        for name, usecase in (models.states if models is not None else {}).items():
            served = usecase.served
            if served is not None:
                loaded_at = served.loaded.loaded_at.timestamp()
                metrics.set_model(name, served.version, served.scorer.path, loaded_at)
    except Exception:
        log.exception("metrics: sampling failed")


async def _sample(metrics: Metrics, state: State, interval_s: float) -> None:
    """Refresh the sampled gauges of this process on a timer. Every worker runs one, so
    all workers' values are fresh whichever worker answers a scrape."""
    while True:
        await asyncio.to_thread(refresh_metrics, metrics, state)
        await asyncio.sleep(interval_s)


def _scrape(metrics: Metrics, state: State) -> bytes:
    refresh_metrics(metrics, state)
    return metrics.exposition()


async def _metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics of every worker process, in text format."""
    metrics: Metrics = request.app.state.metrics
    # reading every process's files is file I/O: keep it off the event loop
    body = await run_in_threadpool(_scrape, metrics, request.app.state)
    return Response(body, media_type=CONTENT_TYPE)


def install_metrics(app: FastAPI, metrics: Metrics, refresh_interval_s: float = 5.0) -> None:
    """Expose ``metrics`` at ``GET /metrics`` and record every request in it.

    Sets ``app.state.metrics``, adds :class:`MetricsMiddleware` and the route, and wraps
    the application's lifespan: once it has started, this process's gauges are sampled
    every ``refresh_interval_s`` seconds, and when it stops, this process's live gauges are
    withdrawn (``mark_process_dead``), after those of processes that died are reaped.

    Args:
        app: The application, before it starts.
        metrics: The metrics of this process.
        refresh_interval_s: Seconds between two samples of the audit writer and models.
    """
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_api_route(
        "/metrics", _metrics_endpoint, methods=["GET"], include_in_schema=False, name="metrics"
    )
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:
            await asyncio.to_thread(metrics.reap_dead_processes)
            sampler = asyncio.create_task(
                _sample(metrics, app.state, refresh_interval_s), name="tabops-metrics"
            )
            try:
                yield state
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
                metrics.close()

    app.router.lifespan_context = lifespan
