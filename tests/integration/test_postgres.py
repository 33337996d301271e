"""The seed -> train -> predict path against the real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from tabops.api.app import create_app
from tabops.spec.files import load_usecase
from tabops.store.db import create_db_engine
from tabops.store.training_tables import count_rows, fetch_entity, read_training_frame
from tests.conftest import USECASES, make_settings, seed_and_train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_seed_train_predict_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var", db={"url": postgres_url})
    outcome = seed_and_train(settings, ["credit"])["credit"]
    assert outcome.promoted and outcome.holdout_metrics["roc_auc"] >= 0.82

    # the same data and seed give the same model on SQLite: row order is fixed by the table
    sqlite = seed_and_train(make_settings(tmp_path / "sqlite-var"), ["credit"])["credit"]
    assert outcome.holdout_metrics == pytest.approx(sqlite.holdout_metrics, rel=1e-9)
    assert outcome.data_sha256 == sqlite.data_sha256

    spec = load_usecase(USECASES, "credit")
    engine = create_db_engine(postgres_url)
    try:
        assert count_rows(engine, spec) == 4454
        columns = {
            c["name"]: str(c["type"]) for c in inspect(engine).get_columns("training_credit")
        }
        assert columns["Age"] == "BIGINT" and columns["Income"] == "BIGINT"
        assert columns["Home"].startswith("VARCHAR") and columns["Status"].startswith("VARCHAR")
        assert columns["prior_records"] == "BOOLEAN"
        frame = read_training_frame(engine, spec)
        assert frame["Income"].isna().sum() == 381  # the real gaps survive the round trip
        assert fetch_entity(engine, spec, "1") is not None
        assert fetch_entity(engine, spec, "999999") is None
    finally:
        engine.dispose()

    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").json()["database"] == "ok"
        example = client.get("/usecases/credit").json()["example"]
        response = client.post("/usecases/credit/predict", json=example)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == outcome.version
