"""The multi-replica shape of the compose stack, run here as real local processes.

One PostgreSQL database (a fresh one on the test server), one `mlflow server`, two replicas
of `tabops serve --workers 2` on free ports, Debian's nginx round-robin in front of them,
and Prometheus scraping both replicas. Under bounded load through nginx:

- every prediction answered is audited exactly once in the shared database;
- Prometheus sees complete metrics: per replica, the predictions its workers counted are
  the predictions it answered;
- a promotion made through one replica is served by both within the poll interval;
- a replica stopped with SIGTERM drops no request: every request sent through nginx is
  answered 200, before, during and after the stop.

And, in a second test of the same shape (two replicas of two workers behind nginx, audit
on PostgreSQL), the per-key rate limit holds across both replicas through Redis: one
window for a key, whichever of the four worker processes a request reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import train_usecase
from tabops.spec.files import load_usecase
from tabops.store.db import create_db_engine
from tabops.store.schema import predictions
from tests.conftest import ADMIN, USECASES, make_settings, require, seed_and_train
from tests.serverproc import RECORD, ServerProcess, free_port, serve_env

pytestmark = [pytest.mark.slow, pytest.mark.integration]

POLL_S = 1.0
"""The replicas' registry poll interval (TABOPS_LIFECYCLE__POLL_INTERVAL_S)."""


def _wait(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


@dataclass
class Background:
    """A process started by this test, stopped (and its log kept) at the end."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def check(self) -> None:
        assert self.proc.poll() is None, f"{self.name} exited:\n{self.log.read_text()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # children (mlflow's job consumers)
            os.killpg(self.proc.pid, signal.SIGKILL)


def _start(name: str, args: list[str], log: Path) -> Background:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # mlflow server's job consumers run in sessions of their own and outlive it
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
    return Background(name, proc, log)


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "mlflow"
    root.mkdir()
    port = free_port()
    server = _start(
        "mlflow server",
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host=127.0.0.1",
            f"--port={port}",
            "--workers=1",
            f"--backend-store-uri=sqlite:///{root / 'mlflow.db'}",
            f"--artifacts-destination={root / 'artifacts'}",
            "--serve-artifacts",
        ],
        root / "server.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait("mlflow server up", lambda: server.check() or _get_ok(f"{base}/health"), 120)
        yield base
    finally:
        server.stop()


_NGINX = """
{user}
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream tabops {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://tabops;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # a replica that refuses the connection, or resets it before answering (it is
            # stopping), is skipped: the request goes to the other one
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def _nginx(root: Path, upstreams: list[int]) -> tuple[Background, str]:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    require(binary is not None, "nginx is not installed (apt-get install nginx)")
    assert binary is not None
    root.mkdir()
    port = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstreams)
    # as root, nginx's workers would run as nobody, who cannot write in the test's folder
    user = "user root;" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(_NGINX.format(user=user, root=root, servers=servers, port=port))
    proc = _start(
        "nginx",
        [binary, "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)],
        root / "nginx.log",
    )
    base = f"http://127.0.0.1:{port}"
    return proc, base


def _prometheus(root: Path, targets: list[int]) -> tuple[Background, str]:
    binary = shutil.which("prometheus")
    require(binary is not None, "prometheus is not installed (apt-get install prometheus)")
    assert binary is not None
    root.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "tabops",
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in targets]}],
            }
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = _start(
        "prometheus",
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        root / "prometheus.log",
    )
    return proc, f"http://127.0.0.1:{port}"


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    try:
        body = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5).json()
    except (httpx.TransportError, ValueError):  # starting: refused, or 503 in plain text
        return []
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@dataclass
class Answer:
    status: int | str
    prediction_id: str | None = None
    version: str | None = None
    upstream: str | None = None


