"""Run `tabops serve` as a real process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tabops.config import Settings

RECORD = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a server process these settings (``extra`` wins)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABOPS_")}
    env |= {
        "TABOPS_VAR_DIR": str(settings.var_dir),
        "TABOPS_USECASES_DIR": str(settings.usecases_dir),
        "TABOPS_AUTH__ANONYMOUS_PREDICT": str(settings.auth.anonymous_predict).lower(),
        # the suite's load generators send more than a key's default rate: a test of the
        # rate limit sets its own
        "TABOPS_API__RATE_LIMIT": "",
        # stopped at the end of every test: no readiness drain (test_shutdown.py has one)
        "TABOPS_API__DRAIN_S": "0",
        **{f"TABOPS_DATA_DIRS__{k.upper()}": str(v) for k, v in settings.data_dirs.items()},
    }
    if settings.db.url:
        env["TABOPS_DB__URL"] = settings.db.url
    if settings.auth.admin_key is not None:
        env["TABOPS_AUTH__ADMIN_KEY"] = settings.auth.admin_key.get_secret_value()
    env |= extra
    return env


class ServerProcess:
    """`tabops serve` in a subprocess; waits for /ready on start, stops on exit."""

    def __init__(
        self, env: dict[str, str], log: Path, workers: int = 1, database_up: bool = True
    ) -> None:
        self.env = env
        self.log_path = log
        self.workers = workers
        self.database_up = database_up
        """False: started while the database is down, ready once its models are loaded
        (``/ready`` says 503 for the database, and the server serves from the spool)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 240) -> ServerProcess:
        # a start loads, compiles and checks every model: minutes on a loaded 2-core machine
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tabops",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() and stop() reach all
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()}")
            try:
                ready = httpx.get(f"{self.base}/ready", timeout=5)
                if ready.status_code == 200:
                    return self
                body = ready.json()
                if not self.database_up and set(body.get("usecases", {}).values()) == {"serving"}:
                    return self
            except (httpx.TransportError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()  # never leave a server behind that did not start in time
                raise RuntimeError(f"server not ready in {timeout} s:\n{self.log_path.read_text()}")
            time.sleep(0.2)

    def workers_pids(self) -> list[int]:
        """The worker processes of a pre-fork server (the children of its arbiter)."""
        assert self.proc is not None
        out: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
        return out

    def kill(self) -> None:
        """SIGKILL to every process of the server (arbiter and workers, a crash of the
        whole server): no shutdown handler runs."""
        assert self.proc is not None
        self._kill_group()
        self.proc.wait(timeout=20)

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM and a graceful stop (drain, then what is in flight; 26 s by default);
        past 60 s, SIGKILL. Either way no process of the server is left behind."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(timeout=10)
        self._kill_group()  # a worker that outlived its arbiter

    def __enter__(self) -> ServerProcess:
        # `with server.start(timeout=...)` must not start a second server
        if self.proc is not None and self.proc.poll() is None:
            return self
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Load:
    """Keeps sending predictions from a thread until stopped; remembers every answer."""

    def __init__(
        self,
        base: str,
        concurrency: int = 16,
        path: str = "/usecases/iris/predict",
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        self.concurrency = concurrency
        self.path = path
        self.body = body or RECORD
        self.headers = headers or {}
        self.ok: list[str] = []
        self.versions: dict[str, str] = {}
        self.failed: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            try:
                response = await client.post(self.path, json=self.body)
            except httpx.HTTPError as exc:
                self.failed.append(type(exc).__name__)
                await asyncio.sleep(0.05)
                continue
            if response.status_code == 200:
                body = response.json()
                self.versions[body["prediction_id"]] = body["model_version"]
                self.ok.append(body["prediction_id"])
            else:
                self.failed.append(response.status_code)

    async def _run(self) -> None:
        async with httpx.AsyncClient(
            base_url=self.base, timeout=30, headers=self.headers
        ) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(self.concurrency)))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the load thread did not stop"

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ok) < count:
            assert self._thread.is_alive(), "the load thread died (see its exception above)"
            assert time.monotonic() < deadline, (
                f"only {len(self.ok)} answers, failures {self.failed[-5:]}"
            )
            time.sleep(0.05)
