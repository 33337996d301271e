"""No poison record: what the audit tables cannot hold is refused at the edge with a 4xx,
or quarantined alone, never acknowledged and never allowed to fail the records around it.
On SQLite and PostgreSQL (a NOT NULL violation stands in for any refusal by the database;
PostgreSQL also enforces column widths)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tabops.api.app import create_app
from tabops.config import AuditSettings, Settings
from tabops.data.datasets import read_source
from tabops.errors import AuditRecordRejectedError
from tabops.lifecycle.train import TrainingOutcome
from tabops.store.audit import AuditWriter
from tabops.store.db import create_db_engine
from tabops.store.rows import AuditRecord
from tabops.store.schema import prediction_requests, predictions
from tabops.store.training_tables import seed_table
from tests.conftest import ADMIN, empty_audit_engine
from tests.integration.test_audit import CREDIT, _record

pytestmark = pytest.mark.slow
Trained = tuple[Settings, dict[str, TrainingOutcome]]
DOWN = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1"


def _ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(predictions.c.id)).scalars())


def _poisoned(**request: Any) -> AuditRecord:
    """A record the tables refuse: a prediction without a label (NOT NULL)."""
    record = _record(n=2)
    record.predictions[1].label = None  # type: ignore[assignment]
    for column, value in request.items():  # the audit row's field for each column
        setattr(record.request, "client_request_id" if column == "request_id" else column, value)
    return record


async def _record_all(
    writer: AuditWriter, records: list[AuditRecord]
) -> list[BaseException | None]:
    await writer.start()
    try:
        return await asyncio.gather(*(writer.record(r) for r in records), return_exceptions=True)
    finally:
        await writer.stop()


def _quarantined(spool: Path) -> list[dict[str, Any]]:
    lines = [line for f in sorted(spool.glob("quarantine-*.jsonl")) for line in f.open()]
    return [json.loads(line) for line in lines]


def test_a_refused_record_fails_alone_and_is_quarantined(
    audit_engine: Engine, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    good = [_record(n=3) for _ in range(20)]
    bad = _poisoned()
    records = [*good[:10], bad, *good[10:]]
    writer = AuditWriter(audit_engine, AuditSettings(batch_size=1000), spool)
    outcomes = asyncio.run(_record_all(writer, records))
    refused = [i for i, o in enumerate(outcomes) if o is not None]
    assert refused == [10] and isinstance(outcomes[10], AuditRecordRejectedError)
    # every other caller of the batch was answered, and its rows are in the database
    assert _ids(audit_engine) == {p.id for r in good for p in r.predictions}
    assert writer.stats().spooled == 0 and writer.stats().quarantined == 1
    kept = _quarantined(spool)
    assert [q["record"]["request"]["id"] for q in kept] == [bad.request.id]
    assert kept[0]["reason"]


def test_a_record_too_wide_for_its_column_is_never_acknowledged_even_when_spooling(
    tmp_path: Path,
) -> None:
    """With the database down, the writer spools, and a spooled record is replayed when no
    caller is left to tell: one the tables cannot hold must be refused before the 200."""
    spool = tmp_path / "spool"
    wide = _record()
    wide.request.client_request_id = "r" * 129  # the column is varchar(128)
    nul = _record()
    nul.request.caller = "a\x00b"
    ok = [_record() for _ in range(5)]
    writer = AuditWriter(create_db_engine(DOWN), AuditSettings(), spool)
    outcomes = asyncio.run(_record_all(writer, [ok[0], wide, *ok[1:3], nul, *ok[3:]]))
    assert [isinstance(o, AuditRecordRejectedError) for o in outcomes] == [
        False, True, False, False, True, False, False,
    ]  # fmt: skip
    assert writer.stats().spooled == 5 and writer.stats().quarantined == 2
    reasons = [q["reason"] for q in _quarantined(spool)]
    assert "129 characters" in reasons[0] and "NUL" in reasons[1]


def test_replay_quarantines_only_the_refused_record(audit_engine: Engine, tmp_path: Path) -> None:
    """A spool file holding one record the database refuses (spooled by an older version,
    say) is replayed all but that record; before, the whole file was set aside."""
    spool = tmp_path / "spool"
    good = [_record(n=2) for _ in range(30)]
    bad = _poisoned()
    # an older writer spooled it without checking: write the spool file as it would have
    spooling = AuditWriter(create_db_engine(DOWN), AuditSettings(), spool)
    spooling.spool.append([*good[:15], bad, *good[15:]])
    spooling.spool.close()
    replaying = AuditWriter(audit_engine, AuditSettings(), spool)
    asyncio.run(_record_all(replaying, []))
    assert _ids(audit_engine) == {p.id for r in good for p in r.predictions}
    assert not list(spool.glob("spool-*.jsonl")) and not list(spool.glob("*.rejected"))
    assert replaying.stats().replayed == 30 and replaying.stats().quarantined == 1
    assert [q["record"]["request"]["id"] for q in _quarantined(spool)] == [bad.request.id]


@pytest.fixture
def client(trained: Trained, db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Engine]]:
    base, _ = trained
    settings = base.model_copy(
        update={
            "db": base.db.model_copy(update={"url": db_url}),
            "audit": AuditSettings(spool_dir=tmp_path / "spool"),
            "api": base.api.model_copy(update={"usecases": ["credit"]}),
        }
    )
    engine = empty_audit_engine(db_url)  # this test's rows only
    seed_table(engine, CREDIT, read_source(CREDIT, settings), "seed:test", replace=True)
    with TestClient(create_app(settings)) as c:
        yield c, engine
    engine.dispose()


def _error(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if field is not None:
        assert [d["field"] for d in error["details"]] == [field], error


def test_hostile_input_gets_a_4xx_and_never_a_poison_record(
    client: tuple[TestClient, Engine],
) -> None:
    api, engine = client
    example = api.get("/usecases/credit").json()["example"]
    long_id = {"x-request-id": "r" * 129}
    _error(api.post("/usecases/credit/predict", json=example, headers=long_id), 400,
           "invalid_header", "X-Request-ID")  # fmt: skip
    _error(api.post("/usecases/credit/predict", json=example, headers={"x-request-id": "a\tb"}),
           400, "invalid_header", "X-Request-ID")  # fmt: skip
    kept = api.post("/usecases/credit/predict", json=example, headers={"x-request-id": "r" * 128})
    assert kept.status_code == 200
    # bodies Python's JSON reader cannot read: 422, not 500
    deep = b"[" * 100_000 + b"]" * 100_000
    _error(api.post("/usecases/credit/predict", content=deep), 422, "json_limit")
    _error(api.post("/usecases/credit/predict", content=b'{"records": ' + deep + b"}"), 422,
           "json_limit")  # fmt: skip
    huge = b'{"Age": 1' + b"0" * 5000 + b"}"
    _error(api.post("/usecases/credit/predict", content=huge), 422, "json_limit")
    # entity ids no row can have
    _error(api.post("/usecases/credit/predict/" + "9" * 400), 422, "invalid_request", "entity_id")
    _error(api.post("/usecases/credit/predict/9223372036854775808"), 422, "invalid_request")
    _error(api.post("/usecases/credit/predict/%EF%BC%91%EF%BC%97"), 422, "invalid_request")
    missing = api.post("/usecases/credit/predict/9223372036854775807")
    _error(missing, 404, "entity_not_found")
    assert "9223372036854775807" not in missing.text  # an id is personal data: not echoed
    # feedback fields bounded like their columns
    pid = kept.json()["prediction_id"]
    for item, field in (
        ({"prediction_id": pid, "actual": "bad", "source": "a\x00b"}, "[0].source"),
        ({"prediction_id": pid, "actual": "bad", "source": "s" * 256}, "[0].source"),
        ({"prediction_id": pid, "actual": "\ud800"}, "[0].actual"),
        ({"prediction_id": "p" * 65, "actual": "bad"}, "[0].prediction_id"),
    ):
        body = json.dumps(item).encode()  # escapes the lone surrogate as JSON allows
        _error(api.post("/usecases/credit/feedback", content=body), 422, "invalid_features", field)
    unknown = json.dumps({"prediction_id": pid, "actual": "\ud800x"}).encode()
    assert api.post("/usecases/credit/feedback", content=unknown).status_code == 422
    ok = api.post("/usecases/credit/feedback", json={"prediction_id": pid, "actual": "bad",
                                                      "source": "s" * 255})  # fmt: skip
    assert ok.status_code == 201
    # nothing refused reached the tables; what was answered is there, under the template
    with engine.connect() as conn:
        rows = conn.execute(
            select(prediction_requests.c.request_id, prediction_requests.c.endpoint)
        ).all()
    assert [tuple(r) for r in rows] == [("r" * 128, "/usecases/credit/predict")]
    by_id = api.post("/usecases/credit/predict/17")
    assert by_id.status_code == 200
    story = api.get(f"/usecases/credit/predictions/{by_id.json()['prediction_id']}", headers=ADMIN)
    assert story.json()["request"]["endpoint"] == "/usecases/credit/predict/{entity_id}"
