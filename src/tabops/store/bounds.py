"""What the audit tables can store, checked before a record is acknowledged.

The audit promise is "a 200 means recorded". A record the database would refuse (a string
longer than its column, a NUL character, which PostgreSQL refuses in text and JSON) must
therefore be refused *before* the caller gets its answer, and whatever the database is
doing at that moment: a record spooled during an outage is replayed later, when nobody is
left to tell. The bounds are read from the table definitions, so a column made wider or
narrower in ``store/schema.py`` changes the check with it.

The API bounds what callers control at the edge (``X-Request-ID``, entity ids, feedback
fields) with a clear 4xx; this check is the last line, for anything that slips through.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import JSON, String, Table

from tabops.store.rows import AuditRecord
from tabops.store.schema import prediction_requests, predictions

__all__ = [
    "REQUEST_ID_MAX",
    "column_limits",
    "record_problems",
]


def column_limits(table: Table) -> dict[str, int | None]:
    """Each string column of a table and its length limit (None: unbounded)."""
    return {c.name: c.type.length for c in table.columns if isinstance(c.type, String)}


_REQUEST_LIMITS = column_limits(prediction_requests)
_PREDICTION_LIMITS = column_limits(predictions)
_PREDICTION_JSON = tuple(c.name for c in predictions.columns if isinstance(c.type, JSON))

REQUEST_ID_MAX: int = _REQUEST_LIMITS["request_id"] or 128
"""Longest ``X-Request-ID`` the audit store keeps (the width of its column)."""


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON value (keys included), with where it is."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield path, str(key)
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def _string_problem(name: str, value: Any, limit: int | None) -> str | None:
    if value is None or not isinstance(value, str):
        return None
    if limit is not None and len(value) > limit:
        return f"{name}: {len(value)} characters, the column holds {limit}"
    if "\x00" in value:
        return f"{name}: contains a NUL character"
    if not _encodable(value):
        return f"{name}: contains a lone surrogate (not valid UTF-8)"
    return None


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def record_problems(record: AuditRecord) -> list[str]:
    """Why the audit tables would refuse a record (empty when they can store it).

    Args:
        record: A call's request row and prediction rows, as the writer takes them.
    """
    problems = []
    request = record.request.columns()
    for name, limit in _REQUEST_LIMITS.items():
        problem = _string_problem(f"request.{name}", request.get(name), limit)
        if problem:
            problems.append(problem)
    for i, prediction in enumerate(record.predictions):
        row = prediction.columns()
        for name, limit in _PREDICTION_LIMITS.items():
            problem = _string_problem(f"predictions[{i}].{name}", row.get(name), limit)
            if problem:
                problems.append(problem)
        for name in _PREDICTION_JSON:
            for where, text in _strings(row.get(name), f"predictions[{i}].{name}"):
                problem = _string_problem(where, text, None)
                if problem:
                    problems.append(problem)
    return problems
