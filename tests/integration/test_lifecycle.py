"""Training jobs, the promotion gate, swaps and rollbacks, on SQLite and PostgreSQL, and
with real server processes under load."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy import select

from tabops.api.app import create_app
from tabops.config import Settings
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import train_usecase
from tabops.spec.files import load_usecase
from tabops.store.db import create_db_engine
from tabops.store.jobs import create_job, fail_orphaned_jobs, get_job, renew_jobs, update_job
from tabops.store.migrate import upgrade
from tabops.store.schema import predictions
from tests.conftest import ADMIN, USECASES, make_settings, seed_and_train
from tests.serverproc import Load, ServerProcess, serve_env

pytestmark = pytest.mark.slow


def _settings(tmp_path: Path, db_url: str, **lifecycle: Any) -> Settings:
    settings = make_settings(
        tmp_path / "var",
        db={"url": db_url},
        api={"usecases": ["iris"]},
        lifecycle={"poll_interval_s": 0.5, **lifecycle},
    )
    seed_and_train(settings, ["iris"])
    return settings


def _wait_job(
    client: TestClient | httpx.Client, job_id: str, timeout: float = 120
) -> tuple[dict[str, Any], list[int]]:
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}", headers=ADMIN).json()
        seen.append(job["percent"])
        if job["state"] in ("succeeded", "failed"):
            return job, seen
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def _wait_serving(client: TestClient | httpx.Client, version: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/usecases/iris").json()["champion_version"] != version:
        assert time.monotonic() < deadline, f"version {version} not served"
        time.sleep(0.1)


def test_train_job_gate_conflict_and_failure(tmp_path: Path, db_url: str) -> None:
    settings = _settings(tmp_path, db_url)
    with TestClient(create_app(settings)) as client:
        started = client.post("/usecases/iris/train", json={}, headers=ADMIN)
        assert started.status_code == 202
        job = started.json()
        assert job["state"] == "queued" and job["usecase"] == "iris"
        second = client.post("/usecases/iris/train", json={"force": True}, headers=ADMIN)
        assert second.status_code == 409
        assert {"field": "job_id", "reason": job["id"]} in second.json()["error"]["details"]

        done, percents = _wait_job(client, job["id"])
        assert done["state"] == "succeeded", done
        assert percents == sorted(percents) and percents[-1] == 100
        assert done["version"] == "2" and done["promoted"] is False
        assert "does not beat champion v1" in done["reason"]
        assert done["champion_version"] == "1" and done["metrics"]["accuracy"] > 0.9
        assert done["n_rows"] == 150 and len(done["data_sha256"]) == 64
        assert client.get("/usecases/iris").json()["champion_version"] == "1"

        forced = client.post("/usecases/iris/train", json={"force": True}, headers=ADMIN).json()
        done, _ = _wait_job(client, forced["id"])
        assert done["promoted"] is True and done["reason"].startswith("promotion forced; ")
        _wait_serving(client, "3")

        # an invalid value is refused before a job starts
        bad = {"model": {"family": "logistic_regression", "params": {"C": -1.0}}}
        refused = client.post("/usecases/iris/train", json=bad, headers=ADMIN)
        assert refused.status_code == 422 and "model.params.C" in refused.text
        # a job that fails (valid values that do not go together) keeps its error and
        # leaves the champion alone
        clash = {"solver": "newton-cg", "dual": True}
        failing = client.post(
            "/usecases/iris/train", json={"model": {"params": clash}}, headers=ADMIN
        ).json()
        done, _ = _wait_job(client, failing["id"])
        assert done["state"] == "failed" and "dual" in done["error"]
        assert client.get("/usecases/iris").json()["champion_version"] == "3"

        unknown = client.post(
            "/usecases/iris/train", json={"model": {"params": {"nope": 1}}}, headers=ADMIN
        )
        assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_request"
        # newest first; on PostgreSQL the session's database also holds other tests' jobs
        ours = {job["id"], forced["id"], failing["id"]}
        listed = client.get("/jobs", params={"usecase": "iris"}, headers=ADMIN).json()
        assert [(j["id"], j["state"]) for j in listed if j["id"] in ours] == [
            (failing["id"], "failed"),
            (forced["id"], "succeeded"),
            (job["id"], "succeeded"),
        ]

        versions = client.get("/usecases/iris/models", headers=ADMIN).json()
        assert [(v["version"], v["aliases"]) for v in versions] == [
            ("3", ["champion"]),
            ("2", []),
            ("1", []),
        ]
        rollback = client.post("/usecases/iris/models/1/promote", headers=ADMIN).json()
        assert rollback == {"usecase": "iris", "version": "1", "previous": "3", "serving": "1"}


def test_jobs_outlive_the_api_and_orphans_fail(tmp_path: Path, db_url: str) -> None:
    settings = _settings(tmp_path, db_url)
    engine = create_db_engine(db_url)
    upgrade(engine)
    dead_owner = f"{socket.gethostname()}:{2**22 + 12345}"  # above any real pid
    create_job(
        engine,
        "orphan-1",
        "iris",
        params=None,
        force=False,
        requested_by="t",
        trigger="api",
        owner=dead_owner,
    )
    update_job(
        engine, "orphan-1", state="running", worker_pid=2**22 + 12346, started_at=datetime.now(UTC)
    )
    with TestClient(create_app(settings)) as client:
        job = client.get("/jobs/orphan-1", headers=ADMIN).json()
        assert job["state"] == "failed" and "died" in job["error"]
        # the use case is free again
        assert client.post("/usecases/iris/train", json={}, headers=ADMIN).status_code == 202
    engine.dispose()


def test_only_jobs_whose_holder_is_gone_are_failed(tmp_path: Path, db_url: str) -> None:
    """Jobs held by live processes (another worker here, another replica elsewhere) are
    left alone; a job whose lease ran out, or whose holder on this host died, fails."""
    engine = create_db_engine(db_url)
    upgrade(engine)
    here = socket.gethostname()
    jobs = {
        "queued-by-another-worker": (f"{here}:{os.getpid()}", 0),
        "running-on-another-replica": ("other-host:1", 0),
        "replica-gone-quiet": ("other-host:2", 600),
        "holder-died-here": (f"{here}:{2**22 + 1}", 0),
    }
    for n, (job_id, (owner, age_s)) in enumerate(jobs.items()):
        create_job(
            engine,
            job_id,
            f"usecase{n}",
            params=None,
            force=False,
            requested_by="t",
            trigger="api",
            owner=owner,
        )
        update_job(engine, job_id, heartbeat_at=datetime.now(UTC) - timedelta(seconds=age_s))
    # the count covers the whole database (on PostgreSQL, the session's: other tests' jobs
    # whose process is gone count too); which of this test's jobs failed is checked below
    assert fail_orphaned_jobs(engine, lease_s=60) >= 2
    states = {job_id: get_job(engine, job_id)["state"] for job_id in jobs}
    assert states == {
        "queued-by-another-worker": "queued",
        "running-on-another-replica": "queued",
        "replica-gone-quiet": "failed",
        "holder-died-here": "failed",
    }
    before = get_job(engine, "running-on-another-replica")["heartbeat_at"]
    renew_jobs(engine, ["running-on-another-replica", "replica-gone-quiet"])
    assert get_job(engine, "running-on-another-replica")["heartbeat_at"] > before
    assert get_job(engine, "replica-gone-quiet")["state"] == "failed"  # not revived
    engine.dispose()


def _tamper(settings: Settings, version: str) -> None:
    uri = Registry(settings).client.get_model_version_download_uri("iris", version)
    model = next(Path(uri.removeprefix("file://")).rglob("model.skops"))
    model.write_bytes(model.read_bytes() + b"tampered")


def test_tampered_artifact_is_refused_and_old_version_serves(tmp_path: Path) -> None:
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    spec = load_usecase(USECASES, "iris")
    engine = create_db_engine(settings.database_url_resolved)
    second = train_usecase(spec, engine, Registry(settings))  # registered, not promoted
    _tamper(settings, second.version)
    with TestClient(create_app(settings)) as client:
        refused = client.post(f"/usecases/iris/models/{second.version}/promote", headers=ADMIN)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "model_integrity"
        # moved by hand, as in the MLflow UI: the server refuses it and keeps serving v1
        MlflowClient(settings.tracking_uri).set_registered_model_alias(
            "iris", "champion", second.version
        )
        deadline = time.monotonic() + 15
        while "refused" not in (client.get("/usecases/iris").json().get("error") or ""):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        detail = client.get("/usecases/iris").json()
        assert detail["champion_version"] == "1" and "sha256" in detail["error"]
        assert (
            client.post(
                "/usecases/iris/predict",
                json={"sepal_length": 5, "sepal_width": 3, "petal_length": 1, "petal_width": 0.2},
            ).json()["model_version"]
            == "1"
        )
    engine.dispose()


def test_ten_cycles_and_a_rollback_under_load(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings = _settings(tmp_path, db_url)
    env = serve_env(
        settings, TABOPS_LIFECYCLE__POLL_INTERVAL_S="0.5", TABOPS_API__USECASES='["iris"]'
    )
    with (
        ServerProcess(env, tmp_path / "serve.log") as server,
        httpx.Client(base_url=server.base, timeout=30) as client,
    ):
        with Load(server.base, concurrency=8) as load:
            load.wait_for(50)
            for _ in range(10):
                job = client.post(
                    "/usecases/iris/train", json={"force": True}, headers=ADMIN
                ).json()
                done, _ = _wait_job(client, job["id"])
                assert done["promoted"], done
                _wait_serving(client, done["version"])
                load.wait_for(len(load.ok) + 20)
            rollback = client.post("/usecases/iris/models/1/promote", headers=ADMIN)
            assert rollback.status_code == 200 and rollback.json()["serving"] == "1"
            # the 8 calls in flight at the rollback may have started on v11; of the next 60
            # answers, the last 20 started well after it and must all be v1's
            load.wait_for(len(load.ok) + 60)
            late = load.ok[-20:]
        assert load.failed == []  # zero failed requests through 10 swaps and a rollback
        served = set(load.versions.values())
        assert {"1", "11"} <= served and len(served) >= 6
        assert {load.versions[pid] for pid in late} == {"1"}  # rolled back, under load
    engine = create_db_engine(db_url)
    with engine.connect() as conn:
        recorded = dict(conn.execute(select(predictions.c.id, predictions.c.model_version)).all())
    engine.dispose()
    assert {pid: recorded.get(pid) for pid in load.versions} == load.versions


def test_swaps_and_a_rollback_under_load_with_two_workers_on_postgresql(
    tmp_path: Path, own_postgres_url: str
) -> None:
    """`tabops serve --workers 2`, audit on PostgreSQL: the worker that handles a promotion
    swaps at once, the other at its next poll; under load, through two promotions and a
    rollback, no request fails and every answer is audited with the version that gave it.
    (Its own database: the shadow test counts iris predictions of version 2.)"""
    postgres_url = own_postgres_url
    settings = _settings(tmp_path, postgres_url)
    spec = load_usecase(USECASES, "iris")
    engine = create_db_engine(postgres_url)
    later = [train_usecase(spec, engine, Registry(settings)).version for _ in range(2)]
    env = serve_env(
        settings, TABOPS_LIFECYCLE__POLL_INTERVAL_S="0.5", TABOPS_API__USECASES='["iris"]'
    )
    with (
        ServerProcess(env, tmp_path / "serve.log", workers=2) as server,
        httpx.Client(base_url=server.base, timeout=30) as client,
        Load(server.base, concurrency=8) as load,
    ):
        load.wait_for(50)
        for version in [*later, "1"]:
            moved = client.post(f"/usecases/iris/models/{version}/promote", headers=ADMIN)
            assert moved.status_code == 200 and moved.json()["serving"] == version, moved.text
            # the load's 8 connections are spread over both workers by the kernel; the calls
            # in flight at the promotion, and the other worker until its next poll, may
            # answer with the old version; then 40 answers in a row are the new one
            mark = len(load.ok)
            deadline = time.monotonic() + 30
            while True:
                recent = load.ok[mark:][-40:]
                if len(recent) == 40 and {load.versions[p] for p in recent} == {version}:
                    break
                assert time.monotonic() < deadline, f"version {version} not served by both"
                time.sleep(0.1)
        assert load.failed == []
    served = set(load.versions.values())
    assert served == {"1", *later}
    with engine.connect() as conn:
        recorded = dict(conn.execute(select(predictions.c.id, predictions.c.model_version)).all())
    engine.dispose()
    assert {pid: recorded.get(pid) for pid in load.versions} == load.versions


def test_two_servers_converge_on_a_moved_alias(tmp_path: Path, postgres_url: str) -> None:
    settings = _settings(tmp_path, postgres_url)
    spec = load_usecase(USECASES, "iris")
    engine = create_db_engine(postgres_url)
    second = train_usecase(spec, engine, Registry(settings))
    engine.dispose()
    env = serve_env(
        settings, TABOPS_LIFECYCLE__POLL_INTERVAL_S="1", TABOPS_API__USECASES='["iris"]'
    )
    with ServerProcess(env, tmp_path / "a.log") as a, ServerProcess(env, tmp_path / "b.log") as b:
        assert httpx.get(f"{b.base}/usecases/iris").json()["champion_version"] == "1"
        moved = httpx.post(
            f"{a.base}/usecases/iris/models/{second.version}/promote", headers=ADMIN, timeout=30
        )
        assert moved.status_code == 200 and moved.json()["serving"] == second.version
        with httpx.Client(base_url=b.base, timeout=10) as client:
            # b follows by polling (every second), not told by a: bounded by the deadline,
            # no wall-clock assertion on a shared machine
            _wait_serving(client, second.version, timeout=30)


def test_shadow_challenger_is_compared_on_live_requests(tmp_path: Path, db_url: str) -> None:
    settings = _settings(tmp_path, db_url)
    spec = load_usecase(USECASES, "iris")
    forest = spec.model_copy(
        update={
            "model": spec.model.model_copy(
                update={"family": "random_forest", "params": {"n_estimators": 20}}
            )
        }
    )
    engine = create_db_engine(db_url)
    challenger = train_usecase(forest, engine, Registry(settings))
    assert not challenger.promoted
    with TestClient(create_app(settings)) as client:
        promoted = client.post(
            f"/usecases/iris/models/{challenger.version}/promote",
            params={"alias": "challenger"},
            headers=ADMIN,
        ).json()
        assert promoted["serving"] == challenger.version
        flowers = [
            {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
            {"sepal_length": 6.0, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.6},
            {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5},
        ]
        answers = [client.post("/usecases/iris/predict", json=f).json() for f in flowers * 4]
        assert {a["model_version"] for a in answers} == {"1"}  # the champion answers
        deadline = time.monotonic() + 10
        while client.get("/usecases/iris/models/compare", headers=ADMIN).json()["pairs"] < 12:
            assert time.monotonic() < deadline, "shadow predictions not recorded"
            time.sleep(0.1)
        truth = ["setosa", "virginica", "virginica"] * 4
        for answer, actual in zip(answers, truth, strict=True):
            sent = client.post(
                "/usecases/iris/feedback",
                json={"prediction_id": answer["prediction_id"], "actual": actual},
            )
            assert sent.status_code == 201, sent.text
        report = client.get("/usecases/iris/models/compare", headers=ADMIN).json()
        assert report["champion_versions"] == ["1"] and report["challenger_versions"] == [
            challenger.version
        ]
        assert report["labelled"] == 12
        expected = sum(a["label"] == t for a, t in zip(answers, truth, strict=True)) / 12
        assert report["champion_accuracy"] == pytest.approx(expected)
        assert (
            0 <= report["agreement"] <= 1
            and report["max_abs_score_diff"] >= report["mean_abs_score_diff"]
        )
        shadows = client.get(
            "/usecases/iris/predictions",
            params={"model_version": challenger.version},
            headers=ADMIN,
        ).json()
        assert len(shadows["items"]) == 12 and all(p["shadow"] for p in shadows["items"])
        assert client.delete("/usecases/iris/models/challenger", headers=ADMIN).status_code == 204
        # no challenger left to score in the shadow: the condition itself, not a sleep
        assert client.app.state.services.models.challenger("iris") is None  # type: ignore[attr-defined]
        assert client.post("/usecases/iris/predict", json=flowers[0]).status_code == 200
        assert client.get("/usecases/iris/models/compare", headers=ADMIN).json()["pairs"] == 12
    engine.dispose()
