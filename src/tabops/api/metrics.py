"""``GET /metrics``, and the middleware that times every HTTP request of any FastAPI app
(:func:`install_metrics`; the tabops app counts its requests in its one middleware,
:class:`~tabops.api.middleware.EdgeMiddleware`, with the same labels).

The middleware is plain ASGI, not ``BaseHTTPMiddleware``: it only wraps ``send`` to read
the status code and, once the response is sent, reads the route template the router put
in the scope (``scope["route"].path``), so that ``/usecases/credit/predict`` counts as
``/usecases/{name}/predict``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tabops.serving.models import ModelSet
from tabops.store.audit import AuditWriter
from tabops.telemetry.metrics import CONTENT_TYPE, Metrics

__all__ = [
    "UNMATCHED_ROUTE",
    "MetricsMiddleware",
    "install_metrics",
    "mount_metrics",
    "refresh_metrics",
    "sampling",
]

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


def refresh_metrics(metrics: Metrics, writer: AuditWriter | None, models: ModelSet | None) -> None:
    """Sample what this process holds: the audit writer's state and the loaded models.

    A failure is logged, never raised: a metric must not fail a scrape or the server
    (the spool size, for one, races with the writer deleting replayed files).

    Args:
        metrics: Where to publish.
        writer: The audit writer, if any.
        models: The model set, once loaded.
    """
    try:
        if writer is not None:
            metrics.record_audit(writer.stats())
        for name, usecase in (models.states if models is not None else {}).items():
            served = usecase.served
            if served is not None:
                loaded_at = served.loaded.loaded_at.timestamp()
                metrics.set_model(name, served.version, served.scorer.path, loaded_at)
    except Exception:
        log.exception("metrics: sampling failed")


Sample = Callable[[], None]
"""Refreshes the sampled gauges (blocking: run in a thread)."""


def _nothing() -> None:
    return None


def mount_metrics(app: FastAPI, metrics: Metrics, sample: Sample = _nothing) -> None:
    """Expose ``metrics`` at ``GET /metrics``. (Requests are counted by a middleware: the
    tabops app's :class:`~tabops.api.middleware.EdgeMiddleware`, or
    :class:`MetricsMiddleware` through :func:`install_metrics`.)

    Args:
        app: The application, before it starts.
        metrics: The metrics of this process.
        sample: Run before each scrape, to refresh the sampled gauges.
    """

    async def endpoint() -> Response:
        """Prometheus metrics of every worker process, in text format."""

        def scrape() -> bytes:
            sample()
            return metrics.exposition()

        # reading every process's files is file I/O: keep it off the event loop
        return Response(await run_in_threadpool(scrape), media_type=CONTENT_TYPE)

    app.add_api_route(
        "/metrics", endpoint, methods=["GET"], include_in_schema=False, name="metrics"
    )


@asynccontextmanager
async def sampling(metrics: Metrics, sample: Sample, interval_s: float) -> AsyncIterator[None]:
    """While open, refresh this process's sampled gauges every ``interval_s`` seconds.

    Every worker runs one, so all workers' values are fresh whichever worker answers a
    scrape. On entry the live gauges of processes that died are reaped; on exit this
    process's are withdrawn (``mark_process_dead``).
    """
    await asyncio.to_thread(metrics.reap_dead_processes)

    async def loop() -> None:
        while True:
            await asyncio.to_thread(sample)
            await asyncio.sleep(interval_s)

    sampler = asyncio.create_task(loop(), name="tabops-metrics")
    try:
        yield
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        metrics.close()


def install_metrics(app: FastAPI, metrics: Metrics, refresh_interval_s: float = 5.0) -> None:
    """Metrics for any FastAPI app: :func:`mount_metrics`, and :func:`sampling` around the
    application's own lifespan. (The tabops app opens both in its one lifespan.)

    Args:
        app: The application, before it starts.
        metrics: The metrics of this process.
        refresh_interval_s: Seconds between two samples.
    """
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    mount_metrics(app, metrics)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state, sampling(metrics, _nothing, refresh_interval_s):
            yield state

    app.router.lifespan_context = lifespan
