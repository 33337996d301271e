"""Dashboard figures computed by the database, and a client's history by entity id: on
SQLite and on PostgreSQL, in process and through the API."""

from __future__ import annotations

import asyncio
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tabops.api.app import create_app
from tabops.config import AuditSettings, Settings
from tabops.data.datasets import read_source
from tabops.errors import InvalidRequestError
from tabops.ids import uuid7
from tabops.lifecycle.train import TrainingOutcome
from tabops.spec.files import load_usecase
from tabops.store.audit import AuditWriter
from tabops.store.db import create_db_engine
from tabops.store.privacy import Pseudonymizer
from tabops.store.queries import PredictionFilter, list_predictions, record_feedback
from tabops.store.rows import AuditRecord, PredictionRow, RequestRow
from tabops.store.summary import parse_window, summarize
from tabops.store.training_tables import seed_table
from tests.conftest import ADMIN, USECASES

Trained = tuple[Settings, dict[str, TrainingOutcome]]
CREDIT = load_usecase(USECASES, "credit")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _call(
    when: datetime,
    scores: list[float],
    latency_ms: float,
    *,
    entity: str | None = None,
    shadow: bool = False,
) -> AuditRecord:
    request_id = uuid7()
    version = "2" if shadow else "1"
    rows = [
        PredictionRow(
            id=uuid7(),
            request_id=request_id,
            created_at=when,
            usecase="credit",
            model_version=version,
            features={"Age": 40},
            label="bad" if s >= 0.3 else "good",
            probabilities={"bad": s, "good": 1 - s},
            score=s,
            threshold=0.3,
            latency_ms=latency_ms,
            entity_id=entity,
            shadow=shadow,
        )
        for s in scores
    ]
    request = RequestRow(
        id=request_id,
        created_at=when,
        usecase="credit",
        endpoint="shadow:/usecases/credit/predict" if shadow else "/usecases/credit/predict",
        caller="test",
        n_records=len(rows),
        client_request_id=None,
        model_version=version,
        latency_ms=latency_ms,
    )
    return AuditRecord(request, rows)


def _write(engine: Engine, spool: Path, records: list[AuditRecord]) -> None:
    async def run() -> None:
        writer = AuditWriter(engine, AuditSettings(), spool)
        await writer.start()
        try:
            for record in records:
                await writer.record(record)
        finally:
            await writer.stop()

    asyncio.run(run())


def test_window_parsing() -> None:
    assert parse_window("24h").length == timedelta(hours=24)
    assert parse_window(" 7D ").length == timedelta(days=7)
    assert parse_window("all").length is None
    for bad in ("", "0h", "24", "1w", "-1d", "h"):
        with pytest.raises(InvalidRequestError) as info:
            parse_window(bad)
        assert info.value.details[0].field == "window"


def test_summary_counts_rates_latency_and_histogram(audit_engine: Engine, tmp_path: Path) -> None:
    recent = NOW - timedelta(minutes=30)
    old = NOW - timedelta(days=3)
    # 10 calls of one record in the last hour, latencies 1..10 ms; one batch of 3, 3 days ago
    calls = [_call(recent + timedelta(seconds=i), [0.05 * i], float(i + 1)) for i in range(10)]
    calls.append(_call(old, [0.9, 0.95, 1.0], 50.0))
    calls.append(_call(recent, [0.99], 999.0, shadow=True))  # a challenger's: left out
    _write(audit_engine, tmp_path / "spool", calls)
    first = calls[0].predictions[0].id
    record_feedback(audit_engine, CREDIT, [(first, "good")], "test")

    hour = summarize(audit_engine, "credit", ["bad", "good"], "bad", parse_window("1h"), NOW)
    scores = [0.05 * i for i in range(10)]
    assert hour["predictions"] == 10 and hour["requests"] == 10
    assert hour["labels"] == {"bad": 4, "good": 6}  # 0.30, 0.35, 0.40, 0.45
    assert hour["positive_rate"] == pytest.approx(0.4)
    assert hour["mean_score"] == pytest.approx(sum(scores) / 10)
    # nearest rank over 1..10 ms
    assert hour["latency_ms"]["p50"] == 5.0 and hour["latency_ms"]["p95"] == 10.0
    assert hour["latency_ms"]["max"] == 10.0 and hour["latency_ms"]["mean"] == 5.5
    counts = hour["score_histogram"]["counts"]
    assert len(counts) == 20 and sum(counts) == 10
    assert counts == [1 if i < 10 else 0 for i in range(20)]  # one score per 0.05 bin
    assert hour["feedback"] == 1
    assert sum(p["count"] for p in hour["timeline"]) == 10
    assert {p["label"] for p in hour["timeline"]} == {"bad", "good"}
    assert all(p["start"] <= NOW for p in hour["timeline"])

    every = summarize(audit_engine, "credit", ["bad", "good"], "bad", parse_window("all"), NOW)
    assert every["predictions"] == 13 and every["requests"] == 11
    assert every["labels"] == {"bad": 7, "good": 6}
    assert every["score_histogram"]["counts"][19] == 2  # 0.95 and 1.0 share the last bin
    assert every["latency_ms"]["max"] == 50.0 and every["latency_ms"]["p95"] == 50.0
    assert every["first_at"] == old and every["since"] is None
    buckets = [p["start"] for p in every["timeline"]]
    assert buckets == sorted(buckets)
    assert all(math.isclose(b.timestamp() % every["bucket_s"], 0) for b in buckets)

    empty = summarize(audit_engine, "iris", ["a", "b", "c"], None, parse_window("24h"), NOW)
    assert empty["predictions"] == 0 and empty["positive_rate"] is None
    assert empty["labels"] == {"a": 0, "b": 0, "c": 0} and empty["latency_ms"]["p50"] is None


