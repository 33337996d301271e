"""The audit store in process, on SQLite and on PostgreSQL: writer, spool, feedback,
queries, pseudonymisation, purge and ingest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from tabops.api.app import create_app
from tabops.config import AuditSettings, Settings
from tabops.data.datasets import read_rows, read_source
from tabops.errors import (
    AuditUnavailableError,
    DataValidationError,
    InvalidFeaturesError,
    PredictionNotFoundError,
)
from tabops.ids import uuid7_many
from tabops.lifecycle.train import TrainingOutcome
from tabops.spec.files import load_usecase
from tabops.store.audit import AuditWriter
from tabops.store.db import create_db_engine
from tabops.store.migrate import alembic_config, current_revision, head_revision, upgrade
from tabops.store.partitions import Month, create_month, ensure_months, month_of
from tabops.store.privacy import Pseudonymizer
from tabops.store.queries import (
    PredictionFilter,
    get_prediction,
    list_predictions,
    purge,
    record_feedback,
)
from tabops.store.rows import AuditRecord, audit_record
from tabops.store.schema import prediction_requests, predictions
from tabops.store.training_tables import count_rows, ingest_rows, seed_table
from tests.conftest import ADMIN, USECASES

pytestmark = pytest.mark.slow
Trained = tuple[Settings, dict[str, TrainingOutcome]]
CREDIT = load_usecase(USECASES, "credit")


EXPLANATION = {
    "method": "linear",
    "scale": "log_odds",
    "class": "bad",
    "base_value": -1.387,
    "value": -0.887,
    "contributions": {"Age": 0.25, "Income": 0.25},
    "reasons": ["Age: 30 years (low) raised the chance that Status is bad"],
}


def _record(
    n: int = 1,
    when: datetime | None = None,
    label: str = "good",
    version: str = "1",
    explained: bool = False,
) -> AuditRecord:
    from tabops.ids import uuid7

    return audit_record(
        request_id=uuid7(),
        created_at=when or datetime.now(UTC),
        usecase="credit",
        endpoint="/test",
        caller="test",
        client_request_id=None,
        model_version=version,
        latency_ms=1.0,
        ids=[uuid7() for _ in range(n)],
        features=[{"Age": 30 + i} for i in range(n)],
        labels=[label] * n,
        probabilities=[{"bad": 0.2, "good": 0.8}] * n,
        scores=[0.2] * n,
        threshold=0.3,
        explanations=[EXPLANATION] * n if explained else None,
    )


def _ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(predictions.c.id)).scalars())


async def _write(
    engine: Engine, spool: Path, records: list[AuditRecord], **settings: Any
) -> AuditWriter:
    writer = AuditWriter(engine, AuditSettings(**settings), spool)
    await writer.start()
    try:
        await asyncio.gather(*(writer.record(r) for r in records))
    finally:
        await writer.stop()
    return writer


def test_migrations_are_idempotent(audit_engine: Engine) -> None:
    upgrade(audit_engine)
    assert current_revision(audit_engine) == head_revision()
    assert head_revision() is not None


def test_explanations_survive_the_writer_and_the_spool(
    audit_engine: Engine, tmp_path: Path
) -> None:
    """Group commit (insert on SQLite, COPY on PostgreSQL) and a spool replay keep each
    prediction's explanation, and NULL for the others."""
    written = [_record(n=2, explained=True), _record(n=1)]
    asyncio.run(_write(audit_engine, tmp_path / "spool", written))
    spool = tmp_path / "spool-down"
    down = create_db_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1")
    spooled = [_record(n=1, explained=True)]
    asyncio.run(_write(down, spool, spooled))
    asyncio.run(_write(audit_engine, spool, []))  # replayed at start-up
    for record in (*written, *spooled):
        for p in record.predictions:
            stored = get_prediction(audit_engine, "credit", p.id)["explanation"]
            assert stored == p.explanation
    with audit_engine.connect() as conn:
        nulls = conn.execute(
            select(func.count()).where(predictions.c.explanation.is_(None))
        ).scalar_one()
    assert nulls == 1  # SQL NULL for the prediction not explained


def test_migration_0008_adds_the_column_to_recorded_predictions(audit_engine: Engine) -> None:
    """Down to 0007 and up again: a row recorded before keeps its data and holds NULL."""
    config = alembic_config(audit_engine)
    with audit_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
    record = _record(n=1)
    before = record.predictions[0].columns()
    del before["explanation"]  # the column is not there at 0007
    with audit_engine.begin() as conn:
        conn.execute(prediction_requests.insert(), [record.request.columns()])
        conn.execute(predictions.insert(), [before])
    upgrade(audit_engine)
    assert current_revision(audit_engine) == head_revision() == "0009"
    stored = get_prediction(audit_engine, "credit", before["id"])
    assert stored["explanation"] is None and stored["features"] == before["features"]


