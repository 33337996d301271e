"""The model lifecycle: training jobs in worker processes, sanity checks before a version
may serve, and manual promotion or rollback.

A training job runs in its own process (``spawn``), so the API keeps answering at full
speed. Its state lives in the database: the worker writes its stage and progress there,
and the API only reads it. A job whose worker dies is marked failed, and the champion is
left untouched.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from typing import Any

from sqlalchemy import Engine

from tabops.config import Settings
from tabops.errors import SanityCheckError
from tabops.ids import uuid7
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import train_usecase
from tabops.spec.files import load_usecase
from tabops.spec.schema import UseCase
from tabops.store.db import create_db_engine
from tabops.store.jobs import (
    create_job,
    fail_orphaned_jobs,
    finish_job,
    get_job,
    renew_jobs,
    update_job,
)

__all__ = ["JobRunner", "SanityCheckError", "run_job"]

log = logging.getLogger(__name__)


def _spec_for(settings: Settings, usecase: str, model: dict[str, Any] | None) -> UseCase:
    spec = load_usecase(settings.usecases_dir, usecase)
    if model:
        update = {k: v for k, v in model.items() if k in ("family", "params")}
        spec = spec.model_copy(update={"model": spec.model.model_copy(update=update)})
    return spec


def run_job(settings: Settings, job_id: str) -> None:
    """Run one training job to its end (the body of a worker process).

    Every outcome is written to the job's record; nothing is raised.
    """

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    engine = create_db_engine(settings.database_url_resolved)
    try:
        job = get_job(engine, job_id)
        update_job(
            engine,
            job_id,
            state="running",
            stage="starting",
            started_at=datetime.now(UTC),
            worker_pid=os.getpid(),
        )
        last = 0.0

        def progress(stage: str, fraction: float) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= 0.25 or fraction >= 1.0:  # keep the database out of the hot loop
                last = now
                update_job(engine, job_id, stage=stage, progress=round(fraction, 3))

        spec = _spec_for(settings, job["usecase"], job["params"])
        outcome = train_usecase(
            spec, engine, Registry(settings), force=bool(job["force"]), progress=progress
        )
    except Exception as exc:  # the job record must say why, whatever happened
        log.exception("training job %s failed", job_id)
        finish_job(engine, job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        engine.dispose()
        return
    finish_job(
        engine,
        job_id,
        "succeeded",
        stage="done",
        progress=1.0,
        run_id=outcome.run_id,
        version=outcome.version,
        promoted=outcome.promoted,
        reason=outcome.reason,
        metrics={k: v for k, v in outcome.holdout_metrics.items() if "." not in k},
        champion_version=outcome.champion_version,
        champion_metrics=outcome.champion_metrics,
        n_rows=outcome.n_rows,
        data_sha256=outcome.data_sha256,
    )
    engine.dispose()


class JobRunner:
    """Starts this process's queued jobs in worker processes, a few at a time."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        on_finished: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.on_finished = on_finished
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._queue: deque[str] = deque()
        self._running: dict[str, BaseProcess] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_renewal = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="tabops-job-runner")

    async def stop(self) -> None:
        """Stop dispatching; running jobs are terminated and marked failed."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job_id, proc in self._running.items():
            proc.terminate()
            proc.join(timeout=10)
            await asyncio.to_thread(
                finish_job,
                self.engine,
                job_id,
                "failed",
                error="the server stopped during training",
            )

    async def submit(
        self,
        usecase: str,
        *,
        model: dict[str, Any] | None,
        force: bool,
        requested_by: str | None,
        trigger: str = "api",
    ) -> dict[str, Any]:
        """Queue a training job.

        Raises:
            JobConflictError: the use case already has an active job.
        """

        job = await asyncio.to_thread(
            create_job,
            self.engine,
            uuid7(),
            usecase,
            params=model,
            force=force,
            requested_by=requested_by,
            trigger=trigger,
        )
        self._queue.append(job["id"])
        self._wake.set()
        return job

    async def _renew(self) -> None:
        """Renew the lease of the jobs this process holds, and fail the jobs whose holder
        died (here or on another replica), every third of the lease."""
        lease = self.settings.lifecycle.job_lease_s
        if time.monotonic() < self._next_renewal:
            return
        self._next_renewal = time.monotonic() + lease / 3
        held = [*self._queue, *self._running]
        try:
            await asyncio.to_thread(renew_jobs, self.engine, held)
            failed = await asyncio.to_thread(fail_orphaned_jobs, self.engine, lease)
        except Exception:  # the database may be down: try again at the next renewal
            log.warning("training jobs: cannot renew leases", exc_info=True)
            return
        if failed:
            log.warning("training jobs: %d job(s) of a server that died marked failed", failed)

    async def _loop(self) -> None:
        while True:
            while self._queue and len(self._running) < self.settings.lifecycle.job_workers:
                job_id = self._queue.popleft()
                proc: BaseProcess = self._context.Process(
                    target=run_job, args=(self.settings, job_id), name=f"tabops-train-{job_id[:8]}"
                )
                proc.start()
                self._running[job_id] = proc
            for job_id, proc in list(self._running.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del self._running[job_id]
                job = await asyncio.to_thread(get_job, self.engine, job_id)
                if job["state"] in ("queued", "running"):
                    await asyncio.to_thread(
                        finish_job,
                        self.engine,
                        job_id,
                        "failed",
                        error=f"the training process exited with code {proc.exitcode}",
                    )
                    job = await asyncio.to_thread(get_job, self.engine, job_id)
                if self.on_finished is not None:
                    try:
                        await self.on_finished(job)
                    except Exception:  # a failed swap must not stop the runner
                        log.exception("after job %s", job_id)
            await self._renew()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=0.5 if self._running else 5.0)
            except TimeoutError:
                pass