def test_client_history_matches_the_keyed_hash(audit_engine: Engine, tmp_path: Path) -> None:
    hasher = Pseudonymizer("a-key-for-this-test")
    calls = [
        _call(NOW, [0.1], 1.0, entity=hasher.hash("42")),
        _call(NOW, [0.2], 1.0, entity=hasher.hash("42")),
        _call(NOW, [0.6], 1.0, entity=hasher.hash("7")),
        _call(NOW, [0.4], 1.0),
    ]
    _write(audit_engine, tmp_path / "spool", calls)
    mine = PredictionFilter(entity_pseudonym=hasher.hash("42"))
    items, _ = list_predictions(audit_engine, "credit", mine)
    assert sorted(i["score"] for i in items) == [0.1, 0.2]
    other_key = PredictionFilter(entity_pseudonym=Pseudonymizer("another").hash("42"))
    assert list_predictions(audit_engine, "credit", other_key)[0] == []


def test_summary_and_history_through_the_api(trained: Trained, db_url: str, tmp_path: Path) -> None:
    settings, _ = trained
    # audit into a database of this test, with credit's table seeded for predict by id
    engine = create_db_engine(db_url)
    seed_table(engine, CREDIT, read_source(CREDIT, settings), source="seed:test", replace=True)
    engine.dispose()
    live = settings.model_copy(
        update={
            "db": settings.db.model_copy(update={"url": db_url}),
            "audit": settings.audit.model_copy(update={"spool_dir": tmp_path / "spool"}),
            "api": settings.api.model_copy(update={"usecases": ["credit"]}),
        }
    )
    with TestClient(create_app(live)) as client:
        # a fresh database per sqlite run; PostgreSQL's is shared by the session: count deltas
        before = client.get("/usecases/credit/summary", params={"window": "all"}).json()
        for entity in ("12", "12", "99"):
            assert client.post(f"/usecases/credit/predict/{entity}").status_code == 200
        example = client.get("/usecases/credit").json()["example"]
        assert client.post("/usecases/credit/predict", json=example).status_code == 200
        bad = client.post("/usecases/credit/predict", json=example | {"Age": 7})
        assert bad.status_code == 422

        after = client.get("/usecases/credit/summary", params={"window": "1h"}).json()
        assert after["window"] == "1h"
        assert after["predictions"] >= 4
        grown = client.get("/usecases/credit/summary", params={"window": "all"}).json()
        assert grown["predictions"] - before["predictions"] == 4
        assert sum(grown["labels"].values()) == grown["predictions"]
        assert sum(grown["score_histogram"]["counts"]) == grown["predictions"]
        assert grown["latency_ms"]["p50"] > 0
        assert grown["errors"]["requests"] == 5 and grown["errors"]["rejected"] == 1
        assert grown["errors"]["rate"] == pytest.approx(0.2)

        wrong = client.get("/usecases/credit/summary", params={"window": "soon"})
        assert wrong.status_code == 422
        assert wrong.json()["error"]["details"][0]["field"] == "window"

        history = client.get(
            "/usecases/credit/predictions", params={"entity_id": "12"}, headers=ADMIN
        ).json()["items"]
        assert len(history) >= 2 and len({h["entity_id"] for h in history}) == 1
        assert history[0]["entity_id"].startswith("h:") and history[0]["entity_id"] != "12"
        other = client.get(
            "/usecases/credit/predictions", params={"entity_id": "99"}, headers=ADMIN
        ).json()["items"]
        assert {h["entity_id"] for h in other} != {history[0]["entity_id"]}
        none = client.get(
            "/usecases/credit/predictions", params={"entity_id": "no-such"}, headers=ADMIN
        ).json()["items"]
        assert none == []
        assert client.get("/usecases/credit/summary?window=24h").status_code == 200
        # the docs (Swagger UI, ReDoc) resolve every reference of the schema
        document = client.get("/openapi.json")
        refs = set(re.findall(r'"\$ref":\s*"#/components/schemas/([^"]+)"', document.text))
        assert refs and refs <= set(document.json()["components"]["schemas"])
        # the feedback operation of each use case has its own typed body (CreditFeedback)
        assert "CreditFeedback" in refs and "UseCaseFigures" in refs
