"""`tabops serve` as a real process on a free port, called over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tabops.config import Settings
from tabops.lifecycle.train import TrainingOutcome
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


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    out: list[int] = []
    for task in tasks.iterdir():
        children = (task / "children").read_text().split()
        out += [int(c) for c in children]
    return out


def _raw(base: str, payload: bytes) -> bytes:
    """Send raw bytes on one connection and read until the server closes it."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_whole_answers_on_pipelined_and_closing_connections(server: str) -> None:
    """uvicorn's writes joined per loop turn (api/transport.py): two pipelined requests get
    two whole answers in order, and ``Connection: close`` gets its answer before the close."""
    get = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
    close = b"GET /usecases HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    received = _raw(server, get + close)
    answers = received.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 2
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"200 OK")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        assert len(body) == length
    assert b'"name"' in answers[1]  # the use cases, in the order asked


def test_workers_fork_from_a_parent_that_loaded_the_models(
    trained: Trained, tmp_path: Path
) -> None:
    """`--workers 2` on a database that was never migrated: the parent migrates it and
    loads the models once, the workers are forked from it, serve, and are replaced when
    one dies."""
    settings, _ = trained
    log = tmp_path / "serve.log"
    env = serve_env(
        settings,
        TABOPS_DB__URL=f"sqlite:///{tmp_path / 'fresh.db'}",
        TABOPS_AUDIT__SPOOL_DIR=str(tmp_path / "spool"),
        TABOPS_API__USECASES='["iris"]',
    )
    with ServerProcess(env, log, workers=2) as proc:
        assert proc.proc is not None
        parent = proc.proc.pid
        deadline = time.monotonic() + 30
        while len(workers := _children(parent)) < 2:  # gunicorn forks them a moment apart
            assert time.monotonic() < deadline, f"workers: {workers}"
            time.sleep(0.1)
        assert len(workers) == 2
        command = Path(f"/proc/{parent}/cmdline").read_bytes()
        # forked, not spawned: a worker runs the parent's command line
        assert all(Path(f"/proc/{w}/cmdline").read_bytes() == command for w in workers)
        with httpx.Client(base_url=proc.base, timeout=10) as client:
            example = client.get("/usecases/iris").json()["example"]
            assert client.post("/usecases/iris/predict", json=example).status_code == 200
            # uvicorn's HTTP parser was loaded before the fork, its pages shared; the
            # WebSocket package, for which tabops has no route, is never loaded
            assert "httptools" in Path(f"/proc/{parent}/maps").read_text()
            assert all("websockets" not in Path(f"/proc/{w}/maps").read_text() for w in workers)
            os.kill(workers[0], signal.SIGKILL)
            deadline = time.monotonic() + 60
            while len(set(_children(parent)) - {workers[0]}) < 2:
                assert time.monotonic() < deadline, "the dead worker was not replaced"
                time.sleep(0.2)
            for _ in range(20):  # both workers answer again
                assert client.post("/usecases/iris/predict", json=example).status_code == 200
    text = log.read_text()
    assert text.count("use case iris: serving version") == 1  # loaded once, in the parent
    assert "Traceback" not in text


def test_workers_do_not_outlive_an_arbiter_killed_with_sigkill(
    trained: Trained, tmp_path: Path
) -> None:
    """A SIGKILLed (or OOM-killed) arbiter runs no shutdown: its workers are told by the
    kernel (PR_SET_PDEATHSIG) and stop, instead of serving on as orphans on its socket."""
    settings, _ = trained
    env = serve_env(
        settings,
        TABOPS_AUDIT__SPOOL_DIR=str(tmp_path / "spool"),
        TABOPS_API__USECASES='["iris"]',
    )
    with ServerProcess(env, tmp_path / "serve.log", workers=2) as proc:
        assert proc.proc is not None
        parent = proc.proc.pid
        deadline = time.monotonic() + 30
        while len(workers := _children(parent)) < 2:
            assert time.monotonic() < deadline, f"workers: {workers}"
            time.sleep(0.1)
        os.kill(parent, signal.SIGKILL)
        proc.proc.wait(timeout=10)
        deadline = time.monotonic() + 60  # each worker shuts down gracefully on its SIGTERM
        while alive := [w for w in workers if Path(f"/proc/{w}").exists() and _running(w)]:
            assert time.monotonic() < deadline, f"orphaned workers still running: {alive}"
            time.sleep(0.2)
        with pytest.raises(httpx.TransportError):  # nobody serves on the port any more
            httpx.get(f"{proc.base}/health", timeout=2)


def _running(pid: int) -> bool:
    """Not a zombie (an exited orphan waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