def _relations(engine: Engine, like: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT relname FROM pg_class WHERE relname LIKE :p"), {"p": like}
            ).scalars()
        )


def test_migration_0009_keeps_the_trail_in_partitions_of_native_uuids(
    audit_engine: Engine,
) -> None:
    """Down to 0008 and up again: a request, its prediction and its feedback, recorded
    with text ids, come back whole; on PostgreSQL from monthly partitions, ids as uuid."""
    config = alembic_config(audit_engine)
    with audit_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    record = _record(n=2, explained=True)
    with audit_engine.begin() as conn:
        conn.execute(prediction_requests.insert(), [record.request.columns()])
        conn.execute(predictions.insert(), [p.columns() for p in record.predictions])
    first = record.predictions[0].id
    with audit_engine.begin() as conn:  # as 0008's code did (today's binds uuids)
        conn.execute(
            text(
                "INSERT INTO feedback (prediction_id, usecase, actual, created_at, source) "
                "VALUES (:p, 'credit', 'bad', :t, 'test')"
            ),
            {"p": first, "t": datetime.now(UTC)},
        )
    upgrade(audit_engine)
    assert current_revision(audit_engine) == "0009"
    stored = get_prediction(audit_engine, "credit", first)
    assert stored["actual"] == "bad" and stored["request"]["id"] == record.request.id
    assert stored["explanation"] == EXPLANATION
    if audit_engine.dialect.name != "postgresql":
        return
    with audit_engine.connect() as conn:
        types = dict(
            conn.execute(
                text(
                    "SELECT table_name || '.' || column_name, data_type FROM "
                    "information_schema.columns WHERE column_name IN "
                    "('id', 'request_id', 'shadow_of', 'prediction_id') AND table_name IN "
                    "('predictions', 'prediction_requests', 'feedback')"
                )
            ).all()
        )
        holder = conn.execute(
            text("SELECT tableoid::regclass::text FROM predictions WHERE id = :i"), {"i": first}
        ).scalar_one()
        indexes = set(
            conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'predictions'")
            ).scalars()
        )
    assert indexes == {  # what the documented queries use, and no more
        "pk_predictions",
        "ix_predictions_usecase_created_at",
        "ix_predictions_request_id",
        "ix_predictions_entity_id",
        "ix_predictions_shadow_of",
    }
    assert types == {
        "feedback.id": "integer",
        "predictions.id": "uuid",
        "predictions.request_id": "uuid",
        "predictions.shadow_of": "uuid",
        "prediction_requests.id": "uuid",
        "prediction_requests.request_id": "character varying",  # the caller's X-Request-ID
        "feedback.prediction_id": "uuid",
    }
    assert holder == f"predictions_{month_of(datetime.now(UTC)).suffix()}"
    ahead = month_of(datetime.now(UTC)).shift(2).suffix()
    assert {f"predictions_{ahead}", f"prediction_requests_{ahead}"} <= _relations(
        audit_engine, "%_p%"
    )


def _record_in(month: Month, usecase: str = "credit", n: int = 2) -> AuditRecord:
    """A record made in the middle of a past month: ids and times of then."""
    when = month.start + timedelta(days=14)
    ms = int(when.timestamp() * 1000)
    record = _record(n=n, when=when)
    record.request.id = uuid7_many(1, ms)[0]
    record.request.usecase = usecase
    for p, pid in zip(record.predictions, uuid7_many(n, ms), strict=True):
        p.id, p.request_id, p.usecase = pid, record.request.id, usecase
    return record


