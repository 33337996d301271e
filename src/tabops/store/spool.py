"""The audit spool: where records wait, fsynced, while the database is unreachable.

Each process appends to its own file (``spool-<pid>-<random>.jsonl``), holding an
exclusive ``flock`` on it, so another process never replays a file that is still being
written. Replay takes every file it can lock, the process's own closed files and the
files of dead processes alike, and inserts their records with "on conflict do nothing", so
a replay interrupted halfway and run again records everything exactly once.

A batch of a file that the database refuses for its data (not its connection) is retried
record by record: the records it refuses go to a quarantine file
(``quarantine-<pid>-<random>.jsonl``: the record and the reason, one JSON line each), the
others are replayed, and the spool file is deleted. One bad record never holds back or
loses the records spooled with it. Quarantined records are counted
(``tabops_audit_records{outcome="quarantined"}``) and can be re-imported by hand once
the cause is fixed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, Table
from sqlalchemy.exc import SQLAlchemyError

from tabops.store.rows import AuditRecord
from tabops.store.schema import prediction_requests, predictions

__all__ = [
    "Spool",
    "SpoolFullError",
    "insert_ignoring_duplicates",
    "is_connection_error",
]

log = logging.getLogger(__name__)


class SpoolFullError(OSError):
    """The spool has reached its size limit."""


def insert_ignoring_duplicates(conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, skipping any whose primary key is already there (replay is idempotent)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(index_elements=["id"]), rows)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(table).on_conflict_do_nothing(index_elements=["id"]), rows)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    raise TypeError(f"cannot spool {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> Any:
    if set(obj) == {"$dt"}:
        return datetime.fromisoformat(obj["$dt"])
    return obj


class Spool:
    """Append-only, fsynced JSON-lines files, one per writing process."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._quarantine: IO[bytes] | None = None
        self.quarantined = 0
        """Records this process put in quarantine at replay."""

    def size(self) -> int:
        """Bytes waiting in every spool file of the folder."""
        if not self.directory.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.directory.glob("spool-*.jsonl") if p.exists())

    def append(self, records: list[AuditRecord]) -> None:
        """Write records durably (fsync before returning).

        Raises:
            SpoolFullError: the spool would exceed its size limit.
            OSError: the spool cannot be written.
        """
        data = b"".join(
            json.dumps(r.to_json(), default=_encode, separators=(",", ":")).encode() + b"\n"
            for r in records
        )
        if self.size() + len(data) > self.max_bytes:
            raise SpoolFullError(
                f"audit spool in {self.directory} is full ({self.max_bytes} bytes)"
            )
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            handle = open(path, "ab")  # noqa: SIM115 - kept open across calls, closed in close()
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._file, self._path = handle, path
            _fsync_dir(self.directory)
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close (and unlock) the current file; the next append starts a new one."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._path = None
        if self._quarantine is not None:
            self._quarantine.close()
            self._quarantine = None

    def quarantine(self, record: AuditRecord, reason: str) -> None:
        """Keep, fsynced, a record the audit tables refuse, with the reason.

        Never limited by ``max_bytes``: a refused record is kept whatever the spool holds.
        """
        line = json.dumps(
            {"reason": reason, "record": record.to_json()}, default=_encode, separators=(",", ":")
        )
        if self._quarantine is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"quarantine-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._quarantine = open(path, "ab")  # noqa: SIM115 - closed in close()
            _fsync_dir(self.directory)
        # surrogates (not UTF-8) are kept as escapes rather than refused
        self._quarantine.write(line.encode("utf-8", "backslashreplace") + b"\n")
        self._quarantine.flush()
        os.fsync(self._quarantine.fileno())

    def quarantine_files(self) -> list[Path]:
        """The quarantine files of the folder, oldest name first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("quarantine-*.jsonl"))

    def replay(self, engine: Engine, batch_size: int = 1000) -> int:
        """Insert every lockable spool file's records into the database, then delete it.

        Returns:
            The number of records (requests) replayed.

        A record the database refuses as invalid (not a connection problem) is quarantined
        and the rest of its file replayed, so it neither blocks the others nor is lost.
        """
        self.close()
        if not self.directory.is_dir():
            return 0
        replayed = 0
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed in the finally below
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process is still writing it
                if not path.exists():
                    continue  # replayed and deleted by another process meanwhile
                # connection errors propagate: the file stays, replayed next time
                replayed += _replay_file(engine, handle, batch_size, self._refused)
                path.unlink()
                _fsync_dir(self.directory)
            finally:
                handle.close()
        return replayed

    def _refused(self, record: AuditRecord, exc: Exception) -> None:
        log.error(
            "audit spool: record of request %s refused by the database, quarantined: %s",
            record.request.id,
            exc,
        )
        self.quarantine(record, f"{type(exc).__name__}: {exc}")
        self.quarantined += 1


def is_connection_error(exc: BaseException) -> bool:
    """Whether a database error is about reaching the database (worth spooling and
    retrying later) rather than about the data sent (retrying would fail again)."""
    import psycopg
    from sqlalchemy.exc import (
        DBAPIError,
        DisconnectionError,
        InterfaceError,
        OperationalError,
    )
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # the COPY path talks to psycopg directly; a statement timeout (QueryCanceled) is an
    # OperationalError there too: the database is too slow, not the data wrong
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return True
    # the audit tables are not there yet (a process started while the database was down
    # and could not migrate): retried later, never a reason to quarantine a record
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) == "42P01" or "no such table" in str(orig):
        return True
    # a pool timeout, or an engine that cannot even open a connection
    return isinstance(exc, (TimeoutError, ConnectionError))


def _records(handle: IO[bytes]) -> Iterator[AuditRecord]:
    for line in handle:
        if line.endswith(b"\n"):  # a torn last line (crash mid-write) was never acknowledged
            yield AuditRecord.from_json(json.loads(line, object_hook=_decode))


def _insert(engine: Engine, batch: list[AuditRecord]) -> None:
    with engine.begin() as conn:
        requests = [r.request.columns() for r in batch]
        insert_ignoring_duplicates(conn, prediction_requests, requests)
        rows = [p.columns() for r in batch for p in r.predictions]
        insert_ignoring_duplicates(conn, predictions, rows)


def _replay_file(
    engine: Engine,
    handle: IO[bytes],
    batch_size: int,
    refused: Callable[[AuditRecord, Exception], None],
) -> int:
    count = 0
    batch: list[AuditRecord] = []

    def flush() -> None:
        nonlocal count
        try:
            _insert(engine, batch)
            count += len(batch)
        except SQLAlchemyError as exc:
            if is_connection_error(exc):
                raise
            for record in batch:  # find the record(s) refused, replay the others
                try:
                    _insert(engine, [record])
                    count += 1
                except SQLAlchemyError as one:
                    if is_connection_error(one):
                        raise
                    refused(record, one)
        batch.clear()

    for record in _records(handle):
        batch.append(record)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return count


def _fsync_dir(directory: Path) -> None:
    """Make a file's creation or removal durable (its directory entry)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
