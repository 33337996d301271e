"""Retention beyond the audit tables: everything else that keeps prediction data.

``tabops purge`` deletes a use case's audit rows older than a date (``queries.purge``)
and, with this module, what else holds data of those predictions:

- ``drift_runs``: the drift history (aggregates of live inputs; pii features included);
- quarantine files (``quarantine-*.jsonl``) and the ``*.rejected`` spool files of older
  versions, in the spool folder: records the database refused, kept for inspection;
- the optional JSONL inference log (``audit.jsonl_path``), which holds every input.

Files are rewritten without the purged lines (the JSONL log in place, since a running
server keeps it open for appending: a line appended during the rewrite's milliseconds can
be lost from that optional log, never from the audit tables).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete

from tabops.store.schema import drift_runs

__all__ = ["FilePurgeCounts", "purge_drift_runs", "purge_files"]


@dataclass(frozen=True)
class FilePurgeCounts:
    """Lines removed from each kind of file."""

    quarantined: int
    log_lines: int


def purge_drift_runs(engine: Engine, usecase: str | None, older_than: datetime) -> int:
    """Delete drift runs older than a date, of a use case or (None) of all; returns how
    many."""
    scope = [] if usecase is None else [drift_runs.c.usecase == usecase]
    with engine.begin() as conn:
        result = conn.execute(
            delete(drift_runs).where(*scope, drift_runs.c.created_at < older_than)
        )
    return int(result.rowcount or 0)


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _spooled_record(line: dict[str, Any]) -> dict[str, Any]:
    # quarantine lines wrap the record with its reason; .rejected lines are records
    record: dict[str, Any] = line.get("record", line)
    return record


def _record_is_old(line: dict[str, Any], usecase: str | None, cutoff: datetime) -> bool:
    request = _spooled_record(line).get("request", {})
    created = request.get("created_at")
    when = _when(created.get("$dt") if isinstance(created, dict) else created)
    mine = usecase is None or request.get("usecase") == usecase
    return mine and when is not None and when < cutoff


def _log_line_is_old(line: dict[str, Any], usecase: str | None, cutoff: datetime) -> bool:
    when = _when(line.get("ts"))
    mine = usecase is None or line.get("usecase") == usecase
    return mine and when is not None and when < cutoff


def _rewrite(path: Path, drop: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite a JSON-lines file in place without the lines ``drop`` selects."""
    removed = 0
    with path.open("r+b") as handle:
        kept = []
        for raw in handle:
            try:
                parsed = json.loads(raw)
            except ValueError:
                kept.append(raw)  # a torn or foreign line: not ours to judge
                continue
            if isinstance(parsed, dict) and drop(parsed):
                removed += 1
            else:
                kept.append(raw)
        if removed:
            handle.seek(0)
            handle.writelines(kept)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
    return removed


def purge_files(
    spool_dir: Path, jsonl_path: Path | None, usecase: str | None, older_than: datetime
) -> FilePurgeCounts:
    """Remove a use case's (None: every use case's) lines older than a date from the
    quarantine and rejected spool files and from the JSONL log; files left empty are
    deleted."""
    quarantined = 0
    if spool_dir.is_dir():
        for path in sorted([*spool_dir.glob("quarantine-*.jsonl"), *spool_dir.glob("*.rejected")]):
            quarantined += _rewrite(path, lambda line: _record_is_old(line, usecase, older_than))
            if path.stat().st_size == 0:
                path.unlink()
    log_lines = 0
    if jsonl_path is not None and jsonl_path.is_file():
        log_lines = _rewrite(jsonl_path, lambda line: _log_line_is_old(line, usecase, older_than))
    return FilePurgeCounts(quarantined=quarantined, log_lines=log_lines)
