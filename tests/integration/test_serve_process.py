"""`tabops serve` as a real process on a free port, called over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tabops.config import Settings
from tabops.training import TrainingOutcome

pytestmark = pytest.mark.slow

Trained = tuple[Settings, dict[str, TrainingOutcome]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABOPS_")}
    env |= {
        "TABOPS_VAR_DIR": str(settings.var_dir),
        "TABOPS_USECASES_DIR": str(settings.usecases_dir),
        **{f"TABOPS_DATA_DIRS__{k.upper()}": str(v) for k, v in settings.data_dirs.items()},
        **extra,
    }
    return env


@pytest.fixture
def server(trained: Trained, tmp_path: Path) -> Iterator[str]:
    settings, _ = trained
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tabops", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=serve_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in 90 s"
            time.sleep(0.3)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


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
