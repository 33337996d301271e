"""The server's periodic monitor: refresh drift and live quality for every served use
case (gauges and the drift history), and close the loop where the spec asks for it by
starting a training job whose result the promotion gate then judges.

Every worker process runs one; a drift run is stored only when the latest stored run of
the use case is older than half the interval, so several workers do not flood the history.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from tabops.errors import JobConflictError
from tabops.lifecycle.versions import LoadedModel
from tabops.monitoring.drift import TIER_LEVELS, DriftReport
from tabops.monitoring.quality import live_performance, run_drift
from tabops.serving.models import ModelSet
from tabops.store.jobs import count_jobs, list_jobs
from tabops.store.monitoring import last_drift_run_at
from tabops.store.training_tables import count_rows

__all__ = ["Monitor", "retrain_reason"]

log = logging.getLogger(__name__)

Submit = Callable[..., Awaitable[dict[str, Any]]]


def retrain_reason(
    loaded: LoadedModel,
    report: DriftReport,
    quality: dict[str, Any],
    table_rows: int,
    last_auto_job: datetime | None,
    now: datetime,
) -> str | None:
    """Why the spec's retrain policy asks for a job now, or None."""
    policy = loaded.spec.retrain
    if policy is None:
        return None
    if last_auto_job is not None and now - last_auto_job < timedelta(hours=policy.cooldown_hours):
        return None
    trained_rows = loaded.n_rows
    if (
        policy.min_new_rows
        and trained_rows is not None
        and table_rows - trained_rows < policy.min_new_rows
    ):
        return None
    if policy.on_drift_tier is not None and report.tier in TIER_LEVELS:
        if report.level >= TIER_LEVELS[policy.on_drift_tier]:
            return f"drift tier {report.tier}: {report.message}"
    measured = quality.get("measured") or {}
    holdout = quality.get("holdout") or {}
    if (
        policy.on_quality_drop is not None
        and quality.get("n_labelled", 0) >= policy.min_labelled
        and "accuracy" in measured
        and "accuracy" in holdout
        and measured["accuracy"] < holdout["accuracy"] - policy.on_quality_drop
    ):
        return (
            f"live accuracy {measured['accuracy']:.3f} is more than {policy.on_quality_drop:g} "
            f"below the hold-out's {holdout['accuracy']:.3f}"
        )
    return None


class Monitor:
    """Runs :meth:`run_once` every ``interval_s`` seconds."""

    def __init__(
        self,
        engine: Engine,
        models: ModelSet,
        interval_s: float,
        metrics: Any = None,
        submit: Submit | None = None,
    ) -> None:
        self.engine = engine
        self.models = models
        self.interval_s = interval_s
        self.metrics = metrics
        self.submit = submit

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_once()
            except Exception:  # monitoring must never take the server down
                log.exception("monitoring pass failed")

    def _due(self, usecase: str) -> bool:
        last = last_drift_run_at(self.engine, usecase)
        return last is None or datetime.now(UTC) - last >= timedelta(seconds=self.interval_s / 2)

    def _last_auto_job(self, usecase: str) -> datetime | None:
        jobs = [
            j for j in list_jobs(self.engine, usecase, limit=20) if j["trigger"] == "retrain-policy"
        ]
        return jobs[0]["created_at"] if jobs else None

    async def run_once(self) -> list[str]:
        """One pass over the served use cases.

        Returns:
            The use cases for which a training job was started.
        """
        started = []
        if self.metrics is not None:
            self.metrics.set_jobs(await asyncio.to_thread(count_jobs, self.engine))
        for name, state in sorted(self.models.states.items()):
            served = state.served
            if served is None:
                continue
            loaded = served.loaded
            store = await asyncio.to_thread(self._due, name)
            report, _ = await asyncio.to_thread(run_drift, self.engine, loaded, None, store)
            quality = await asyncio.to_thread(live_performance, self.engine, loaded)
            if self.metrics is not None:
                self.metrics.record_drift(report)
                measured = quality.get("measured") or {}
                if "accuracy" in measured and hasattr(self.metrics, "set_live_quality"):
                    self.metrics.set_live_quality(
                        name,
                        loaded.version,
                        accuracy=measured["accuracy"],
                        f1=measured.get("f1"),
                        holdout_accuracy=quality["holdout"].get("accuracy"),
                    )
            if self.submit is None or loaded.spec.retrain is None:
                continue
            rows = await asyncio.to_thread(count_rows, self.engine, loaded.spec)
            last = await asyncio.to_thread(self._last_auto_job, name)
            reason = retrain_reason(loaded, report, quality, rows, last, datetime.now(UTC))
            if reason is None:
                continue
            try:
                job = await self.submit(
                    name,
                    model=None,
                    force=False,
                    requested_by=f"policy: {reason}",
                    trigger="retrain-policy",
                )
            except JobConflictError:
                continue  # a job is already running (perhaps started by another worker)
            log.warning("use case %s: retraining (job %s) because %s", name, job["id"], reason)
            started.append(name)
        return started
