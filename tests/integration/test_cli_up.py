"""`tabops up`: the API, the web UI and the MLflow UI as local processes, started together
and stopped together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import USECASES
from tests.serverproc import free_port

pytestmark = pytest.mark.slow


def _env(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABOPS_")}
    env |= {
        "TABOPS_VAR_DIR": str(var),
        "TABOPS_USECASES_DIR": str(USECASES),
        "TABOPS_API__USECASES": '["iris"]',
        "TABOPS_MONITOR__ENABLED": "false",
        "TABOPS_AUTH__ANONYMOUS_PREDICT": "true",  # as make run
    }
    return env


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = log.read_text(errors="replace")
        if text in out:
            return out
        assert proc.poll() is None or text in log.read_text(), out
        assert time.monotonic() < deadline, f"{text!r} not printed in {timeout} s:\n{out}"
        time.sleep(0.3)


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_up_starts_three_services_and_sigterm_stops_them(tmp_path: Path) -> None:
    ports = {"api": free_port(), "ui": free_port(), "mlflow": free_port()}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tabops", "up"]
            + ["--api-port", str(ports["api"]), "--ui-port", str(ports["ui"])]
            + ["--mlflow-port", str(ports["mlflow"])],
            env=_env(tmp_path / "var"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        printed = _wait_for(log, "Press Ctrl-C to stop", proc, 240)
        for port in ports.values():
            assert f"http://127.0.0.1:{port}" in printed
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/health").json()["status"] == "ok"
        # iris is not trained in this folder: the API says so rather than fail
        assert httpx.get(f"http://127.0.0.1:{ports['api']}/usecases").json()[0]["status"] == (
            "untrained"
        )
        assert httpx.get(f"http://127.0.0.1:{ports['ui']}/_stcore/health").text == "ok"
        assert httpx.get(f"http://127.0.0.1:{ports['mlflow']}/health").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    out = log.read_text()
    assert all(f"stopped {name}" in out for name in ("API", "UI", "MLflow UI")), out
    assert all(_closed(port) for port in ports.values())
    assert (tmp_path / "var" / "logs" / "api.log").is_file()


def test_up_fails_clearly_when_a_service_cannot_start(tmp_path: Path) -> None:
    api_port, ui_port = free_port(), free_port()
    with socket.socket() as taken:  # the API's port is in use: its process exits
        taken.bind(("127.0.0.1", api_port))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "-m", "tabops", "up", "--no-mlflow"]
            + ["--api-port", str(api_port), "--ui-port", str(ui_port)],
            env=_env(tmp_path / "var"),
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert result.returncode == 1
    assert "API exited with code" in result.stderr and "api.log" in result.stderr
    assert "stopped UI" in result.stdout
    assert _closed(ui_port)
