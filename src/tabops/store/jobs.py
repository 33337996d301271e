"""Training jobs as database records: they survive API restarts, and at most one job per
use case is active (queued or running) at a time."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from tabops.errors import JobConflictError, JobNotFoundError
from tabops.store.schema import training_jobs

__all__ = [
    "ACTIVE_STATES",
    "count_jobs",
    "create_job",
    "fail_orphaned_jobs",
    "finish_job",
    "get_job",
    "list_jobs",
    "process_owner",
    "renew_jobs",
    "update_job",
]

ACTIVE_STATES = ("queued", "running")


def process_owner() -> str:
    """``host:pid`` of this process: the owner recorded on the jobs it queues."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out.pop("active_usecase", None)
    for key in ("created_at", "started_at", "finished_at", "heartbeat_at"):
        value = out.get(key)
        if value is not None and value.tzinfo is None:
            out[key] = value.replace(tzinfo=UTC)
    return out


def create_job(
    engine: Engine,
    job_id: str,
    usecase: str,
    *,
    params: dict[str, Any] | None,
    force: bool,
    requested_by: str | None,
    trigger: str,
    owner: str | None = None,
) -> dict[str, Any]:
    """Record a queued job, owned by ``owner`` (this process by default).

    Raises:
        JobConflictError: the use case already has an active job (its id is attached).
    """
    now = datetime.now(UTC)
    row = {
        "id": job_id,
        "usecase": usecase,
        "active_usecase": usecase,
        "state": "queued",
        "stage": "queued",
        "progress": 0.0,
        "created_at": now,
        "owner": owner or process_owner(),
        "heartbeat_at": now,
        "requested_by": requested_by,
        "trigger": trigger,
        "params": params,
        "force": force,
    }
    try:
        with engine.begin() as conn:
            conn.execute(training_jobs.insert(), row)
    except IntegrityError:
        with engine.connect() as conn:
            active = conn.execute(
                select(training_jobs.c.id).where(training_jobs.c.active_usecase == usecase)
            ).scalar()
        raise JobConflictError(
            f"use case '{usecase}' already has a training job in progress: {active}",
            job_id=str(active),
        ) from None
    return get_job(engine, job_id)


def update_job(engine: Engine, job_id: str, **fields: Any) -> None:
    """Change fields of a job (stage, progress, state...)."""
    with engine.begin() as conn:
        conn.execute(update(training_jobs).where(training_jobs.c.id == job_id).values(**fields))


def finish_job(engine: Engine, job_id: str, state: str, **fields: Any) -> None:
    """Mark a job succeeded or failed; the use case may then get a new job."""
    update_job(
        engine,
        job_id,
        state=state,
        active_usecase=None,
        finished_at=datetime.now(UTC),
        **fields,
    )


def get_job(engine: Engine, job_id: str) -> dict[str, Any]:
    """One job.

    Raises:
        JobNotFoundError: no such job.
    """
    with engine.connect() as conn:
        row = conn.execute(select(training_jobs).where(training_jobs.c.id == job_id)).first()
    if row is None:
        raise JobNotFoundError(f"no training job with id {job_id}")
    return _row(row)


def list_jobs(engine: Engine, usecase: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Jobs, newest first."""
    query = select(training_jobs).order_by(training_jobs.c.created_at.desc()).limit(limit)
    if usecase is not None:
        query = query.where(training_jobs.c.usecase == usecase)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


def renew_jobs(engine: Engine, job_ids: list[str]) -> None:
    """Renew the lease of this process's active jobs."""
    if not job_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(training_jobs)
            .where(training_jobs.c.id.in_(job_ids), training_jobs.c.state.in_(ACTIVE_STATES))
            .values(heartbeat_at=datetime.now(UTC))
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _orphaned(owner: str | None, heartbeat: datetime | None, stale: datetime) -> bool:
    host, _, pid = (owner or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return True  # its owner ran here and is gone: no need to wait for the lease
    if heartbeat is None:
        return True
    if heartbeat.tzinfo is None:
        heartbeat = heartbeat.replace(tzinfo=UTC)
    return heartbeat < stale


def fail_orphaned_jobs(engine: Engine, lease_s: float) -> int:
    """Mark failed the active jobs nobody holds any more.

    A job is held by the API process that queued it, which renews its lease
    (``heartbeat_at``) while the job is queued or running. A job is orphaned when its lease
    is older than ``lease_s``, or at once when its owner ran on this host and is gone. Jobs
    of other live processes, here or on other hosts, are left alone.

    Returns:
        How many jobs were marked failed.
    """
    stale = datetime.now(UTC) - timedelta(seconds=lease_s)
    columns = (training_jobs.c.id, training_jobs.c.owner, training_jobs.c.heartbeat_at)
    with engine.connect() as conn:
        active = conn.execute(
            select(*columns).where(training_jobs.c.state.in_(ACTIVE_STATES))
        ).all()
    orphans = [str(row[0]) for row in active if _orphaned(row[1], row[2], stale)]
    for job_id in orphans:
        finish_job(engine, job_id, "failed", error="the server process that held this job died")
    return len(orphans)


def count_jobs(engine: Engine) -> dict[str, int]:
    """Jobs by state (for the training-jobs gauge)."""
    query = select(training_jobs.c.state, func.count()).group_by(training_jobs.c.state)
    with engine.connect() as conn:
        rows: list[tuple[str, int]] = conn.execute(query).all()  # type: ignore[assignment]
    return {str(state): int(n) for state, n in rows}
