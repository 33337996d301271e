"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

from tabops import __version__
from tabops.api.auth import Authenticator, require
from tabops.api.context import RequestContextMiddleware
from tabops.api.errors import install_error_handlers
from tabops.api.metrics import install_metrics
from tabops.api.openapi import install_openapi
from tabops.api.routes import (
    audit,
    feedback,
    health,
    lifecycle,
    monitoring,
    predict,
    usecases,
)
from tabops.config import Settings
from tabops.lifecycle import JobRunner
from tabops.monitoring.metrics import Metrics
from tabops.monitoring.monitor import Monitor
from tabops.registry import Registry
from tabops.serving import ModelSet, Predictor
from tabops.store import create_db_engine
from tabops.store.audit import AuditWriter
from tabops.store.jobs import count_jobs, fail_orphaned_jobs
from tabops.store.migrate import upgrade
from tabops.store.privacy import Pseudonymizer
from tabops.telemetry.latency import RecentLatency
from tabops.telemetry.logging import configure_logging, secrets_of

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


def _load_models(settings: Settings, registry: Registry) -> ModelSet:
    return ModelSet.load(
        registry,
        settings.usecases_dir,
        settings.api.usecases,
        settings.api.default_usecase,
        settings.api.compiled,
    )


def preload_models(app: FastAPI) -> None:
    """Load every champion now, in this process, for the lifespan to use.

    For a pre-fork server (:mod:`tabops.api.prefork`): the parent loads and compiles the
    models once and the forked workers share them. The parent's heap is frozen afterwards,
    so that collections in the workers do not write to, and so copy, the shared pages.
    """
    settings: Settings = app.state.settings
    app.state.preloaded_models = _load_models(settings, Registry(settings))
    settle_heap()


def create_app(settings: Settings) -> FastAPI:
    """Build the API. Models and the database engine are opened in the lifespan.

    Args:
        settings: All settings; nothing is read from the environment here.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.started = (time.time(), time.monotonic())  # for /health's uptime
        engine = create_db_engine(settings.database_url_resolved, echo=settings.db.echo)
        if settings.audit.migrate_on_start:
            await run_in_threadpool(upgrade, engine)
        registry = Registry(settings)
        writer = None
        if settings.audit.enabled:
            writer = AuditWriter(engine, settings.audit, settings.spool_dir)
            await writer.start()
        pseudonymizer = Pseudonymizer(settings.audit.pseudonym_key.get_secret_value())
        app.state.engine = engine
        app.state.auth = Authenticator(settings.auth, engine)
        app.state.registry = registry
        app.state.audit = writer
        app.state.predictor = Predictor(
            writer, pseudonymizer, app.state.metrics, settings.api.coalesce_us
        )
        preloaded: ModelSet | None = getattr(app.state, "preloaded_models", None)
        if preloaded is None:
            preloaded = await run_in_threadpool(_load_models, settings, registry)
        models: ModelSet = preloaded
        app.state.models = models
        # a challenger set before start-up scores too; a champion moved since the
        # parent process preloaded the models is loaded here
        await models.refresh(registry)
        await run_in_threadpool(fail_orphaned_jobs, engine, settings.lifecycle.job_lease_s)

        async def after_job(job: dict[str, Any]) -> None:
            app.state.metrics.set_jobs(await run_in_threadpool(count_jobs, engine))
            if job.get("promoted"):
                await models.refresh(registry, [job["usecase"]])  # no wait for the next poll

        jobs = JobRunner(settings, engine, on_finished=after_job)
        await jobs.start()
        app.state.jobs = jobs
        follower = asyncio.create_task(
            models.follow(registry, settings.lifecycle.poll_interval_s), name="tabops-follow"
        )
        monitor = Monitor(
            engine, models, settings.monitor.interval_s, app.state.metrics, submit=jobs.submit
        )
        app.state.monitor = monitor
        watcher = (
            asyncio.create_task(monitor.run(), name="tabops-monitor")
            if settings.monitor.enabled
            else None
        )
        settle_heap()
        try:
            yield
        finally:
            follower.cancel()
            if watcher is not None:
                watcher.cancel()
            await jobs.stop()
            if writer is not None:
                await writer.stop()
            engine.dispose()

    app = FastAPI(
        title="tabops",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_metrics(app, Metrics.for_process(), settings.metrics.refresh_interval_s)
    app.state.latency = RecentLatency()
    # outermost: the request id and log context cover the metrics and every handler
    app.add_middleware(
        RequestContextMiddleware, latency=app.state.latency, access=settings.api.access_log
    )
    install_error_handlers(app)
    predict_role, admin_role = [Depends(require("predict"))], [Depends(require("admin"))]
    app.include_router(health.router)
    app.include_router(usecases.router, dependencies=predict_role)
    app.include_router(predict.router, dependencies=predict_role)
    app.include_router(feedback.router, dependencies=predict_role)
    app.include_router(audit.router, dependencies=admin_role)
    app.include_router(lifecycle.router, dependencies=admin_role)
    app.include_router(monitoring.router, dependencies=predict_role)
    install_openapi(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment.

    It also sends the process's logs through the tabops formatter (``TABOPS_LOG__*``).
    """
    settings = Settings()
    configure_logging(settings.log.format, settings.log.level, secrets_of(settings))
    return create_app(settings)
