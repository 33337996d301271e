"""Both ways the audit writer writes to PostgreSQL (one statement for a small batch, COPY
for a large one) store every column exactly as the record holds it, awkward text included."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from tabops.ids import uuid7, uuid7_many
from tabops.store.pgwrite import ONE_STATEMENT_MAX, write_records
from tabops.store.rows import AuditRecord, audit_record
from tabops.store.schema import prediction_requests, predictions
from tests.conftest import empty_audit_engine

pytestmark = pytest.mark.slow

AWKWARD = 'tab\there, new\nline, cr\r, back\\slash, "quoted", \\N, naïve ☃ 🦊'


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = empty_audit_engine(postgres_url)
    yield engine
    engine.dispose()


def _record(n: int, score: float = 0.25, explained: bool = False) -> AuditRecord:
    ids = uuid7_many(n)
    return audit_record(
        request_id=uuid7(),
        created_at=datetime.now(UTC),
        usecase="credit",
        endpoint=f"/usecases/credit/predict?{AWKWARD}",
        caller=AWKWARD,
        client_request_id=AWKWARD,
        model_version="3",
        latency_ms=0.731,
        ids=ids,
        features=[
            {"Age": 30 + i, "Home": AWKWARD, "Income": 1.5e-7 * i, "prior": i % 2 == 0}
            for i in range(n)
        ],
        labels=[AWKWARD if i % 3 == 0 else "good" for i in range(n)],
        probabilities=[{"bad": 0.1 + i / (10 * n), "good": 0.9 - i / (10 * n)} for i in range(n)],
        scores=[score + i / (10 * n) for i in range(n)],
        threshold=0.35,
        entity_id="pseud-" + AWKWARD[:20],
        explanations=[{"reasons": [AWKWARD], "value": -0.5}] * n if explained else None,
    )


def _stored(engine: Engine, record: AuditRecord) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with engine.connect() as conn:
        request = conn.execute(
            select(prediction_requests).where(prediction_requests.c.id == record.request.id)
        ).one()
        rows = conn.execute(
            select(predictions)
            .where(predictions.c.request_id == record.request.id)
            .order_by(predictions.c.id)
        ).all()
    return dict(request._mapping), [dict(r._mapping) for r in rows]


def _same(stored: Any, expected: Any) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(stored, float) and math.isnan(stored)
    return str(stored) == str(expected) if isinstance(expected, str) else stored == expected


@pytest.mark.parametrize(
    ("n", "score", "explained"),
    [
        (1, 0.25, False),  # one statement
        (7, 0.25, True),  # one statement
        (ONE_STATEMENT_MAX + 1, 0.25, True),  # COPY
        (2, math.nan, False),  # JSON has no NaN: COPY
    ],
    ids=["one", "few-explained", "many-explained", "nan-score"],
)
def test_every_column_is_stored_as_recorded(
    engine: Engine, n: int, score: float, explained: bool
) -> None:
    record = _record(n, score, explained)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        write_records(conn, [record])
    request, rows = _stored(engine, record)
    expected_request = record.request.columns()
    assert {
        k: request[k] for k in expected_request if not _same(request[k], expected_request[k])
    } == {}
    assert len(rows) == n
    for row, prediction in zip(rows, sorted(record.predictions, key=lambda p: p.id), strict=True):
        wanted = prediction.columns()
        assert {k: (row[k], v) for k, v in wanted.items() if not _same(row[k], v)} == {}


def test_a_batch_refused_for_one_record_stores_none_of_it(engine: Engine) -> None:
    """The one statement is atomic: a duplicate id in the batch leaves nothing behind."""
    first, second = _record(1), _record(1)
    second.predictions[0].id = first.predictions[0].id
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        with pytest.raises(Exception, match="duplicate key"):
            write_records(conn, [first, second])
    with engine.connect() as conn:
        assert conn.execute(select(predictions.c.id)).all() == []
        assert conn.execute(select(prediction_requests.c.id)).all() == []
