"""The audit guarantee under load and faults, against real server processes: a 200 means
recorded. On SQLite and PostgreSQL; the database-outage test stops the real PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from tabops.config import Settings
from tabops.lifecycle.train import TrainingOutcome
from tabops.store.schema import predictions
from tests.conftest import empty_audit_engine
from tests.serverproc import Load, ServerProcess, serve_env

pytestmark = pytest.mark.slow
Trained = tuple[Settings, dict[str, TrainingOutcome]]
RECORD = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}


def _env(trained: Trained, db_url: str, spool: Path) -> dict[str, str]:
    settings, _ = trained
    return serve_env(
        settings,
        TABOPS_DB__URL=db_url,
        TABOPS_AUDIT__SPOOL_DIR=str(spool),
        TABOPS_AUDIT__REPLAY_INTERVAL_S="0.5",
        TABOPS_API__USECASES='["iris"]',
    )


def _recorded(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(predictions.c.id)).scalars())


async def _burst(base: str, n: int, concurrency: int) -> list[tuple[int, str | None]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> tuple[int, str | None]:
            async with gate:
                response = await client.post("/usecases/iris/predict", json=RECORD)
                body = response.json()
                return response.status_code, body.get("prediction_id")

        return await asyncio.gather(*(one() for _ in range(n)))


def test_every_200_is_a_row_under_2000_concurrent_predictions(
    trained: Trained, audit_engine: Engine, db_url: str, tmp_path: Path
) -> None:
    with ServerProcess(_env(trained, db_url, tmp_path / "spool"), tmp_path / "serve.log") as server:
        answers = asyncio.run(_burst(server.base, 2000, 500))
    ok = [pid for status, pid in answers if status == 200]
    assert len(ok) == 2000, {s for s, _ in answers}
    assert sorted(_recorded(audit_engine)) == sorted(ok)


def test_kill_9_mid_load_loses_no_acknowledged_prediction(
    trained: Trained, audit_engine: Engine, db_url: str, tmp_path: Path
) -> None:
    env = _env(trained, db_url, tmp_path / "spool")
    server = ServerProcess(env, tmp_path / "serve.log").start()
    try:
        with Load(server.base, concurrency=32) as load:
            load.wait_for(300)
            server.kill()
            acknowledged = list(load.ok)
    finally:
        server.stop()
    assert acknowledged
    # what the database lacks must be in the spool, and a restart replays it
    with ServerProcess(env, tmp_path / "serve2.log"):
        deadline = time.monotonic() + 30
        while not set(acknowledged) <= set(_recorded(audit_engine)):
            assert time.monotonic() < deadline, "acknowledged predictions missing after restart"
            time.sleep(0.2)
    recorded = _recorded(audit_engine)
    assert len(recorded) == len(set(recorded))


def _cluster(action: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            version,
            "main",
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        timeout=120,
    )
    if action == "start":
        subprocess.run(["pg_isready", "-h", "127.0.0.1", "-t", "60"], check=True, timeout=90)


@pytest.mark.integration
def test_postgres_outage_spools_and_replays_exactly_once(
    trained: Trained, postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL only: SQLite has no server to stop."""
    audit_engine = empty_audit_engine(postgres_url)
    db_url = postgres_url
    spool = tmp_path / "spool"
    with ServerProcess(_env(trained, db_url, spool), tmp_path / "serve.log") as server:
        with Load(server.base, concurrency=8) as load:
            load.wait_for(100)
            try:
                _cluster("stop")
                during = len(load.ok)
                load.wait_for(during + 300)  # the service keeps answering 200
                sizes = [sum(p.stat().st_size for p in spool.glob("spool-*.jsonl"))]
                load.wait_for(len(load.ok) + 100)
                sizes.append(sum(p.stat().st_size for p in spool.glob("spool-*.jsonl")))
                assert 0 < sizes[0] < sizes[1], sizes  # the spool grows while the database is down
            finally:
                _cluster("start")
            load.wait_for(len(load.ok) + 100)
        acknowledged = load.ok
        deadline = time.monotonic() + 60
        while len(_recorded(audit_engine)) < len(acknowledged):
            assert time.monotonic() < deadline, "spool not replayed within 60 s"
            time.sleep(0.5)
    recorded = _recorded(audit_engine)
    assert sorted(recorded) == sorted(acknowledged)  # every served prediction, exactly once
    with audit_engine.connect() as conn:
        assert conn.execute(
            select(func.count(func.distinct(predictions.c.id)))
        ).scalar_one() == len(acknowledged)
