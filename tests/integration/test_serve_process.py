"""`tabops serve` as a real process on a free port, called over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tabops.config import Settings
from tabops.training import TrainingOutcome
from tests.serverproc import ServerProcess, serve_env

pytestmark = pytest.mark.slow

Trained = tuple[Settings, dict[str, TrainingOutcome]]


@pytest.fixture
def server(trained: Trained, tmp_path: Path) -> Iterator[str]:
    settings, _ = trained
    log = tmp_path / "serve.log"
    with ServerProcess(serve_env(settings), log) as proc:
        yield proc.base
    assert "Traceback" not in log.read_text()


def test_served_over_http(server: str, trained: Trained) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        listed = {u["name"]: u["champion_version"] for u in client.get("/usecases").json()}
        assert listed == {name: o.version for name, o in trained[1].items()}
        example = client.get("/usecases/churn").json()["example"]
        response = client.post("/usecases/churn/predict", json=example)
        assert response.status_code == 200
        assert response.json()["label"] in ("No", "Yes")
        bad = client.post(
            "/usecases/churn/predict",
            content=b"{oops",
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed_request"
        assert client.get("/docs").status_code == 200