def test_purge_drops_whole_months_and_deletes_the_rest(
    audit_engine: Engine, tmp_path: Path
) -> None:
    """A month older than the cutoff that holds only the purged use case goes as a
    partition drop; a month shared with another use case loses that use case's rows only;
    everything newer stays (on SQLite, the same counts by row deletes)."""
    now = month_of(datetime.now(UTC))
    old = now.shift(-12)
    shared = old.next()
    if audit_engine.dialect.name == "postgresql":
        with audit_engine.begin() as conn:
            for month in (old, shared):
                for table in ("prediction_requests", "predictions"):
                    create_month(conn, table, month)
    mine = [_record_in(old), _record_in(shared)]
    theirs = _record_in(shared, usecase="churn")
    recent = _record(n=1)
    asyncio.run(_write(audit_engine, tmp_path / "spool", [*mine, theirs, recent]))
    record_feedback(audit_engine, CREDIT, [(mine[0].predictions[0].id, "bad")], "test")

    counts = purge(audit_engine, "credit", datetime.now(UTC) - timedelta(days=30))

    assert (counts.predictions, counts.requests, counts.feedback) == (4, 2, 1)
    left = set(_ids(audit_engine))
    assert left == {p.id for p in (*theirs.predictions, *recent.predictions)}
    if audit_engine.dialect.name == "postgresql":
        partitions = _relations(audit_engine, "%_p%")
        assert f"predictions_{old.suffix()}" not in partitions  # dropped
        assert f"prediction_requests_{old.suffix()}" not in partitions
        assert f"predictions_{shared.suffix()}" in partitions  # churn's rows are in it
    everything = purge(audit_engine, None, datetime.now(UTC) - timedelta(days=30))
    assert (everything.predictions, everything.requests) == (2, 1)
    assert set(_ids(audit_engine)) == {p.id for p in recent.predictions}


def test_ids_that_are_no_uuid_are_not_recorded_anywhere(
    audit_engine: Engine, tmp_path: Path
) -> None:
    """A typed id that is no UUID is a 404 or a 422, never a database error; an id in
    capitals is the same id."""
    record = _record(n=1)
    asyncio.run(_write(audit_engine, tmp_path / "spool", [record]))
    pid = record.predictions[0].id
    assert get_prediction(audit_engine, "credit", pid.upper())["prediction_id"] == pid
    with pytest.raises(PredictionNotFoundError):
        get_prediction(audit_engine, "credit", "not-a-uuid")
    with pytest.raises(PredictionNotFoundError, match="nope"):
        record_feedback(audit_engine, CREDIT, [(pid, "bad"), ("nope", "good")], "test")
    assert get_prediction(audit_engine, "credit", pid)["feedback"] == []  # all or nothing
    record_feedback(audit_engine, CREDIT, [(pid.upper(), "bad")], "test")
    assert get_prediction(audit_engine, "credit", pid)["actual"] == "bad"
    with pytest.raises(InvalidFeaturesError):
        list_predictions(audit_engine, "credit", PredictionFilter(), after="x' OR 1=1")


def test_concurrent_records_share_transactions(audit_engine: Engine, tmp_path: Path) -> None:
    records = [_record(n=1 + i % 3) for i in range(300)]
    writer = asyncio.run(_write(audit_engine, tmp_path / "spool", records, batch_size=64))
    stats = writer.stats()
    assert stats.written == 300 and stats.spooled == 0 and stats.failures == 0
    assert stats.transactions < 300  # group commit: many requests per transaction
    expected = sorted(p.id for r in records for p in r.predictions)
    assert sorted(_ids(audit_engine)) == expected


