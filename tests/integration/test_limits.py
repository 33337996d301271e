"""Limits at the edge: body size (413 before the body is read), a rate per key (429 with
Retry-After; shared by replicas through Redis), requests in flight (503 with Retry-After),
request time (504), and the drift window a predict key may ask for."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tabops.api.app import create_app
from tabops.config import Settings
from tabops.lifecycle.train import TrainingOutcome
from tests.conftest import ADMIN, require
from tests.serverproc import RECORD, ServerProcess, serve_env

pytestmark = pytest.mark.slow
Trained = tuple[Settings, dict[str, TrainingOutcome]]


def _settings(trained: Trained, tmp_path: Path, **api: Any) -> Settings:
    base, _ = trained
    return base.model_copy(
        update={
            "db": base.db.model_copy(update={"url": f"sqlite:///{tmp_path / 'db.sqlite'}"}),
            "audit": base.audit.model_copy(update={"spool_dir": tmp_path / "spool"}),
            "api": base.api.model_copy(update={"usecases": ["iris"], **api}),
        }
    )


@pytest.fixture
def client(trained: Trained, tmp_path: Path) -> Iterator[TestClient]:
    settings = _settings(trained, tmp_path, max_body_bytes=4096, rate_limit="5/minute")
    with TestClient(create_app(settings)) as c:
        yield c


def test_a_body_over_the_limit_is_refused_before_it_is_read(client: TestClient) -> None:
    big = b'{"records": [' + b" " * 5000 + b"]}"
    declared = client.post("/usecases/iris/predict", content=big, headers=ADMIN)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"records": ['
        for _ in range(10):
            yield b" " * 1000
        yield b"]}"

    streamed = client.post("/usecases/iris/predict", content=chunks(), headers=ADMIN)
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "body_too_large"
    assert client.post("/usecases/iris/predict", json=RECORD, headers=ADMIN).status_code == 200


def test_rate_limit_per_key_with_retry_after(client: TestClient) -> None:
    statuses = [
        client.post("/usecases/iris/predict", json=RECORD, headers=ADMIN).status_code
        for _ in range(5)
    ]
    assert statuses == [200] * 5
    refused = client.post("/usecases/iris/predict", json=RECORD, headers=ADMIN)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    # another caller (no key: counted by address) has its own window; probes are exempt
    assert client.post("/usecases/iris/predict", json=RECORD).status_code == 200
    assert client.get("/ready").status_code == 200
    assert client.get("/health").status_code == 200


def test_rate_limit_is_shared_by_replicas_through_redis(trained: Trained, tmp_path: Path) -> None:
    url = os.environ.get("TABOPS_TEST_REDIS_URL", "")
    require(bool(url), "TABOPS_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/15)")
    import redis

    prefix = f"tabops-test-{uuid.uuid4().hex[:8]}"
    settings = _settings(trained, tmp_path, rate_limit="6/minute").model_copy(
        update={"redis_url": url, "redis_prefix": prefix}
    )
    try:
        with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
            statuses = [
                c.post("/usecases/iris/predict", json=RECORD, headers=ADMIN).status_code
                for c in (one, two, one, two, one, two, one, two)
            ]
        assert statuses == [200] * 6 + [429] * 2  # one window across both "replicas"
    finally:
        server = redis.Redis.from_url(url)
        keys = list(server.scan_iter(f"{prefix}*"))
        if keys:
            server.delete(*keys)
        server.close()


def test_drift_window_over_the_bound_needs_an_admin_key(trained: Trained, tmp_path: Path) -> None:
    settings = _settings(trained, tmp_path, max_drift_window=100, rate_limit="")
    with TestClient(create_app(settings)) as c:
        refused = c.get("/usecases/iris/drift", params={"window": 5000})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert c.get("/usecases/iris/drift", params={"window": 100}).status_code == 200
        allowed = c.get("/usecases/iris/drift", params={"window": 5000}, headers=ADMIN)
        assert allowed.status_code == 200


def _partial_request(port: int) -> socket.socket:
    """A predict call whose body never completes: it stays in flight in the server."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(
        b"POST /usecases/iris/predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed without an answer"
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), headers


def test_in_flight_bound_sheds_with_503_and_a_stuck_request_gets_504(
    trained: Trained, tmp_path: Path
) -> None:
    settings, _ = trained
    env = serve_env(
        settings,
        TABOPS_DB__URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
        TABOPS_AUDIT__SPOOL_DIR=str(tmp_path / "spool"),
        TABOPS_API__USECASES='["iris"]',
        TABOPS_API__MAX_IN_FLIGHT="1",
        TABOPS_API__REQUEST_TIMEOUT_S="3",
    )
    import httpx

    with ServerProcess(env, tmp_path / "serve.log") as server:
        stuck = _partial_request(server.port)
        try:
            with httpx.Client(base_url=server.base, timeout=30) as http:
                # the stuck call holds the only slot: the next one is shed at once
                shed = http.post("/usecases/iris/predict", json=RECORD)
                while shed.status_code == 200:  # until the stuck call is in the app
                    shed = http.post("/usecases/iris/predict", json=RECORD)
                assert shed.status_code == 503 and shed.json()["error"]["code"] == "overloaded"
                assert int(shed.headers["retry-after"]) >= 1
                assert http.get("/ready").status_code == 200  # probes are never shed
                status, _ = _response(stuck)  # the request timeout ends it
                assert status == 504
                assert http.post("/usecases/iris/predict", json=RECORD).status_code == 200
        finally:
            stuck.close()
