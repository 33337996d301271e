"""Monitoring end to end: a real server, simulated (shifted) traffic with feedback, drift
and live quality read back over HTTP and checked against direct computations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score
from sqlalchemy import select
from typer.testing import CliRunner

from tabops.cli import app
from tabops.client.simulate import apply_shifts, parse_shift, sample_records, simulate
from tabops.config import Settings
from tabops.data.datasets import read_source
from tabops.lifecycle.train import TrainingOutcome
from tabops.spec.files import load_usecase
from tabops.store.db import create_db_engine
from tabops.store.schema import feedback, predictions
from tests.conftest import USECASES
from tests.serverproc import ServerProcess, serve_env

pytestmark = pytest.mark.slow
Trained = tuple[Settings, dict[str, TrainingOutcome]]
CREDIT = load_usecase(USECASES, "credit")


def _credit_server(settings: Settings, db_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a server answering for credit, auditing into ``db_url``."""
    return serve_env(
        settings,
        TABOPS_DB__URL=db_url,
        TABOPS_AUDIT__SPOOL_DIR=str(tmp_path / "spool"),
        TABOPS_API__USECASES='["credit"]',
    )


def test_shifted_traffic_shows_as_drift_and_feedback_as_live_quality(
    trained: Trained, tmp_path: Path
) -> None:
    settings, _ = trained
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    env = _credit_server(settings, db_url, tmp_path)
    frame = read_source(CREDIT, settings)
    records, truths = sample_records(CREDIT, frame, 600, seed=3)
    apply_shifts(CREDIT, frame, records, [parse_shift(CREDIT, "Income=+2sd")])
    with ServerProcess(env, tmp_path / "serve.log") as server:
        result = asyncio.run(simulate(server.base, CREDIT, records, truths, concurrency=8))
        assert (result.ok, result.failed, result.feedback) == (600, 0, 600)
        with httpx.Client(base_url=server.base, timeout=60) as client:
            report = client.get("/usecases/credit/drift", params={"window": 600}).json()
            assert report["n_live"] == 600 and report["tier"] in ("watch", "retrain")
            drifted = {f["name"] for f in report["features"] if f["drifted"]}
            assert drifted == {"Income"}, report["message"]
            page = client.get("/usecases/credit/drift", params={"window": 600, "format": "html"})
            assert page.headers["content-type"].startswith("text/html")
            assert page.text.count("<svg") == len(CREDIT.features) and "Income" in page.text
            history = client.get("/usecases/credit/drift/history").json()
            assert len(history) == 2 and history[0]["n_live"] == 600

            quality = client.get("/usecases/credit/performance", params={"window": 600}).json()
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(predictions.c.label, feedback.c.actual).join(
                feedback, feedback.c.prediction_id == predictions.c.id
            )
        ).all()
    engine.dispose()
    y_pred = np.array([r[0] for r in rows])
    y_true = np.array([r[1] for r in rows])
    assert quality["n_labelled"] == 600
    assert quality["measured"]["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert quality["measured"]["f1"] == pytest.approx(f1_score(y_true, y_pred, pos_label="bad"))
    assert 0 < quality["estimated"]["accuracy"] < 1 and quality["holdout"]["roc_auc"] > 0.8


def test_drift_cli_exit_code_follows_the_tier(trained: Trained, tmp_path: Path) -> None:
    settings, _ = trained
    db_url = f"sqlite:///{tmp_path / 'live.db'}"
    env = {
        "TABOPS_VAR_DIR": str(settings.var_dir),
        "TABOPS_USECASES_DIR": str(USECASES),
        "TABOPS_DB__URL": db_url,
    }
    result = CliRunner().invoke(app, ["drift", "credit"], env=env)
    assert result.exit_code == 0 and "insufficient_data" in result.output  # no live rows yet
    server_env = _credit_server(settings, db_url, tmp_path)
    frame = read_source(CREDIT, settings)
    with ServerProcess(server_env, tmp_path / "serve.log") as server:
        records, _ = sample_records(CREDIT, frame, 500, seed=5)
        apply_shifts(
            CREDIT,
            frame,
            records,
            [parse_shift(CREDIT, s) for s in ("Income=+2sd", "Amount=*2", "Age=+2sd")],
        )
        asyncio.run(simulate(server.base, CREDIT, records, None))
    html = tmp_path / "drift.html"
    result = CliRunner().invoke(
        app, ["drift", "credit", "--window", "500", "--html", str(html)], env=env
    )
    assert result.exit_code == 2, result.output  # three drifted features: retrain
    assert "retrain" in result.output and html.read_text().startswith("<!doctype html>")


def test_retrain_policy_starts_a_job_on_drift(tmp_path: Path) -> None:
    import shutil
    import time

    import yaml
    from fastapi.testclient import TestClient

    from tabops.api.app import create_app
    from tabops.api.deps import services_of
    from tests.conftest import ADMIN, make_settings, seed_and_train

    usecases = tmp_path / "usecases"
    shutil.copytree(USECASES / "iris", usecases / "iris")
    spec_path = usecases / "iris" / "usecase.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["monitoring"] = {"window": 200, "min_rows": 50}
    raw["retrain"] = {"on_drift_tier": "watch", "cooldown_hours": 0}
    spec_path.write_text(yaml.safe_dump(raw))
    settings = make_settings(tmp_path / "var", usecases_dir=usecases, monitor={"enabled": False})
    seed_and_train(settings, ["iris"])
    iris = load_usecase(usecases, "iris")
    frame = read_source(iris, settings)
    records, _ = sample_records(iris, frame, 200, seed=1)
    apply_shifts(
        iris,
        frame,
        records,
        [parse_shift(iris, "petal_length=+2sd"), parse_shift(iris, "petal_width=+2sd")],
    )
    with TestClient(create_app(settings)) as client:
        for record in records:
            assert client.post("/usecases/iris/predict", json=record).status_code == 200
        started = client.portal.call(services_of(client.app).monitor.run_once)  # type: ignore[arg-type]
        assert started == ["iris"]
        jobs = client.get("/jobs", headers=ADMIN).json()
        assert jobs[0]["trigger"] == "retrain-policy" and "drift tier" in jobs[0]["requested_by"]
        deadline = time.monotonic() + 120
        while (job := client.get(f"/jobs/{jobs[0]['id']}", headers=ADMIN).json())["state"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert (
            job["state"] == "succeeded" and job["promoted"] is False
        )  # same data: the gate says no
        assert client.portal.call(services_of(client.app).monitor.run_once) == [  # type: ignore[arg-type]
            "iris"
        ]  # cooldown 0: again
