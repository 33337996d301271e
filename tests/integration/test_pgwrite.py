"""Both ways the audit writer writes to PostgreSQL (one statement for a small batch, COPY
for a large one) store every column exactly as the record holds it, awkward text included;
and the one statement written from the event loop (the writer's lane) keeps the thread
path's guarantees."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from tabops.config import AuditSettings, DatabaseSettings
from tabops.errors import AuditRecordRejectedError
from tabops.ids import uuid7, uuid7_many
from tabops.store.audit import AuditStats, AuditWriter
from tabops.store.db import create_db_engine
from tabops.store.migrate import upgrade
from tabops.store.pglane import APPLICATION_NAME
from tabops.store.pgwrite import ONE_STATEMENT_MAX, write_records
from tabops.store.rows import AuditRecord, audit_record
from tabops.store.schema import prediction_requests, predictions
from tests.conftest import empty_audit_engine, require
from tests.pgcluster import PgCluster, pg_binaries

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


# The writer's loop lane (store/pglane.py): the same statement, from the event loop.


async def _through_the_writer(
    engine: Engine, spool: Path, records: list[AuditRecord], timeouts: DatabaseSettings
) -> tuple[list[BaseException | None], list[str], AuditStats]:
    """Record each of ``records`` concurrently; the outcome of each, and the application
    names of the database's connections while the writer was open."""
    writer = AuditWriter(engine, AuditSettings(), spool, timeouts)
    await writer.start()
    try:
        outcomes = await asyncio.gather(
            *(writer.record(r) for r in records), return_exceptions=True
        )
        with engine.connect() as conn:
            names = list(
                conn.execute(text("SELECT application_name FROM pg_stat_activity")).scalars()
            )
    finally:
        await writer.stop()
    return list(outcomes), names, writer.stats()


@pytest.mark.parametrize(
    "sizes",
    [[(1, 0.25), (7, 0.25)], [(ONE_STATEMENT_MAX + 1, 0.25)], [(2, math.nan)]],
    ids=["one-statement", "copy", "nan-score-copy"],
)
def test_the_loop_lane_stores_what_the_thread_stores(
    engine: Engine, tmp_path: Path, sizes: list[tuple[int, float]]
) -> None:
    records = [_record(n, score, explained=True) for n, score in sizes]
    outcomes, names, stats = asyncio.run(
        _through_the_writer(engine, tmp_path / "spool", records, DatabaseSettings())
    )
    assert outcomes == [None] * len(records)
    assert APPLICATION_NAME in names  # written on the lane's own connection
    assert (stats.written, stats.spooled, stats.quarantined) == (len(records), 0, 0)
    for record in records:
        request, rows = _stored(engine, record)
        expected_request = record.request.columns()
        assert {
            k: request[k] for k in expected_request if not _same(request[k], expected_request[k])
        } == {}
        wanted = sorted(record.predictions, key=lambda p: p.id)
        assert len(rows) == len(wanted)
        for row, prediction in zip(rows, wanted, strict=True):
            assert {k: v for k, v in prediction.columns().items() if not _same(row[k], v)} == {}


def test_a_batch_the_lane_cannot_write_for_its_data_quarantines_only_the_offender(
    engine: Engine, tmp_path: Path
) -> None:
    """A duplicate id fails the lane's statement for its data, not its connection: the
    writer's thread retries record by record, writes the first and quarantines the other."""
    first, second = _record(1), _record(1)
    second.predictions[0].id = first.predictions[0].id
    outcomes, _, stats = asyncio.run(
        _through_the_writer(engine, tmp_path / "spool", [first, second], DatabaseSettings())
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], AuditRecordRejectedError)
    assert (stats.written, stats.spooled, stats.quarantined) == (1, 0, 1)
    with engine.connect() as conn:
        assert conn.execute(select(predictions.c.request_id)).scalars().all() == [first.request.id]


def test_a_frozen_server_sends_the_lanes_batch_to_the_spool_by_its_deadline(
    tmp_path: Path,
) -> None:
    """The lane's connection is open when every process of the cluster is stopped: the
    next batch waits for the statement's deadline (timeout and two seconds), no longer,
    and is spooled; the request is answered."""
    require(pg_binaries() is not None, "PostgreSQL (initdb, pg_ctl) is not installed")
    cluster = PgCluster().init()
    try:
        cluster.start()
        timeouts = DatabaseSettings(statement_timeout_ms=500)
        engine = create_db_engine(cluster.url, timeouts=timeouts)
        upgrade(engine)
        spool = tmp_path / "spool"

        async def scenario() -> tuple[float, AuditStats]:
            writer = AuditWriter(engine, AuditSettings(), spool, timeouts)
            await writer.start()
            await writer.record(_record(2))  # opens the lane's connection
            frozen = cluster.freeze()
            try:
                started = time.monotonic()
                await writer.record(_record(3))
                elapsed = time.monotonic() - started
            finally:
                cluster.thaw(frozen)
            await writer.stop()
            return elapsed, writer.stats()

        elapsed, stats = asyncio.run(scenario())
        assert 2.0 < elapsed < 6.0  # the deadline is 2.5 s
        assert (stats.written, stats.spooled) == (1, 1)
        engine.dispose()
    finally:
        cluster.destroy(keep_log=tmp_path / "postgres.log")


def test_a_lane_connection_idle_across_a_server_restart_is_replaced_not_spooled(
    tmp_path: Path,
) -> None:
    """The server restarts while the lane's connection sits idle: the next batch finds the
    connection dead at its ping, before anything of it is sent, and goes to the database
    on a new connection instead of the spool."""
    require(pg_binaries() is not None, "PostgreSQL (initdb, pg_ctl) is not installed")
    cluster = PgCluster().init()
    try:
        cluster.start()
        engine = create_db_engine(cluster.url, timeouts=DatabaseSettings())
        upgrade(engine)
        records = [_record(1), _record(2)]

        async def scenario() -> AuditStats:
            writer = AuditWriter(engine, AuditSettings(), tmp_path / "spool", DatabaseSettings())
            await writer.start()
            await writer.record(records[0])
            cluster.stop("fast")
            cluster.start()
            await asyncio.sleep(1.2)  # idle for longer than the lane's ping threshold
            await writer.record(records[1])
            await writer.stop()
            return writer.stats()

        stats = asyncio.run(scenario())
        assert (stats.written, stats.spooled) == (2, 0)
        assert sorted(_ids_of(engine)) == sorted(p.id for r in records for p in r.predictions)
        engine.dispose()
    finally:
        cluster.destroy(keep_log=tmp_path / "postgres.log")


def _ids_of(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [str(i) for i in conn.execute(select(predictions.c.id)).scalars()]
