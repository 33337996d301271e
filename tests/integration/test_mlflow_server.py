"""Training and loading through a real MLflow tracking server (the production set-up),
not only through the embedded SQLite store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tabops.lifecycle.registry import Registry
from tests.conftest import make_settings, seed_and_train
from tests.serverproc import free_port


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on a free loopback port, with its own SQLite store and artifacts."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--serve-artifacts",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # its job consumers run in sessions of their own and would outlive it
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (root / "server.log").read_text()
            assert time.monotonic() < deadline, "mlflow server not ready in 120 s"
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # its job consumers
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_train_register_and_load_through_a_tracking_server(
    tmp_path: Path, mlflow_server: str
) -> None:
    settings = make_settings(tmp_path / "var", mlflow={"tracking_uri": mlflow_server})
    outcome = seed_and_train(settings, ["iris"])["iris"]
    assert outcome.promoted
    loaded = Registry(settings).load("iris")  # downloads and verifies the artifact's sha256
    assert loaded.version == outcome.version
    assert loaded.reference is not None and len(loaded.reference) > 0
    # nothing was written to the embedded store
    assert not (settings.var_dir / "mlflow.db").exists()
