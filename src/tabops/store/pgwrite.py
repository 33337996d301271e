"""Audit records into PostgreSQL in as few round trips as the batch allows.

A group commit of a few records is the common case under load. Written as two ``COPY``
commands in a transaction, it took six round trips (``BEGIN``, each ``COPY`` started and
ended, ``COMMIT``), each one a wake-up of the writer thread and of the server. Measured
on the 2-core bench machine, a one-record transaction cost 592 µs of client CPU and 475 µs
of server CPU, against 152 and 200 as one statement in autocommit: a writable CTE that
inserts the request rows and the prediction rows from two JSON arrays
(``json_populate_recordset`` over each table's row type). One statement is one round trip
and its own transaction, atomic as the pair of ``COPY``s was, and committed before it
returns. It stays cheaper up to batches of a few hundred predictions; past
:data:`ONE_STATEMENT_MAX`, the ``COPY`` path streams the rows while the server inserts
them, which is faster for the 1,000-row batch requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import orjson
from sqlalchemy import Connection, Table

from tabops.store.rows import AuditRecord
from tabops.store.schema import prediction_requests, predictions

__all__ = [
    "COPY_PREDICTIONS",
    "COPY_REQUESTS",
    "INSERT",
    "ONE_STATEMENT_MAX",
    "copy_records",
    "copy_text",
    "one_statement",
    "write_records",
]

ONE_STATEMENT_MAX = 256
"""Most predictions written with the one statement; larger batches go by ``COPY``."""


def _copy_statement(table: Table) -> str:
    columns = ", ".join(c.name for c in table.columns)
    return f"COPY {table.name} ({columns}) FROM STDIN"


COPY_REQUESTS = _copy_statement(prediction_requests)
COPY_PREDICTIONS = _copy_statement(predictions)

# SELECT * of a table's row type gives its columns in order; a key the JSON lacks is NULL
INSERT = (
    "WITH requests AS (INSERT INTO prediction_requests SELECT * FROM "
    "json_populate_recordset(NULL::prediction_requests, %s::json)) "
    "INSERT INTO predictions SELECT * FROM json_populate_recordset(NULL::predictions, %s::json)"
)
"""The one statement that writes a batch: its parameters come from :func:`one_statement`."""


def write_records(conn: Connection, records: list[AuditRecord]) -> None:
    """Write a batch atomically and durably, on a connection in autocommit.

    Args:
        conn: A connection with ``isolation_level="AUTOCOMMIT"``: the one statement is its
            own transaction, and the ``COPY`` path opens one.
        records: The batch; all of it is written, or none.
    """
    driver = conn.connection.driver_connection  # psycopg's own connection
    assert driver is not None
    params = one_statement(records)
    if params is not None:
        driver.execute(INSERT, params)
    else:
        with driver.transaction():
            copy_records(conn, records)


def one_statement(records: list[AuditRecord]) -> tuple[str, str] | None:
    """The parameters of :data:`INSERT` for a batch (its request rows and its prediction
    rows as JSON arrays), or None when the batch goes by ``COPY``: more than
    :data:`ONE_STATEMENT_MAX` predictions, or a float JSON cannot carry."""
    if sum(len(r.predictions) for r in records) > ONE_STATEMENT_MAX or not _json_exact(records):
        return None
    requests = orjson.dumps([r.request.columns() for r in records])
    # a PredictionRow's fields are its table's columns, in order: orjson encodes the
    # dataclass as that mapping, without one being built (tests/unit/test_rows.py)
    rows = orjson.dumps([p for r in records for p in r.predictions])
    return requests.decode(), rows.decode()


def _json_exact(records: list[AuditRecord]) -> bool:
    """Whether JSON carries every float column as it is: JSON has no NaN or infinity
    (orjson writes them as null), which ``COPY`` stores as they are."""
    for record in records:
        if not math.isfinite(record.request.latency_ms):
            return False
        for p in record.predictions:
            if not math.isfinite(p.score) or not math.isfinite(p.latency_ms):
                return False
            if p.threshold is not None and not math.isfinite(p.threshold):
                return False
    return True


def copy_records(conn: Connection, records: list[AuditRecord]) -> None:
    """Write a batch with PostgreSQL's COPY, inside the caller's transaction.

    A thousand-row batch as an ``executemany`` is a thousand INSERTs, pipelined but each
    parsed, planned and executed on the server: COPY streams the rows in one command. The
    request rows go through psycopg's row formatter; the prediction rows are formatted
    here in COPY's text format (:func:`copy_text`), 11 µs a row by psycopg's
    ``write_row`` against about 3 on the bench machine.
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    with cursor:
        with cursor.copy(COPY_REQUESTS) as copy:
            for record in records:
                copy.write_row(record.request.copy_row())
        with cursor.copy(COPY_PREDICTIONS) as copy:
            for chunk in copy_text(records):  # sent as formatted: the server inserts meanwhile
                copy.write(chunk)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _text(value: str | None) -> str:
    """A text value in COPY's text format: the delimiter, line ends and backslash escaped."""
    if value is None:
        return _NULL
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value  # ids, labels: four scans in C instead of a translation


def _json(value: object) -> str:
    """A JSON value: orjson escapes every control character, so only backslashes remain."""
    if value is None:
        return _NULL
    text = orjson.dumps(value).decode()
    return text.replace("\\", "\\\\") if "\\" in text else text


def _float(value: float | None) -> str:
    if value is None:
        return _NULL
    if math.isfinite(value):
        return repr(value)
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def copy_text(records: list[AuditRecord], chunk: int = 100) -> Iterator[str]:
    """The prediction rows of a batch in COPY's text format, in the table's column order
    (:class:`~tabops.store.rows.PredictionRow`'s fields), ``chunk`` rows at a time. The
    columns a record's predictions share (its request, time, use case, version,
    threshold, latency, entity, shadow flag) are formatted once per record."""
    lines: list[str] = []
    for record in records:
        shared: tuple[object, ...] = ()
        head = tail = ""
        for p in record.predictions:
            key = (
                p.request_id,
                p.created_at,
                p.usecase,
                p.model_version,
                p.threshold,
                p.latency_ms,
                p.entity_id,
                p.shadow,
            )
            if key != shared:
                shared = key
                head = "\t".join(
                    (
                        _text(p.request_id),
                        p.created_at.isoformat(),
                        _text(p.usecase),
                        _text(p.model_version),
                    )
                )
                tail = "\t".join(
                    (
                        _float(p.threshold),
                        _float(p.latency_ms),
                        _text(p.entity_id),
                        "t" if p.shadow else "f",
                    )
                )
            lines.append(
                f"{_text(p.id)}\t{head}\t{_json(p.features)}\t{_text(p.label)}\t"
                f"{_json(p.probabilities)}\t{_float(p.score)}\t{tail}\t{_text(p.shadow_of)}\t"
                f"{_json(p.explanation)}\n"
            )
            if len(lines) == chunk:
                yield "".join(lines)
                lines.clear()
    if lines:
        yield "".join(lines)
