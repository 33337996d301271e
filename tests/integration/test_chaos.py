"""Chaos against real server processes on a PostgreSQL cluster of the test's own
(``tests/pgcluster.py``: initdb and pg_ctl on a free port; the machine's shared server is
never touched): the database stopped, killed, frozen; servers killed with SIGKILL and
started while the database is down.

Every test counts as the reliability review does: **lost** = answered 200 and no audit
row after recovery; **duplicates** = an id twice in the answers or the tables; and the
status mix of every request that was not a 200.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from tabops.config import Settings
from tabops.lifecycle.train import TrainingOutcome
from tabops.store.db import create_db_engine
from tabops.store.keys import create_key
from tabops.store.migrate import upgrade
from tabops.store.schema import predictions
from tests.conftest import require
from tests.pgcluster import PgCluster, pg_binaries
from tests.serverproc import Load, ServerProcess, serve_env

pytestmark = pytest.mark.slow
Trained = tuple[Settings, dict[str, TrainingOutcome]]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PgCluster]:
    require(pg_binaries() is not None, "PostgreSQL (initdb, pg_ctl) is not installed")
    pg = PgCluster().init()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy(keep_log=tmp_path / "postgres.log")


@pytest.fixture
def engine(cluster: PgCluster) -> Iterator[Engine]:
    engine = create_db_engine(cluster.url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _env(trained: Trained, cluster: PgCluster, spool: Path, **extra: str) -> dict[str, str]:
    settings, _ = trained
    return serve_env(
        settings,
        TABOPS_DB__URL=cluster.url,
        TABOPS_AUDIT__SPOOL_DIR=str(spool),
        TABOPS_AUDIT__REPLAY_INTERVAL_S="0.5",
        TABOPS_API__USECASES='["iris"]',
        TABOPS_DB__CONNECT_TIMEOUT_S="2",
        TABOPS_DB__STATEMENT_TIMEOUT_MS="2000",
        TABOPS_AUTH__CACHE_S="1",  # so that an outage outlasts the key cache
        TABOPS_MONITOR__ENABLED="false",
        **extra,
    )


def _recorded(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(predictions.c.id)).scalars())


def _spooled(spool: Path) -> int:
    return sum(p.stat().st_size for p in spool.glob("spool-*.jsonl"))


def _count(acknowledged: list[str], engine: Engine, deadline_s: float = 90) -> dict[str, int]:
    """Wait for the replay, then count like the review: lost, duplicates (call it once the
    load has stopped: ``acknowledged`` must not grow meanwhile)."""
    deadline = time.monotonic() + deadline_s
    wanted = set(acknowledged)
    while not wanted <= set(_recorded(engine)):
        assert time.monotonic() < deadline, "acknowledged predictions missing after recovery"
        time.sleep(0.5)
    with engine.connect() as conn:  # one snapshot: ids, and rows against distinct ids
        recorded = list(conn.execute(select(predictions.c.id)).scalars())
        rows, distinct = conn.execute(
            select(func.count(), func.count(func.distinct(predictions.c.id)))
        ).one()
    return {
        "lost": len(wanted - set(recorded)),
        "duplicate answers": len(acknowledged) - len(wanted),
        "duplicate rows": rows - distinct,
    }


NONE_LOST = {"lost": 0, "duplicate answers": 0, "duplicate rows": 0}


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_stopped_serves_from_the_spool_with_database_keys(
    trained: Trained, cluster: PgCluster, engine: Engine, tmp_path: Path, mode: str
) -> None:
    """``pg_ctl stop`` for longer than the key cache: a key from the key table keeps
    working (last known good), every request is answered 200 from the spool, /ready says
    503 without hanging, and the replay records everything exactly once."""
    key = create_key(engine, "chaos-predict", "predict")
    spool = tmp_path / "spool"
    env = _env(trained, cluster, spool, TABOPS_AUTH__ANONYMOUS_PREDICT="false")
    with ServerProcess(env, tmp_path / "serve.log") as server:
        with Load(server.base, 8, headers={"Authorization": f"Bearer {key}"}) as load:
            load.wait_for(100)
            cluster.stop(mode)
            during = len(load.ok)
            load.wait_for(during + 200)
            first = _spooled(spool)
            # past the 1 s key cache: the key is served from its last known good answer
            load.wait_for(len(load.ok) + 400)
            assert 0 < first < _spooled(spool)  # the spool grows while the database is down
            ready = httpx.get(f"{server.base}/ready", timeout=10)
            assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
            cluster.start()
            load.wait_for(len(load.ok) + 200)
        assert Counter(load.failed) == Counter()  # status mix: nothing but 200s
        assert _count(load.ok, engine) == NONE_LOST
        assert httpx.get(f"{server.base}/ready", timeout=10).status_code == 200


def test_frozen_database_falls_back_to_the_spool(
    trained: Trained, cluster: PgCluster, engine: Engine, tmp_path: Path
) -> None:
    """Every process of the cluster stopped with SIGSTOP (a hung host, a black-holed
    network): the server's own deadlines end the waits, predictions are answered from the
    spool while the database is frozen, and /ready answers 503 meanwhile."""
    spool = tmp_path / "spool"
    with ServerProcess(_env(trained, cluster, spool), tmp_path / "serve.log") as server:
        with Load(server.base, 8) as load:
            load.wait_for(100)
            frozen = cluster.freeze()
            try:
                during = len(load.ok)
                load.wait_for(during + 300)  # answered while nothing of PostgreSQL runs
                assert _spooled(spool) > 0
                # answered at all while the cluster is frozen: the probe did not hang on it
                ready = httpx.get(f"{server.base}/ready", timeout=10)
                assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
            finally:
                cluster.thaw(frozen)
            load.wait_for(len(load.ok) + 100)
        assert Counter(load.failed) == Counter()
        assert _count(load.ok, engine) == NONE_LOST


def test_kill_9_while_rows_are_only_in_the_spool_then_replay(
    trained: Trained, cluster: PgCluster, engine: Engine, tmp_path: Path
) -> None:
    """SIGKILL the server while the database is down, so what it acknowledged is in the
    spool only (checked), then start the database and a new server: it replays all of it."""
    spool = tmp_path / "spool"
    env = _env(trained, cluster, spool)
    server = ServerProcess(env, tmp_path / "serve.log").start()
    try:
        with Load(server.base, concurrency=16) as load:
            load.wait_for(50)
            cluster.stop("immediate")
            before_kill = len(load.ok)
            load.wait_for(before_kill + 300)
            server.kill()
        acknowledged = list(load.ok)
    finally:
        server.stop()
    assert len(acknowledged) >= before_kill + 300
    assert _spooled(spool) > 0
    cluster.start()
    missing = set(acknowledged) - set(_recorded(engine))
    assert missing  # the acknowledged rows of the outage are in the spool only
    with ServerProcess(env, tmp_path / "serve2.log"):
        assert _count(acknowledged, engine) == NONE_LOST
    assert not list(spool.glob("spool-*.jsonl"))
    statuses = Counter(s for s in load.failed if isinstance(s, int))
    assert statuses == Counter()  # only connection errors, from the kill itself


def test_worker_killed_during_an_outage_is_replaced_and_a_new_server_starts(
    trained: Trained, cluster: PgCluster, engine: Engine, tmp_path: Path
) -> None:
    """Two workers; the database stopped; one worker SIGKILLed: its replacement starts
    without the database, the replica keeps serving. A new server also starts while the
    database is down, and serves from the spool. Nothing acknowledged is lost."""
    spool = tmp_path / "spool"
    env = _env(trained, cluster, spool)
    with ServerProcess(env, tmp_path / "serve.log", workers=2) as server:
        assert server.proc is not None
        with Load(server.base, 8) as load:
            load.wait_for(100)
            cluster.stop("fast")
            load.wait_for(len(load.ok) + 100)
            workers = server.workers_pids()
            assert len(workers) == 2
            os.kill(workers[0], signal.SIGKILL)
            load.wait_for(len(load.ok) + 300)
            # the replacement is up: still two workers, one of them new
            _wait(lambda: len(set(server.workers_pids()) - {workers[0]}) == 2)
            assert server.proc.poll() is None  # the arbiter did not give up
            load.wait_for(len(load.ok) + 300)
            # a new server started while the database is down (and the machine is busy
            # with the load: its start-up may take long)
            fresh = ServerProcess(env, tmp_path / "fresh.log", database_up=False)
            with fresh.start(timeout=300):
                answer = httpx.post(
                    f"{fresh.base}/usecases/iris/predict",
                    json={
                        "sepal_length": 5.9,
                        "sepal_width": 3.0,
                        "petal_length": 5.1,
                        "petal_width": 1.8,
                    },  # fmt: skip
                    timeout=30,
                )
                assert answer.status_code == 200
                cluster.start()
                load.wait_for(len(load.ok) + 100)
        acknowledged = [*load.ok, answer.json()["prediction_id"]]
        assert _count(acknowledged, engine) == NONE_LOST
    # only the killed worker's own connections may have failed, never with a status
    assert Counter(s for s in load.failed if isinstance(s, int)) == Counter()


def _wait(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)
