"""The audit writer: every prediction is durable before its response leaves.

Group commit: requests put their records on a bounded queue and wait; one background task
takes everything queued (up to ``batch_size`` predictions) and writes it in a single
transaction, so concurrent requests share one commit. While a transaction runs, the next
batch gathers. On PostgreSQL the common batch is written from the event loop
(:mod:`tabops.store.pglane`); everything else runs in a dedicated thread. If the database
fails, the batch goes to the fsynced spool instead and the requests still succeed; if the
spool fails too, they get :class:`AuditUnavailableError` (503). Spooled records are
replayed on a timer and at start.

No poison record: a record the tables cannot hold (see :mod:`tabops.store.bounds`) is
never written, spooled or acknowledged: it is quarantined (kept in a file, counted) and
its caller gets :class:`AuditRecordRejectedError`. A batch the database refuses for its
data, not its connection, is retried record by record, so only the offending record is
quarantined and everyone else in the batch is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from tabops.config import AuditSettings, DatabaseSettings
from tabops.errors import AuditRecordRejectedError, AuditUnavailableError
from tabops.store.bounds import record_problems
from tabops.store.db import ping
from tabops.store.pglane import LoopLane
from tabops.store.pgwrite import write_records
from tabops.store.rows import AuditRecord
from tabops.store.schema import prediction_requests, predictions
from tabops.store.spool import Spool, is_connection_error

__all__ = ["AuditStats", "AuditUnavailableError", "AuditWriter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditStats:
    """What the writer has done since it started."""

    queued: int
    written: int
    spooled: int
    replayed: int
    failures: int
    spool_bytes: int
    transactions: int
    quarantined: int = 0
    """Records refused by the tables (here or at replay), kept in quarantine files."""


class AuditWriter:
    """Records predictions with group commit, falling back to the spool.

    Args:
        engine: The audit store.
        settings: Batching, spool and replay settings.
        spool_dir: The spool's folder.
        timeouts: The serving process's database timeouts, for the loop's PostgreSQL lane
            (defaults when None).
    """

    def __init__(
        self,
        engine: Engine,
        settings: AuditSettings,
        spool_dir: Path,
        timeouts: DatabaseSettings | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.spool = Spool(spool_dir, settings.spool_max_bytes)
        self._queue: asyncio.Queue[tuple[AuditRecord, asyncio.Future[None]]] | None = None
        self._task: asyncio.Task[None] | None = None
        # one thread: transactions and spool appends happen in order, never concurrently
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tabops-audit")
        self._jsonl: IO[str] | None = None
        self._next_replay = 0.0
        self._spool_pending = False
        self._written = self._spooled = self._replayed = self._failures = 0
        self._transactions = 0
        self._quarantined = 0
        self._probe: asyncio.Future[bool] | None = None
        # the JSON-lines copy is written by the thread, with the batch it belongs to
        self._lane = (
            LoopLane(engine, timeouts or DatabaseSettings())
            if engine.dialect.name == "postgresql" and settings.jsonl_path is None
            else None
        )

    async def start(self) -> None:
        """Replay what an earlier process left in the spool, then start the writer task."""
        self._queue = asyncio.Queue(maxsize=self.settings.queue_size)
        if self.settings.jsonl_path is not None:
            self.settings.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(self.settings.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115
        self._spool_pending = self.spool.size() > 0
        await self._maybe_replay(force=True)
        self._task = asyncio.create_task(self._run(), name="tabops-audit-writer")

    async def stop(self) -> None:
        """Write everything still queued, then stop."""
        if self._queue is not None and self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._lane is not None:
            await self._lane.close()
        self._executor.submit(self.spool.close).result()
        self._executor.shutdown(wait=True)
        if self._jsonl is not None:
            self._jsonl.close()

    async def record(self, record: AuditRecord) -> None:
        """Return once the record is in the database or the spool.

        Raises:
            AuditUnavailableError: neither could take it.
        """
        assert self._queue is not None, "AuditWriter.start() was not called"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item = (record, future)
        try:
            self._queue.put_nowait(item)  # the common case: no coroutine to run
        except asyncio.QueueFull:
            await self._queue.put(item)  # the writer is behind: wait for room
        await future

    def stats(self) -> AuditStats:
        return AuditStats(
            queued=self._queue.qsize() if self._queue is not None else 0,
            written=self._written,
            spooled=self._spooled,
            replayed=self._replayed,
            failures=self._failures,
            spool_bytes=self.spool.size(),
            transactions=self._transactions,
            quarantined=self._quarantined + self.spool.quarantined,
        )

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        linger = self._linger_s()
        gathered = 0  # records of the last transaction; 1 at low load, where a linger
        # would only add its whole length to every response
        while True:
            if queue.empty():
                try:
                    first = await asyncio.wait_for(
                        queue.get(), timeout=self.settings.replay_interval_s
                    )
                except TimeoutError:
                    await self._maybe_replay()
                    continue
            else:
                # under load, records queued during the last transaction: take them without
                # the task and timer that wait_for makes
                first = queue.get_nowait()
            if linger and gathered > 1:  # others are in flight: let them join this commit
                await asyncio.sleep(linger)
            batch = [first]
            size = len(first[0].predictions)
            while size < self.settings.batch_size and not queue.empty():
                item = queue.get_nowait()
                batch.append(item)
                size += len(item[0].predictions)
            gathered = len(batch)
            try:
                outcomes = await self._persist_batch([r for r, _ in batch])
            except Exception as exc:  # the spool failed too: the requests must not succeed
                self._failures += len(batch)
                log.error("audit: cannot record %d request(s): %s", len(batch), exc)
                error = AuditUnavailableError(
                    "the prediction could not be recorded (database and spool unavailable)"
                )
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                # one outcome per record: None (recorded) or the error its caller gets
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if outcome is None:
                        future.set_result(None)
                    else:
                        future.set_exception(outcome)
            finally:
                for _ in batch:
                    queue.task_done()
            if self._spool_pending:  # else _maybe_replay has nothing to do
                await self._maybe_replay()

    async def _persist_batch(self, records: list[AuditRecord]) -> list[Exception | None]:
        """:meth:`_persist` a batch: from the loop on the PostgreSQL lane, or in the
        writer's thread (SQLite, a JSON-lines copy, a replay pending, a record to
        quarantine; see :mod:`tabops.store.pglane`)."""
        loop = asyncio.get_running_loop()
        if (
            self._lane is None
            or self._spool_pending
            or any(record_problems(r) for r in records)  # quarantined, in the thread
        ):
            return await loop.run_in_executor(self._executor, self._persist, records)
        try:
            await self._lane.write(records)
        except Exception as exc:
            if not isinstance(exc, OSError | TimeoutError) and not is_connection_error(exc):
                # refused for its data: the thread finds the offending record(s)
                return await loop.run_in_executor(self._executor, self._persist, records)
            log.warning("audit: database write failed, spooling: %s", type(exc).__name__)
            await loop.run_in_executor(self._executor, self._spool_records, records)
        else:
            self._written += len(records)
            self._transactions += 1
        return [None] * len(records)

    def _linger_s(self) -> float:
        return self.settings.flush_interval_ms / 1000

    def _persist(self, records: list[AuditRecord]) -> list[Exception | None]:
        """Write a batch in one transaction, or spool it (runs in the writer thread).

        Returns:
            Per record, None when it is in the database or the spool, else the error its
            caller gets (the record was quarantined).

        Raises:
            OSError: the database is unreachable and the spool cannot take the batch.
        """
        outcomes: list[Exception | None] = [None] * len(records)
        storable = []
        for i, record in enumerate(records):
            problems = record_problems(record)
            if problems:  # never written, never spooled: nobody would be told at replay
                outcomes[i] = self._quarantine(record, "; ".join(problems))
            else:
                storable.append(i)
        pending = [records[i] for i in storable]
        if pending and not self._spool_pending:
            try:
                self._write(pending)
                self._log_jsonl(pending)
                return outcomes
            except Exception as exc:
                if is_connection_error(exc):
                    log.warning("audit: database write failed, spooling: %s", type(exc).__name__)
                else:
                    # refused for its data: find the offending record(s), write the rest
                    log.warning(
                        "audit: batch of %d refused (%s); retrying record by record",
                        len(pending),
                        type(exc).__name__,
                    )
                    pending = self._write_one_by_one(storable, records, outcomes)
        if pending:
            self._spool_records(pending)
        return outcomes

    def _spool_records(self, records: list[AuditRecord]) -> None:
        """Spool records the database did not take (runs in the writer thread).

        Raises:
            OSError: the spool cannot take them either.
        """
        # Spool while replay is pending too, so records are replayed in arrival order.
        self.spool.append(records)
        self._spooled += len(records)
        self._spool_pending = True
        self._log_jsonl(records)

    def _write(self, records: list[AuditRecord]) -> None:
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                try:
                    write_records(conn, records)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    # psycopg's own error: the pool must not hand this connection out again
                    conn.invalidate()
                    raise
        else:
            with self.engine.begin() as conn:
                requests = [r.request.columns() for r in records]
                conn.execute(prediction_requests.insert(), requests)
                rows = [p.columns() for r in records for p in r.predictions]
                conn.execute(predictions.insert(), rows)
        self._written += len(records)
        self._transactions += 1

    def _write_one_by_one(
        self, indexes: list[int], records: list[AuditRecord], outcomes: list[Exception | None]
    ) -> list[AuditRecord]:
        """Write each record in its own transaction; quarantine those refused for their
        data. Returns the records still to spool (the database went away meanwhile)."""
        for n, i in enumerate(indexes):
            try:
                self._write([records[i]])
                self._log_jsonl([records[i]])
            except Exception as exc:
                if is_connection_error(exc):
                    return [records[j] for j in indexes[n:]]
                outcomes[i] = self._quarantine(records[i], f"{type(exc).__name__}: {exc}")
        return []

    def _quarantine(self, record: AuditRecord, reason: str) -> Exception:
        """Keep a record the tables refuse, count it, and return its caller's error."""
        self.spool.quarantine(record, reason)
        self._quarantined += 1
        log.error("audit: record of request %s quarantined: %s", record.request.id, reason)
        return AuditRecordRejectedError(
            "the prediction could not be recorded: the audit store refuses its record "
            f"(request {record.request.id}; kept in quarantine)"
        )

    async def _maybe_replay(self, force: bool = False) -> None:
        if not self._spool_pending or (not force and time.monotonic() < self._next_replay):
            return
        if not force:
            # Probe the database off the writer's thread first: while it hangs or is down,
            # the writer keeps spooling new records instead of waiting on a replay.
            if self._probe is None:
                self._probe = asyncio.ensure_future(asyncio.to_thread(ping, self.engine))
                return
            if not self._probe.done():
                return
            reachable, self._probe = self._probe.result(), None
            if not reachable:
                self._next_replay = time.monotonic() + self.settings.replay_interval_s
                return
        self._next_replay = time.monotonic() + self.settings.replay_interval_s
        loop = asyncio.get_running_loop()
        try:
            count = await loop.run_in_executor(self._executor, self.spool.replay, self.engine)
        except SQLAlchemyError as exc:
            log.info(
                "audit: spool replay deferred, database still unavailable (%s)", type(exc).__name__
            )
            return
        self._replayed += count
        self._spool_pending = await loop.run_in_executor(self._executor, self.spool.size) > 0
        if count:
            log.info("audit: replayed %d spooled request(s) into the database", count)

    def _log_jsonl(self, records: list[AuditRecord]) -> None:
        if self._jsonl is None:
            return
        for record in records:
            for p in record.predictions:
                line = {
                    "ts": p.created_at.isoformat(),
                    "usecase": p.usecase,
                    "prediction_id": p.id,
                    "request_id": p.request_id,
                    "model_version": p.model_version,
                    "inputs": p.features,
                    "outputs": {"label": p.label, "probabilities": p.probabilities},
                    "latency_ms": p.latency_ms,
                }
                self._jsonl.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._jsonl.flush()