@dataclass
class Traffic:
    """Predictions through nginx from a thread, at a bounded concurrency, until stopped."""

    base: str
    concurrency: int = 8
    limit: int = 5000
    """No more requests than this, whatever happens."""
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set() and len(self.answers) < self.limit:
            try:
                response = await client.post("/usecases/iris/predict", json=RECORD)
            except httpx.HTTPError as exc:
                self.answers.append(Answer(type(exc).__name__))
                continue
            upstream = response.headers.get("x-upstream", "").split(",")[-1].strip()
            if response.status_code != 200:
                self.answers.append(Answer(response.status_code, upstream=upstream))
                continue
            body = response.json()
            self.answers.append(Answer(200, body["prediction_id"], body["model_version"], upstream))

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(self.concurrency)))

    def start(self) -> Traffic:
        self._stop.clear()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()

    def wait_for(self, more: int, timeout: float = 120) -> None:
        target = len(self.answers) + more
        _wait(f"{more} more answers", lambda: len(self.answers) >= target, timeout)


def test_two_replicas_behind_nginx(tmp_path: Path, postgres_url: str, mlflow_server: str) -> None:
    base_settings = make_settings(
        tmp_path / "train-var", db={"url": postgres_url}, mlflow={"tracking_uri": mlflow_server}
    )
    first = seed_and_train(base_settings, ["iris"])["iris"]
    engine = create_db_engine(postgres_url)
    second = train_usecase(load_usecase(USECASES, "iris"), engine, Registry(base_settings))
    assert first.promoted and not second.promoted  # the same data: not better, not promoted

    def replica(name: str) -> ServerProcess:
        settings = base_settings.model_copy(update={"var_dir": tmp_path / name})  # own spool
        env = serve_env(
            settings,
            TABOPS_MLFLOW__TRACKING_URI=mlflow_server,
            TABOPS_API__USECASES='["iris"]',
            TABOPS_LIFECYCLE__POLL_INTERVAL_S=str(POLL_S),
            TABOPS_METRICS__REFRESH_INTERVAL_S="0.5",
            TABOPS_MONITOR__ENABLED="false",
        )
        return ServerProcess(env, tmp_path / f"{name}.log", workers=2)

    a, b = replica("replica-a"), replica("replica-b")
    started: list[Background] = []
    try:
        a.start(), b.start()
        upstream = {f"127.0.0.1:{a.port}": "a", f"127.0.0.1:{b.port}": "b"}
        nginx, lb = _nginx(tmp_path / "nginx", [a.port, b.port])
        prometheus, prom = _prometheus(tmp_path / "prometheus", [a.port, b.port])
        started += [nginx, prometheus]
        _wait("nginx up", lambda: nginx.check() or _get_ok(f"{lb}/health"), 30)

        # 1. load spread over both replicas; Prometheus sees each one's count exactly
        traffic = Traffic(lb).start()
        traffic.wait_for(400)
        traffic.stop()
        answered = Counter(upstream[x.upstream] for x in traffic.answers if x.status == 200)
        assert set(answered) == {"a", "b"}, answered
        by_instance = {f"127.0.0.1:{a.port}": answered["a"], f"127.0.0.1:{b.port}": answered["b"]}

        def scraped() -> dict[str, float]:
            rows = _query(prom, 'sum by (instance) (tabops_predictions_total{job="tabops"})')
            return {r["metric"]["instance"]: float(r["value"][1]) for r in rows}

        _wait("Prometheus has both replicas' counts", lambda: scraped() == by_instance, 60)
        ups = _query(prom, 'up{job="tabops"}')
        assert sorted(r["value"][1] for r in ups) == ["1", "1"]

        # 2. a promotion through replica a is served by both, within the poll interval
        traffic.start()
        traffic.wait_for(100)
        mark = len(traffic.answers)
        moved = httpx.post(
            f"{a.base}/usecases/iris/models/{second.version}/promote", headers=ADMIN, timeout=60
        )
        assert moved.status_code == 200, moved.text

        # Each worker of each replica follows the alias by itself (the one that handled the
        # promotion at once, the others at their next poll): wait until the last answers of
        # both replicas, spread over their workers by nginx's new connections, are all from
        # the new version, then check that it stays so.
        def switched() -> bool:
            recent = {
                name: [
                    x.version for x in traffic.answers[mark:] if upstream[x.upstream or ""] == name
                ]
                for name in ("a", "b")
            }
            return all(len(v) >= 40 and set(v[-40:]) == {second.version} for v in recent.values())

        # one poll interval, plus the time to load and verify the version under load
        _wait(f"both replicas serve version {second.version}", switched, timeout=POLL_S * 10)
        settled = len(traffic.answers)
        traffic.wait_for(200)
        assert {x.version for x in traffic.answers[settled:]} == {second.version}
        for server in (a, b):
            champion = httpx.get(f"{server.base}/usecases/iris").json()["champion_version"]
            assert champion == second.version

        # 3. replica b stopped with SIGTERM under load: nothing is dropped
        b.stop()
        assert b.proc is not None and b.proc.returncode == 0, b.log_path.read_text()
        stopped = len(traffic.answers) + traffic.concurrency  # those in flight at the exit
        traffic.wait_for(300)
        traffic.stop()
        assert {x.status for x in traffic.answers} == {200}, Counter(
            x.status for x in traffic.answers if x.status != 200
        )
        tail = traffic.answers[stopped:]
        assert {upstream[x.upstream or ""] for x in tail} == {"a"}

        # every answered prediction is in the shared database exactly once, and nothing else
        ids = [x.prediction_id for x in traffic.answers]
        with engine.connect() as conn:
            rows = conn.execute(
                select(predictions.c.id, predictions.c.model_version).where(
                    predictions.c.usecase == "iris"
                )
            ).all()
        assert len(rows) == len(ids) == len(set(ids))
        assert {r.id for r in rows} == set(ids)
        versions = {x.prediction_id: x.version for x in traffic.answers}
        assert all(versions[r.id] == r.model_version for r in rows)
    finally:
        for process in reversed(started):
            process.stop()
        b.stop()
        a.stop()
        engine.dispose()
    for server in (a, b):
        assert "Traceback" not in server.log_path.read_text()