def test_database_down_spools_then_replays_exactly_once(
    audit_engine: Engine, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    down = create_db_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1")
    records = [_record(n=2) for _ in range(40)]
    writer = asyncio.run(_write(down, spool, records))
    assert writer.stats().spooled == 40
    assert writer.stats().spool_bytes > 0
    assert _ids(audit_engine) == []
    # a new process on the reachable database replays the spool at start-up
    asyncio.run(_write(audit_engine, spool, []))
    assert sorted(_ids(audit_engine)) == sorted(p.id for r in records for p in r.predictions)
    assert not list(spool.glob("spool-*.jsonl"))
    # replaying the same records again (a crash between commit and unlink) adds nothing
    asyncio.run(_write(down, spool, records))
    asyncio.run(_write(audit_engine, spool, []))
    assert len(_ids(audit_engine)) == 80


def test_spool_full_fails_the_request(tmp_path: Path) -> None:
    down = create_db_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(AuditUnavailableError):
        asyncio.run(_write(down, tmp_path / "spool", [_record(n=50)], spool_max_bytes=1024))


def test_feedback_history_and_latest_wins(audit_engine: Engine, tmp_path: Path) -> None:
    record = _record(n=2)
    asyncio.run(_write(audit_engine, tmp_path / "spool", [record]))
    first, second = (p.id for p in record.predictions)
    assert record_feedback(audit_engine, CREDIT, [(first, "bad")], "desk") == 1
    record_feedback(audit_engine, CREDIT, [(first, "good")], "audit")
    story = get_prediction(audit_engine, "credit", first)
    assert [f["actual"] for f in story["feedback"]] == ["bad", "good"]
    assert story["actual"] == "good"
    assert story["request"]["n_records"] == 2
    with pytest.raises(PredictionNotFoundError, match="nope"):
        record_feedback(audit_engine, CREDIT, [(second, "bad"), ("nope", "bad")], None)
    with pytest.raises(InvalidFeaturesError) as info:
        record_feedback(audit_engine, CREDIT, [(second, "maybe")], None)
    assert info.value.details[0].field == "[0].actual"
    assert get_prediction(audit_engine, "credit", second)["feedback"] == []  # all or nothing


def test_listing_filters_and_pages(audit_engine: Engine, tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    records = [_record(n=5, version="1", when=old), _record(n=5, version="2", label="bad")]
    asyncio.run(_write(audit_engine, tmp_path / "spool", records))
    record_feedback(audit_engine, CREDIT, [(records[1].predictions[0].id, "bad")], None)
    every = PredictionFilter()
    page, cursor = list_predictions(audit_engine, "credit", every, limit=4)
    seen = [p["prediction_id"] for p in page]
    while cursor:
        page, cursor = list_predictions(audit_engine, "credit", every, limit=4, after=cursor)
        seen += [p["prediction_id"] for p in page]
    assert seen == sorted(seen, reverse=True) and len(seen) == 10
    count = len(list_predictions(audit_engine, "credit", PredictionFilter(model_version="2"))[0])
    assert count == 5
    assert len(list_predictions(audit_engine, "credit", PredictionFilter(label="bad"))[0]) == 5
    assert (
        len(list_predictions(audit_engine, "credit", PredictionFilter(has_feedback=True))[0]) == 1
    )
    since = datetime.now(UTC) - timedelta(days=1)
    assert len(list_predictions(audit_engine, "credit", PredictionFilter(since=since))[0]) == 5


def test_purge_deletes_only_what_is_old(audit_engine: Engine, tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(days=100)
    records = [_record(n=3, when=old), _record(n=3, when=old), _record(n=2)]
    asyncio.run(_write(audit_engine, tmp_path / "spool", records))
    record_feedback(audit_engine, CREDIT, [(records[0].predictions[0].id, "bad")], None)
    counts = purge(audit_engine, "credit", datetime.now(UTC) - timedelta(days=90), batch_size=2)
    assert (counts.predictions, counts.feedback, counts.requests) == (6, 1, 2)
    assert sorted(_ids(audit_engine)) == sorted(p.id for p in records[2].predictions)
    with audit_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(prediction_requests)).scalar_one() == 1


def test_ingest_rejects_a_file_with_one_bad_row(db_url: str, tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", usecases_dir=USECASES, db={"url": db_url})
    engine = create_db_engine(db_url)
    seed_table(engine, CREDIT, read_source(CREDIT, settings), "seed:test", replace=True)
    header = (
        "row_id,Status,Seniority,Home,Time,Age,Marital,Records,Job,Expenses,Income,Assets,Debt,"
        "Amount,Price"
    )
    good = ["90001,good,5,rent,36,40,married,no,fixed,60,150,,0,1000,1500"]
    bad_file = tmp_path / "bad.csv"
    bad_file.write_text(
        "\n".join(
            [header, *good, "90002,good,5,castle,36,40,married,no,fixed,60,150,0,0,1000,1500"]
        )
        + "\n"
    )
    with pytest.raises(DataValidationError) as info:
        read_rows(CREDIT, bad_file)
    assert [(d.row, d.field) for d in info.value.details] == [(3, "Home")]
    assert count_rows(engine, CREDIT) == 4454
    good_file = tmp_path / "good.csv"
    good_file.write_text("\n".join([header, *good]) + "\n")
    assert ingest_rows(engine, CREDIT, read_rows(CREDIT, good_file), "ingest:good.csv") == 1
    assert count_rows(engine, CREDIT) == 4455
    with pytest.raises(DataValidationError, match="repeat ids"):
        ingest_rows(engine, CREDIT, read_rows(CREDIT, good_file), "ingest:good.csv")
    assert count_rows(engine, CREDIT) == 4455
    engine.dispose()


def test_api_records_every_prediction_and_pseudonymises_ids(
    trained: Trained, audit_engine: Engine, db_url: str, tmp_path: Path
) -> None:
    base, _ = trained
    key = "k" * 32
    settings = base.model_copy(
        update={
            "db": base.db.model_copy(update={"url": db_url}),
            "audit": AuditSettings(
                spool_dir=tmp_path / "spool", pseudonym_key=key, jsonl_path=tmp_path / "log.jsonl"
            ),
            "api": base.api.model_copy(update={"usecases": ["credit"]}),
        }
    )
    seed_table(audit_engine, CREDIT, read_source(CREDIT, settings), "seed:test", replace=True)
    with TestClient(create_app(settings)) as client:
        example = client.get("/usecases/credit").json()["example"]
        one = client.post(
            "/usecases/credit/predict", json=example, headers={"x-request-id": "req-7"}
        ).json()
        batch = client.post("/usecases/credit/predict", json={"records": [example] * 3}).json()
        by_id = client.post("/usecases/credit/predict/17").json()
        missing = client.post("/usecases/credit/predict/999999")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "entity_not_found"
        ids = [
            one["prediction_id"],
            *(p["prediction_id"] for p in batch["predictions"]),
            by_id["prediction_id"],
        ]
        assert sorted(_ids(audit_engine)) == sorted(ids)
        story = client.get(
            f"/usecases/credit/predictions/{by_id['prediction_id']}", headers=ADMIN
        ).json()
        assert story["entity_id"] == Pseudonymizer(key).hash("17") != "17"
        # the route's template: the raw entity id (personal data) is nowhere in the tables
        assert story["request"]["endpoint"] == "/usecases/credit/predict/{entity_id}"
        first = client.get(
            f"/usecases/credit/predictions/{one['prediction_id']}", headers=ADMIN
        ).json()
        assert first["request"]["request_id"] == "req-7"
        assert first["features"] == example and first["label"] == one["label"]
        sent = client.post(
            "/usecases/credit/feedback",
            json={"prediction_id": one["prediction_id"], "actual": "bad"},
        )
        assert sent.status_code == 201
        assert (
            client.post(
                "/usecases/credit/feedback", json={"prediction_id": "x", "actual": "bad"}
            ).status_code
            == 404
        )
        assert (
            client.post(
                "/usecases/credit/feedback",
                json={"prediction_id": one["prediction_id"], "actual": "?"},
            ).status_code
            == 422
        )
        listed = client.get(
            "/usecases/credit/predictions", params={"has_feedback": "true"}, headers=ADMIN
        ).json()
        assert [p["prediction_id"] for p in listed["items"]] == [one["prediction_id"]]
        # ids typed by hand: no UUID is no prediction (not a database error on uuid columns)
        typed = client.get("/usecases/credit/predictions/not-a-uuid", headers=ADMIN)
        assert typed.status_code == 404, typed.text
        upper = client.get(
            f"/usecases/credit/predictions/{one['prediction_id'].upper()}", headers=ADMIN
        )
        assert upper.json()["prediction_id"] == one["prediction_id"]
        cursor = client.get("/usecases/credit/predictions", params={"after": "x"}, headers=ADMIN)
        assert cursor.status_code == 422
        assert [d["field"] for d in cursor.json()["error"]["details"]] == ["query.after"]
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 5


def test_production_mode_needs_a_pseudonym_key() -> None:
    with pytest.raises(ValueError, match="TABOPS_AUDIT__PSEUDONYM_KEY"):
        Settings(env="prod")
    Settings(env="prod", audit={"pseudonym_key": "x" * 16})


def test_months_ahead_are_created_once_and_a_refused_month_stops_nothing(
    audit_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The upkeep creates the months ahead (idempotent); a record of a month without a
    partition lands in the default one and is still found; that month's partition is
    then refused (PostgreSQL) without failing the others or the upkeep."""
    if audit_engine.dialect.name != "postgresql":
        assert ensure_months(audit_engine) == []  # SQLite: nothing to do
        return
    now = month_of(datetime.now(UTC))
    far = now.shift(6)
    stray = _record_in(far)  # a clock months ahead: no partition of its month yet
    asyncio.run(_write(audit_engine, tmp_path / "spool", [stray]))
    pid = stray.predictions[0].id
    with audit_engine.connect() as conn:
        holder = conn.execute(
            text("SELECT tableoid::regclass::text FROM predictions WHERE id = :i"), {"i": pid}
        ).scalar_one()
    assert holder == "predictions_default"
    assert ensure_months(audit_engine) == []  # the months ahead exist since the migration
    with caplog.at_level("WARNING"):
        created = ensure_months(audit_engine, now=far.start, ahead=1)
    later = far.next().suffix()
    assert created == [f"prediction_requests_{later}", f"predictions_{later}"]
    for table in ("prediction_requests", "predictions"):  # the stray's month is refused
        assert f"cannot create partition {table}_{far.suffix()}" in caplog.text
    assert get_prediction(audit_engine, "credit", pid)["prediction_id"] == pid
    with audit_engine.begin() as conn:  # leave the session's database as it was
        for month in (far, far.next()):
            for table in ("predictions", "prediction_requests"):
                conn.execute(text(f"DROP TABLE IF EXISTS {table}_{month.suffix()}"))
