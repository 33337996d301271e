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
from operator import attrgetter
from typing import Any

import orjson
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

# the string columns of a request row as its class names them (its ``request_id`` column
# is its ``client_request_id``); a prediction row's fields are its columns
_REQUEST_FIELDS = {
    ("client_request_id" if name == "request_id" else name): limit
    for name, limit in _REQUEST_LIMITS.items()
}
_PREDICTION_STRINGS = [(attrgetter(name), limit) for name, limit in _PREDICTION_LIMITS.items()]
_PREDICTION_JSONS = attrgetter(*_PREDICTION_JSON)

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
    reason = _string_reason(value, limit)
    return f"{name}: {reason}" if reason else None


def _string_reason(value: Any, limit: int | None) -> str | None:
    """Why a column would refuse a value (None: it would not). The name of the column is
    put together only for a problem: this runs for every string of every row."""
    if value is None or not isinstance(value, str):
        return None
    if limit is not None and len(value) > limit:
        return f"{len(value)} characters, the column holds {limit}"
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii() and not _encodable(value):
        return "contains a lone surrogate (not valid UTF-8)"
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
    if _plainly_storable(record):
        return []
    problems = []
    request = record.request.columns()
    for name, limit in _REQUEST_LIMITS.items():
        problem = _string_problem(f"request.{name}", request.get(name), limit)
        if problem:
            problems.append(problem)
    for i, prediction in enumerate(record.predictions):
        row = prediction.columns()
        for name, limit in _PREDICTION_LIMITS.items():
            reason = _string_reason(row.get(name), limit)
            if reason:
                problems.append(f"predictions[{i}].{name}: {reason}")
        for name in _PREDICTION_JSON:
            value = row.get(name)
            if value is not None:
                problems.extend(_json_problems(value, i, name))
    return problems


def _plainly_storable(record: AuditRecord) -> bool:
    """Whether a record plainly fits, checked a column at a time rather than a value at a
    time: each distinct value of a string column (a record's predictions share most of
    them), and one orjson encoding of all the JSON columns, which refuses a lone surrogate
    and writes a NUL as ``\\u0000``. False sends the record to the full check, which
    names each problem (or finds none: ``\\u0000`` typed as six characters). The full
    check was an eighth of an audited 1,000-row batch's CPU: a mapping and three JSON
    encodings per prediction."""
    request = record.request
    for name, limit in _REQUEST_FIELDS.items():
        if _string_reason(getattr(request, name), limit):
            return False
    predictions = record.predictions
    try:
        for column, limit in _PREDICTION_STRINGS:
            for value in set(map(column, predictions)):
                if _string_reason(value, limit):
                    return False
        if b"\\u0000" in orjson.dumps(list(map(_PREDICTION_JSONS, predictions))):
            return False
    except (orjson.JSONEncodeError, TypeError):  # a surrogate, a value of another type
        return False
    return True


def _json_problems(value: Any, row: int, column: str) -> list[str]:
    """The problems of a JSON column's value. orjson encodes it in about a microsecond,
    refuses a lone surrogate and writes a NUL as ``\\u0000``: only a value that trips
    either is walked string by string (which names the culprit, and rules out a false
    alarm such as the six characters ``\\u0000`` typed in a string)."""
    try:
        if b"\\u0000" not in orjson.dumps(value):
            return []
    except (orjson.JSONEncodeError, TypeError):
        pass
    where = f"predictions[{row}].{column}"
    found = (_string_problem(path, text, None) for path, text in _strings(value, where))
    return [problem for problem in found if problem]
