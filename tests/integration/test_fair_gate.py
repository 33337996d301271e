"""The gate: the champion re-scored on the candidate's hold-out rows, a baseline for first
versions, and what each run records (metrics.json, the model card)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from tabops.api.app import create_app
from tabops.config import Settings
from tabops.data.datasets import validate_frame
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import train_usecase
from tabops.spec.files import load_usecase
from tabops.spec.schema import UseCase
from tabops.store.db import create_db_engine
from tabops.store.training_tables import ingest_rows, read_training_frame, seed_table
from tests.conftest import ADMIN, make_settings
from tests.factories import spec_dict, toy_frame

pytestmark = pytest.mark.slow


def _usecase(tmp_path: Path, **changes: Any) -> tuple[Settings, UseCase]:
    usecases = tmp_path / "usecases"
    (usecases / "toy").mkdir(parents=True)
    raw = spec_dict(training={"cv_folds": 3, "reference_size": 50}, **changes)
    (usecases / "toy" / "usecase.yaml").write_text(yaml.safe_dump(raw), "utf-8")
    settings = make_settings(tmp_path / "var", usecases_dir=usecases)
    return settings, load_usecase(usecases, "toy")


def test_champion_is_rescored_on_the_candidates_holdout_rows(tmp_path: Path) -> None:
    settings, spec = _usecase(tmp_path)
    engine = create_db_engine(settings.database_url_resolved)
    registry = Registry(settings)
    seed_table(engine, spec, validate_frame(spec, toy_frame(300, seed=0)), source="seed:test")
    first = train_usecase(spec, engine, registry)
    assert first.promoted, first.reason
    more = toy_frame(300, seed=1).assign(customer=[f"d{i:05d}" for i in range(300)])
    ingest_rows(engine, spec, validate_frame(spec, more), source="ingest:test")
    second = train_usecase(spec, engine, registry)

    # the champion's score on the new hold-out, computed here without tabops' metrics
    frame = read_training_frame(engine, spec)
    y = frame["outcome"]
    _, X_hold, _, y_hold = train_test_split(
        frame[spec.feature_names], y, test_size=0.2, stratify=y, random_state=42
    )
    v1 = registry.load("toy", "1").pipeline
    p_yes = v1.predict_proba(X_hold)[:, list(v1.classes_).index("yes")]
    expected = roc_auc_score(y_hold == "yes", p_yes)

    assert second.champion_version == "1"
    assert second.champion_metrics is not None
    assert second.champion_metrics["roc_auc"] == pytest.approx(expected)
    assert second.champion_metrics["roc_auc"] != first.holdout_metrics["roc_auc"]
    assert f"on the same {len(X_hold)} hold-out rows" in second.reason
    recorded = registry.version("toy", second.version).metrics
    assert recorded["gate_champion_roc_auc"] == pytest.approx(expected)
    assert recorded["holdout_roc_auc"] == second.holdout_metrics["roc_auc"]
    engine.dispose()


def test_a_first_version_must_beat_the_prior_baseline(tmp_path: Path) -> None:
    settings, spec = _usecase(tmp_path, gate={"metric": "roc_auc", "baseline_margin": 0.2})
    engine = create_db_engine(settings.database_url_resolved)
    registry = Registry(settings)
    rows = toy_frame(400)
    rows["outcome"] = np.random.default_rng(3).permutation(rows["outcome"].to_numpy())
    seed_table(engine, spec, validate_frame(spec, rows), source="seed:test")
    noise = train_usecase(spec, engine, registry)
    assert not noise.promoted
    assert "does not beat the prior baseline (0.5000) by the margin 0.2" in noise.reason
    assert noise.baseline_metrics is not None and noise.baseline_metrics["roc_auc"] == 0.5
    assert registry.champion("toy") is None
    forced = train_usecase(spec, engine, registry, force=True)
    assert forced.promoted and "promotion forced" in forced.reason
    engine.dispose()


def test_run_records_metrics_json_and_a_model_card(tmp_path: Path) -> None:
    settings, spec = _usecase(tmp_path)
    engine = create_db_engine(settings.database_url_resolved)
    registry = Registry(settings)
    seed_table(engine, spec, validate_frame(spec, toy_frame(300)), source="seed:test")
    outcome = train_usecase(spec, engine, registry)
    engine.dispose()
    assert "beats the prior baseline" in outcome.reason

    client = MlflowClient(settings.tracking_uri)
    files = {
        a.path
        for folder in ("tabops", "card")
        for a in client.list_artifacts(outcome.run_id, folder)
    }
    assert {"tabops/metrics.json", "card/card.json", "card/card.md"} <= files
    local = registry.run_folder("toy", outcome.run_id)
    figures = json.loads((local / "metrics.json").read_text())
    assert figures["holdout"] == outcome.holdout_metrics
    assert figures["cv"] == outcome.cv_metrics
    assert figures["threshold"] == outcome.threshold
    assert figures["data_sha256"] == outcome.data_sha256

    with TestClient(create_app(settings)) as api:
        card = api.get("/usecases/toy/models/1/card", headers=ADMIN)
        assert card.status_code == 200, card.text
        body = card.json()
        markdown = api.get("/usecases/toy/models/1/card?format=markdown", headers=ADMIN)
        assert api.get("/usecases/toy/models/9/card", headers=ADMIN).status_code == 404
        assert api.get("/usecases/toy/models/1/card").status_code == 401
    assert body["version"] == "1" and body["aliases"] == ["champion"]
    assert body["data"]["rows"] == 300
    balance = body["data"]["class_balance"]
    assert sum(c["rows"] for c in balance.values()) == 300
    assert body["metrics"]["holdout"]["roc_auc"] == outcome.holdout_metrics["roc_auc"]
    assert body["metrics"]["baseline"]["roc_auc"] == 0.5
    assert body["decision"] == {
        "policy": "fixed",
        "threshold": 0.5,
        "explanation": "the spec's fixed threshold",
    }
    assert [i["feature"] for i in body["importances"]] != []
    assert set(i["feature"] for i in body["importances"]) == set(spec.feature_names)
    assert body["gate"]["promoted"] is True and body["gate"]["reason"] == outcome.reason
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    text = markdown.text
    assert text.startswith("# Toy: model card, version 1")
    assert f"| roc_auc | {outcome.holdout_metrics['roc_auc']:.4f} | 0.5000 |" in text
    assert "Promoted to champion" in text
    assert (local / "card.md").read_text() == text
