"""The long-lived collaborators of an API process, opened and closed in one place.

:meth:`Services.open` opens them in order on an :class:`~contextlib.AsyncExitStack`: each
one's cleanup is registered as soon as it is open, so a start-up that fails halfway (an
unknown default use case, a registry that will not load) closes what was already open, the
audit writer and the database engine among them, before the error propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from tabops.api.auth import Authenticator
from tabops.api.startup import retry_in_background, try_database
from tabops.config import Settings
from tabops.lifecycle.jobs import JobRunner
from tabops.lifecycle.registry import Registry
from tabops.monitoring.monitor import Monitor
from tabops.serving.dataplane import DataPlane
from tabops.serving.models import ModelSet
from tabops.store.audit import AuditWriter
from tabops.store.db import create_db_engine
from tabops.store.jobs import count_jobs, fail_orphaned_jobs
from tabops.store.migrate import upgrade
from tabops.store.partitions import keep_months
from tabops.store.privacy import Pseudonymizer
from tabops.telemetry.metrics import Metrics

__all__ = ["Services", "load_models"]


def load_models(settings: Settings, registry: Registry) -> ModelSet:
    """Load the champion of every use case the settings name (blocking)."""
    return ModelSet.load(
        registry,
        settings.usecases_dir,
        settings.api.usecases,
        settings.api.default_usecase,
        settings.api.compiled,
    )


@dataclass
class Services:
    """Everything the routes reach: built by :meth:`open`, or by a test with its own
    collaborators."""

    settings: Settings
    engine: Engine
    registry: Registry
    models: ModelSet
    dataplane: DataPlane
    auth: Authenticator
    metrics: Metrics
    jobs: JobRunner
    monitor: Monitor
    writer: AuditWriter | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, metrics: Metrics, models: ModelSet | None = None
    ) -> AsyncIterator[Services]:
        """Open the engine, the audit writer, the models, the job runner and the
        background tasks (registry follower, monitor); close them all on exit, or when
        opening one of them fails.

        Args:
            settings: All settings.
            metrics: This process's metrics.
            models: Champions already loaded (a pre-fork parent's), else loaded here.
        """
        async with AsyncExitStack() as stack:
            # timeouts: a hung or unreachable database fails fast and records go to the spool
            engine = create_db_engine(
                settings.database_url_resolved, echo=settings.db.echo, timeouts=settings.db
            )
            stack.callback(engine.dispose)
            # a process must start while the database is down (api/startup.py): the steps
            # that need it are deferred and retried in the background
            if settings.audit.migrate_on_start and not await try_database(
                "migrations", upgrade, engine
            ):
                _cancel_on_close(stack, retry_in_background("migrations", upgrade, engine))
            registry = Registry(settings)
            writer = None
            if settings.audit.enabled:
                writer = AuditWriter(engine, settings.audit, settings.spool_dir, settings.db)
                await writer.start()
                stack.push_async_callback(writer.stop)
            if models is None:
                models = await run_in_threadpool(load_models, settings, registry)
            # a challenger set before start-up scores too; a champion moved since the
            # parent process preloaded the models is loaded here
            await models.refresh(registry)
            lease = settings.lifecycle.job_lease_s
            if not await try_database("orphaned jobs", fail_orphaned_jobs, engine, lease):
                _cancel_on_close(
                    stack, retry_in_background("orphaned jobs", fail_orphaned_jobs, engine, lease)
                )
            loaded = models

            async def after_job(job: dict[str, Any]) -> None:
                metrics.set_jobs(await run_in_threadpool(count_jobs, engine))
                if job.get("promoted"):
                    await loaded.refresh(registry, [job["usecase"]])  # no wait for the next poll

            jobs = JobRunner(settings, engine, on_finished=after_job)
            await jobs.start()
            stack.push_async_callback(jobs.stop)
            monitor = Monitor(
                engine, models, settings.monitor.interval_s, metrics, submit=jobs.submit
            )
            await _background(
                stack, models.follow(registry, settings.lifecycle.poll_interval_s), "tabops-follow"
            )
            if settings.monitor.enabled:
                await _background(stack, monitor.run(), "tabops-monitor")
            await _background(stack, keep_months(engine), "tabops-partitions")
            dataplane = DataPlane(
                models,
                writer,
                Pseudonymizer(settings.audit.pseudonym_key.get_secret_value()),
                engine,
                metrics,
                max_batch=settings.api.max_batch,
                coalesce_us=settings.api.coalesce_us,
            )
            yield cls(
                settings=settings,
                engine=engine,
                registry=registry,
                models=models,
                dataplane=dataplane,
                auth=Authenticator(settings.auth, engine),
                metrics=metrics,
                jobs=jobs,
                monitor=monitor,
                writer=writer,
            )


async def _background(stack: AsyncExitStack, work: Any, name: str) -> None:
    """Run a coroutine as a task until the stack closes, then cancel it."""
    _cancel_on_close(stack, asyncio.create_task(work, name=name))


def _cancel_on_close(stack: AsyncExitStack, task: asyncio.Task[Any]) -> None:
    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task  # a task that had failed has logged why already

    stack.push_async_callback(cancel)
