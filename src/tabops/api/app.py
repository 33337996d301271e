"""The FastAPI application factory."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import Depends, FastAPI

from tabops import __version__
from tabops.api.deps import require
from tabops.api.docs import install_docs
from tabops.api.errors import install_error_handlers
from tabops.api.fastpath import TabopsAPI
from tabops.api.limits import EdgeLimits, RateLimiter
from tabops.api.metrics import mount_metrics, refresh_metrics, sampling
from tabops.api.middleware import EdgeMiddleware
from tabops.api.openapi import install_openapi
from tabops.api.routes import (
    audit,
    feedback,
    health,
    lifecycle,
    monitoring,
    predict,
    summary,
    usecases,
    v2,
)
from tabops.api.services import Services, load_models
from tabops.api.shutdown import install_drain
from tabops.config import Settings
from tabops.lifecycle.registry import Registry
from tabops.serving.models import ModelSet
from tabops.telemetry.latency import RecentLatency
from tabops.telemetry.logging import configure_logging, secrets_of
from tabops.telemetry.metrics import Metrics

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger(__name__)

_DESCRIPTION = """
Predictions from tabular models trained and versioned by tabops.

Each use case has its own predict path below, with its real fields, bounds, allowed
values and an example record. Errors are always
`{"error": {"code", "message", "details": [{"field", "reason"}]}}`.
"""


def settle_heap() -> None:
    """Move everything allocated so far out of the garbage collector's sight.

    Start-up leaves a few million long-lived objects (MLflow, scikit-learn, pandas, the
    models). Each full collection walked all of them and stopped the event loop for
    50-150 ms: with the audit trail's allocations, that happened every few seconds and
    was the whole p99 (130 ms against 15 ms without it). Frozen objects are never walked
    again; in forked workers their pages also stay shared, since a collection no longer
    writes to them.
    """
    gc.collect()
    gc.freeze()


def preload_models(app: FastAPI) -> None:
    """Load every champion now, in this process, for the lifespan to use.

    For a pre-fork server (:mod:`tabops.api.prefork`): the parent loads and compiles the
    models once and the forked workers share them. The parent's heap is frozen afterwards,
    so that collections in the workers do not write to, and so copy, the shared pages.
    """
    settings: Settings = app.state.settings
    app.state.preloaded_models = load_models(settings, Registry(settings))
    settle_heap()


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Build the API. Its collaborators are opened in the lifespan, or given.

    Args:
        settings: All settings; nothing is read from the environment here.
        services: Collaborators opened by the caller, who also closes them (a test's own
            model set or registry, say). None: :meth:`Services.open` opens them from
            ``settings`` when the app starts, and closes them when it stops.
    """
    metrics = services.metrics if services is not None else Metrics.for_process()

    def sample() -> None:
        current = getattr(app.state, "services", None)
        if isinstance(current, Services):
            refresh_metrics(metrics, current.writer, current.models)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.started = (time.time(), time.monotonic())  # for /health's uptime
        async with AsyncExitStack() as stack:
            # first in, last out: the gauges are withdrawn after everything else stopped
            await stack.enter_async_context(
                sampling(metrics, sample, settings.metrics.refresh_interval_s)
            )
            opened = services
            if opened is None:
                preloaded = getattr(app.state, "preloaded_models", None)
                opened = await stack.enter_async_context(
                    Services.open(
                        settings, metrics, preloaded if isinstance(preloaded, ModelSet) else None
                    )
                )
            app.state.services = opened
            stack.callback(delattr, app.state, "services")
            settle_heap()
            install_drain(app.state, settings.api.drain_s)  # SIGTERM: /ready 503 first
            yield

    app = TabopsAPI(
        title="tabops",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from packaged files by install_docs: no CDN
        redoc_url=None,
        telemetry=(
            None
            if settings.api.opentelemetry
            else {"tracing": False, "metrics": False, "logs": False}
        ),
    )
    app.state.settings = settings
    limiter = (
        RateLimiter(settings.api.rate_limit, settings.redis_url, f"{settings.redis_prefix}:rate")
        if settings.api.rate_limit
        else None
    )
    app.state.limiter = limiter
    mount_metrics(app, metrics, sample)
    app.state.latency = RecentLatency()
    # the one middleware: request id and log context, limits, metrics (api/middleware.py)
    app.add_middleware(
        EdgeMiddleware,
        limits=EdgeLimits(
            max_body_bytes=settings.api.max_body_bytes,
            max_in_flight=settings.api.max_in_flight,
            request_timeout_s=settings.api.request_timeout_s,
            limiter=limiter,
        ),
        metrics=metrics,
        latency=app.state.latency,
        access=settings.api.access_log,
    )
    install_error_handlers(app)
    predict_role, admin_role = [Depends(require("predict"))], [Depends(require("admin"))]
    # the prediction routes: the router's are documented, and answer what the fast path
    # passes on (a GET gets their 405); the fast path's answer every POST
    app.include_router(predict.router)
    app.fast_routes = predict.direct
    app.include_router(v2.inference)
    app.include_router(health.router)
    app.include_router(v2.health)
    app.include_router(usecases.router, dependencies=predict_role)
    app.include_router(feedback.router, dependencies=predict_role)
    app.include_router(v2.router, dependencies=predict_role)
    app.include_router(audit.router, dependencies=admin_role)
    app.include_router(lifecycle.router, dependencies=admin_role)
    app.include_router(monitoring.router, dependencies=predict_role)
    app.include_router(summary.router, dependencies=predict_role)
    install_docs(app)

    def served_models() -> ModelSet | None:
        current = getattr(app.state, "services", None)
        return current.models if isinstance(current, Services) else None

    install_openapi(app, served_models, settings.api.max_batch)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment.

    It also sends the process's logs through the tabops formatter (``TABOPS_LOG__*``).
    """
    settings = Settings()
    configure_logging(settings.log.format, settings.log.level, secrets_of(settings))
    return create_app(settings)
