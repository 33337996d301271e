"""Telemetry through the real app and a real server: /health's figures, request-scoped JSON
log lines, the X-Request-ID round trip, and no secret in a server's whole log."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tabops import __version__
from tabops.api.app import create_app
from tabops.config import Settings
from tabops.lifecycle.train import TrainingOutcome
from tabops.telemetry.logging import configure_logging
from tests.conftest import ADMIN_KEY, make_settings, seed_and_train
from tests.serverproc import RECORD, ServerProcess, serve_env

pytestmark = pytest.mark.slow

Trained = tuple[Settings, dict[str, TrainingOutcome]]
_MANAGED = (
    "",
    "tabops",
    "gunicorn.error",
    "gunicorn.access",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "mlflow",
    "alembic",
    "sqlalchemy.engine",
    "huey",
)


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """This process's logs as JSON lines in a buffer; the loggers are restored afterwards."""
    monkeypatch.setenv("MLFLOW_CONFIGURE_LOGGING", "false")  # configure_logging sets it
    saved = {}
    for name in _MANAGED:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate)
    stream = io.StringIO()
    configure_logging("json", "INFO", [], stream=stream)
    yield stream
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_health_reports_version_uptime_models_and_recent_latency(trained: Trained) -> None:
    settings, outcomes = trained
    with TestClient(create_app(settings)) as client:
        before = client.get("/health").json()
        assert before["status"] == "ok" and before["version"] == __version__
        assert before["latency"] == {
            "window_s": 300.0,
            "requests": 0,
            "p50_ms": None,
            "p95_ms": None,
        }
        assert before["models"] == {
            name: {"status": "serving", "version": outcome.version}
            for name, outcome in outcomes.items()
        }
        datetime.fromisoformat(before["started_at"])
        example = client.get("/usecases/credit").json()["example"]
        for _ in range(30):
            assert client.post("/usecases/credit/predict", json=example).status_code == 200
        # the default use case (the first by name) refuses an iris record: still counted
        assert client.post("/predict", json=RECORD).status_code == 422
        assert client.post("/usecases/credit/predict", json={"age": "x"}).status_code == 422
        client.get("/usecases")  # not a prediction: not counted
        after = client.get("/health").json()
        assert after["latency"]["requests"] == 32
        assert 0 < after["latency"]["p50_ms"] <= after["latency"]["p95_ms"]
        assert after["uptime_s"] > before["uptime_s"] >= 0


def test_request_scoped_lines_carry_request_id_usecase_and_version(
    trained: Trained, log_lines: io.StringIO
) -> None:
    """The caller's request id, else a made one, names the call in the response header, on
    the log lines and in the audit row alike; one the store cannot keep is refused (400)."""
    settings, outcomes = trained
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"access_log": True})}
    )
    with TestClient(create_app(settings)) as client:
        example = client.get("/usecases/credit").json()["example"]
        log_lines.seek(0)
        log_lines.truncate()
        given = client.post(
            "/usecases/credit/predict", json=example, headers={"X-Request-ID": "abc 123/x"}
        )
        assert given.status_code == 200 and given.headers["x-request-id"] == "abc 123/x"
        made = client.post("/usecases/credit/predict", json=example)
        assert made.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
        refused = client.post(
            "/usecases/credit/predict", json=example, headers={"X-Request-ID": "x" * 500}
        )
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_header"
        assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])  # a new one
        assert client.get("/health").headers["x-request-id"] != made.headers["x-request-id"]
        for answer in (given, made):
            audited = client.get(
                f"/usecases/credit/predictions/{answer.json()['prediction_id']}",
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ).json()
            assert audited["request"]["request_id"] == answer.headers["x-request-id"]
    access = [line for line in _lines(log_lines) if line["logger"] == "tabops.access"]
    first, second, third, health = access[:4]  # then the two audit look-ups
    assert first["request_id"] == "abc 123/x"
    assert second["request_id"] == made.headers["x-request-id"]
    assert third["request_id"] == refused.headers["x-request-id"]
    for line, status in ((first, 200), (second, 200), (third, 400)):
        assert line["usecase"] == "credit"
        assert line["model_version"] == outcomes["credit"].version
        assert line["message"].startswith(f"POST /usecases/credit/predict {status} ")
        assert line["level"] == "INFO" and datetime.fromisoformat(line["timestamp"])
    assert "usecase" not in health and health["message"].startswith("GET /health 200")