def test_the_rate_limit_holds_across_replicas_through_redis(
    tmp_path: Path, postgres_url: str
) -> None:
    redis_url = os.environ.get("TABOPS_TEST_REDIS_URL", "")
    require(bool(redis_url), "TABOPS_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/15)")
    import redis

    settings = make_settings(tmp_path / "var", db={"url": postgres_url})
    seed_and_train(settings, ["iris"])
    prefix = f"tabops-scale-{uuid.uuid4().hex[:8]}"
    allowed = 12

    def replica(name: str) -> ServerProcess:
        env = serve_env(
            settings,
            TABOPS_API__USECASES='["iris"]',
            TABOPS_API__RATE_LIMIT=f"{allowed}/minute",
            TABOPS_REDIS_URL=redis_url,
            TABOPS_REDIS_PREFIX=prefix,
            TABOPS_AUDIT__SPOOL_DIR=str(tmp_path / f"spool-{name}"),
            TABOPS_MONITOR__ENABLED="false",
        )
        return ServerProcess(env, tmp_path / f"{name}.log", workers=2)

    a, b = replica("replica-a"), replica("replica-b")
    nginx: Background | None = None
    try:
        a.start(), b.start()
        names = {f"127.0.0.1:{a.port}": "a", f"127.0.0.1:{b.port}": "b"}
        nginx, lb = _nginx(tmp_path / "nginx", [a.port, b.port])
        _wait("nginx up", lambda: nginx.check() or _get_ok(f"{lb}/health"), 30)

        def send(base: str) -> httpx.Response:
            # a new connection each time: nginx and each replica's workers take turns
            return httpx.post(f"{base}/usecases/iris/predict", json=RECORD, headers=ADMIN)

        within = [send(lb) for _ in range(allowed)]
        assert [r.status_code for r in within] == [200] * allowed
        served_by = {names[r.headers["x-upstream"].split(",")[-1].strip()] for r in within}
        assert served_by == {"a", "b"}
        # the key's window is spent on every replica, through nginx and directly alike
        for over in (send(lb), send(lb), send(a.base), send(b.base)):
            assert over.status_code == 429, over.text
            assert over.json()["error"]["code"] == "rate_limited"
            assert int(over.headers["retry-after"]) >= 1
        # another caller (no key: counted by its address) has a window of its own
        assert httpx.post(f"{a.base}/usecases/iris/predict", json=RECORD).status_code == 200
    finally:
        if nginx is not None:
            nginx.stop()
        b.stop()
        a.stop()
        server = redis.Redis.from_url(redis_url)
        keys = list(server.scan_iter(f"{prefix}*"))
        if keys:
            server.delete(*keys)
        server.close()
    for process in (a, b):
        assert "Traceback" not in process.log_path.read_text()