def test_a_server_logs_json_and_never_a_secret(tmp_path: Path, postgres_url: str) -> None:
    """`tabops serve --workers 2` (gunicorn and its forked workers) with every kind of secret
    set and sent: the whole log is JSON lines and holds none of them."""
    db_password = "Db-pa55-in-the-url-0042"
    # the test server trusts local connections: the password is sent, and ignored
    url = make_url(postgres_url).set(password=db_password).render_as_string(hide_password=False)
    admin, predict = "admin-secret-0123456789abc", "predict-secret-0123456789abc"
    pseudonym = "pseudonym-secret-0123456789"
    settings = make_settings(tmp_path / "var", db={"url": url}, api={"usecases": ["iris"]})
    seed_and_train(settings, ["iris"])
    env = serve_env(
        settings,
        TABOPS_ENV="prod",
        TABOPS_AUTH__ANONYMOUS_PREDICT="false",
        TABOPS_AUTH__ADMIN_KEY=admin,
        TABOPS_AUTH__PREDICT_KEY=predict,
        TABOPS_AUDIT__PSEUDONYM_KEY=pseudonym,
        TABOPS_API__USECASES='["iris"]',
        TABOPS_API__ACCESS_LOG="true",
        TABOPS_LOG__FORMAT="json",
    )
    log = tmp_path / "serve.log"
    created_key = ""
    with (
        ServerProcess(env, log, workers=2) as server,
        httpx.Client(base_url=server.base, timeout=30) as client,
    ):
        bearer = {"Authorization": f"Bearer {predict}"}
        admin_h = {"Authorization": f"Bearer {admin}"}
        for _ in range(10):
            assert (
                client.post("/usecases/iris/predict", json=RECORD, headers=bearer).status_code
                == 200
            )
        assert client.post("/usecases/iris/predict", json=RECORD).status_code == 401
        wrong = {"Authorization": "Bearer tabops_0badc0de_not-a-real-secret-at-all"}
        assert client.post("/usecases/iris/predict", json=RECORD, headers=wrong).status_code == 401
        assert client.get("/usecases/iris/models", headers=admin_h).status_code == 200
        assert client.post("/usecases/iris/models/99/promote", headers=admin_h).status_code == 404
        assert (
            client.get(f"/usecases/iris/predictions?key={admin}", headers=admin_h).status_code
            == 200
        )
        from tabops.store.db import create_db_engine
        from tabops.store.keys import create_key

        engine = create_db_engine(url)
        created_key = create_key(engine, "telemetry-test", "predict")
        engine.dispose()
        keyed = {"Authorization": f"Bearer {created_key}"}
        assert client.post("/usecases/iris/predict", json=RECORD, headers=keyed).status_code == 200
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    banner = [line for line in lines if not line.startswith("{")]
    assert all(line.startswith("tabops API on ") for line in banner), banner  # rich, stdout
    records = [json.loads(line) for line in lines if line.startswith("{")]
    loggers = {r["logger"] for r in records}
    assert {"gunicorn.error", "tabops.access"} <= loggers
    assert any(name.startswith("tabops.serving.") for name in loggers)  # the models loaded
    assert len({r["process"] for r in records}) >= 3  # the arbiter and both workers
    access = [r for r in records if r["logger"] == "tabops.access"]
    assert len(access) >= 15 and all(r["request_id"] for r in access)
    predicted = [r for r in access if r["message"].startswith("POST /usecases/iris/predict 200")]
    assert len(predicted) == 11 and {r["model_version"] for r in predicted} == {"1"}
    secret_part = created_key.rsplit("_", 1)[1]
    for secret in (db_password, admin, predict, pseudonym, secret_part):
        assert secret not in text, secret
