"""Prometheus metrics: what each recording call publishes, on a registry of the test's own."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from tabops.api.metrics import UNMATCHED_ROUTE, install_metrics
from tabops.monitoring.drift import compute_drift
from tabops.scoring.base import Scores
from tabops.spec.files import parse_spec
from tabops.store.audit import AuditStats
from tabops.telemetry.metrics import DRIFT_STATISTICS, Metrics
from tabops.telemetry.multiproc import MULTIPROC_ENV, multiprocess_metrics, reap_dead
from tests.factories import spec_dict, toy_frame

ALLOWED_LABELS = {
    "method",
    "route",
    "status",
    "usecase",
    "model_version",
    "label",
    "scoring_path",
    "outcome",
    "state",
    "feature",
    "statistic",
    "le",
}
"""Every label name a tabops metric may carry: bounded values only, never an id."""


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


def _binary(labels: list[str], positive: list[float]) -> Scores:
    p = np.asarray(positive)
    return Scores(labels, np.column_stack([1 - p, p]), ("no", "yes"), 0.4)


def _audit(**changes: int) -> AuditStats:
    fields = dict.fromkeys(
        ("queued", "written", "spooled", "replayed", "failures", "spool_bytes", "transactions"), 0
    )
    return AuditStats(**(fields | changes))


def test_requests_are_counted_and_timed_by_route_template(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    route = "/usecases/{name}/predict"
    metrics.observe_request("POST", route, 200, 0.003)
    metrics.observe_request("POST", route, 200, 0.2)
    metrics.observe_request("POST", route, 422, 0.001)
    metrics.observe_request("BREW", route, 405, 0.001)
    labels = {"method": "POST", "route": route, "status": "200"}
    assert registry.get_sample_value("tabops_http_requests_total", labels) == 2
    duration = "tabops_http_request_duration_seconds"
    assert registry.get_sample_value(f"{duration}_count", labels) == 2
    assert registry.get_sample_value(f"{duration}_sum", labels) == pytest.approx(0.203)
    assert registry.get_sample_value(f"{duration}_bucket", labels | {"le": "0.005"}) == 1
    assert registry.get_sample_value(f"{duration}_bucket", labels | {"le": "0.25"}) == 2
    assert registry.get_sample_value("tabops_http_requests_total", labels | {"status": "422"}) == 1
    other = {"method": "OTHER", "route": route, "status": "405"}
    assert registry.get_sample_value("tabops_http_requests_total", other) == 1


def test_predictions_are_counted_by_label_with_their_scores(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.record_predictions("toy", "3", _binary(["yes"], [0.72]), 1, 0.00004)
    batch = _binary(["no", "yes", "no"], [0.1, 0.95, 0.3])
    metrics.record_predictions("toy", "3", batch, 1, 0.002)

    def count(label: str) -> float | None:
        return registry.get_sample_value(
            "tabops_predictions_total", {"usecase": "toy", "model_version": "3", "label": label}
        )

    assert (count("yes"), count("no")) == (2, 2)
    toy = {"usecase": "toy"}
    assert registry.get_sample_value("tabops_inference_seconds_count", toy) == 2
    assert registry.get_sample_value("tabops_inference_seconds_sum", toy) == pytest.approx(0.00204)
    score = "tabops_prediction_score"
    assert registry.get_sample_value(f"{score}_count", toy) == 4
    assert registry.get_sample_value(f"{score}_sum", toy) == pytest.approx(0.72 + 0.1 + 0.95 + 0.3)
    edges = ("0.1", "0.3", "0.75", "1.0", "+Inf")
    bucket = {le: registry.get_sample_value(f"{score}_bucket", toy | {"le": le}) for le in edges}
    assert bucket == {"0.1": 1, "0.3": 2, "0.75": 3, "1.0": 4, "+Inf": 4}


def test_multiclass_scores_are_the_top_class_probability(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    proba = np.array([[0.2, 0.5, 0.3], [0.05, 0.05, 0.9]])
    scores = Scores(["b", "c"], proba, ("a", "b", "c"), None)
    metrics.record_predictions("iris", "1", scores, None, 0.001)
    toy = {"usecase": "iris"}
    assert registry.get_sample_value("tabops_prediction_score_sum", toy) == pytest.approx(1.4)


def test_model_info_carries_the_load_time_and_drops_to_zero_when_replaced(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.set_model("credit", "1", "compiled", 1_700_000_000.0)
    metrics.set_model("credit", "1", "compiled", 1_700_000_000.0)  # sampled again: no change
    old = {"usecase": "credit", "model_version": "1", "scoring_path": "compiled"}
    assert registry.get_sample_value("tabops_model_info", old) == 1_700_000_000.0
    metrics.set_model("credit", "2", "pipeline", 1_700_000_500.0)
    new = {"usecase": "credit", "model_version": "2", "scoring_path": "pipeline"}
    assert registry.get_sample_value("tabops_model_info", new) == 1_700_000_500.0
    assert registry.get_sample_value("tabops_model_info", old) == 0


def test_audit_counters_grow_by_what_changed_between_samples(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.record_audit(_audit(queued=3, written=10, transactions=2, spool_bytes=0))
    metrics.record_audit(_audit(queued=0, written=10, transactions=2))  # same totals twice
    metrics.record_audit(
        _audit(written=12, spooled=5, replayed=5, failures=1, transactions=3, spool_bytes=4096)
    )

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("tabops_audit_records_total", outcome="written") == 12
    assert value("tabops_audit_records_total", outcome="spooled") == 5
    assert value("tabops_audit_records_total", outcome="replayed") == 5
    assert value("tabops_audit_failures_total") == 1
    assert value("tabops_audit_transactions_total") == 3
    assert value("tabops_audit_queue_depth") == 0
    assert value("tabops_audit_spool_bytes") == 4096


def test_jobs_by_state_and_states_that_emptied_go_to_zero(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.set_jobs({"queued": 2, "running": 1})
    metrics.set_jobs({"succeeded": 3})
    jobs = {
        s: registry.get_sample_value("tabops_training_jobs", {"state": s})
        for s in ("queued", "running", "succeeded")
    }
    assert jobs == {"queued": 0, "running": 0, "succeeded": 3}


def test_drift_report_per_feature_and_level(metrics: Metrics, registry: CollectorRegistry) -> None:
    spec = parse_spec(spec_dict())
    reference = toy_frame(600, seed=1)
    live = toy_frame(600, seed=2)
    live["age"] = live["age"] + 25  # a real shift: KS and PSI both see it
    at = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
    report = compute_drift(
        spec,
        reference,
        live,
        reference_scores=np.linspace(0, 1, 600),
        live_scores=np.linspace(0, 1, 600),
        model_version="4",
        computed_at=at,
    )
    metrics.record_drift(report)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"usecase": "toy", **labels})

    age = next(f for f in report.features if f.name == "age")
    assert age.drifted and age.psi is not None
    assert value("tabops_drift_feature", feature="age", statistic="psi") == age.psi
    assert value("tabops_drift_feature", feature="age", statistic="p_value") == age.p_value
    assert value("tabops_drift_feature_drifted", feature="age") == 1
    assert value("tabops_drift_feature_drifted", feature="plan") == 0
    assert value("tabops_drift_feature_drifted", feature="(score)") == 0
    assert value("tabops_drift_level") == report.level
    assert value("tabops_drift_drifted_features") == report.n_drifted
    assert value("tabops_drift_live_rows") == 600
    assert value("tabops_drift_timestamp_seconds") == at.timestamp()

    # too few live rows: nothing tested, and no stale figure may stay on the dashboard
    metrics.record_drift(compute_drift(spec, reference, live.head(3), model_version="4"))
    assert value("tabops_drift_level") == 0
    for statistic in DRIFT_STATISTICS:
        stale = value("tabops_drift_feature", feature="age", statistic=statistic)
        assert stale is not None and math.isnan(stale)
    assert value("tabops_drift_feature_drifted", feature="age") == 0


def test_live_quality_beside_the_holdout(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.set_live_quality(
        "credit", "2", accuracy=0.71, f1=0.55, holdout_accuracy=0.8, labelled=250
    )
    labels = {"usecase": "credit", "model_version": "2"}
    assert registry.get_sample_value("tabops_live_accuracy", labels) == 0.71
    assert registry.get_sample_value("tabops_live_f1", labels) == 0.55
    assert registry.get_sample_value("tabops_holdout_accuracy", labels) == 0.8
    assert registry.get_sample_value("tabops_live_labelled", labels) == 250
    metrics.set_live_quality("credit", "2", accuracy=0.7, f1=None, holdout_accuracy=None)
    assert registry.get_sample_value("tabops_live_accuracy", labels) == 0.7
    assert registry.get_sample_value("tabops_live_f1", labels) == 0.55  # unknown: unchanged


def test_no_metric_carries_an_id_label(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.observe_request("GET", "/jobs/{job_id}", 200, 0.01)
    metrics.record_predictions("toy", "1", _binary(["yes"], [0.9]), 1, 0.001)
    metrics.set_model("toy", "1", "compiled", 1.0)
    metrics.record_audit(_audit(written=1))
    metrics.set_jobs({"running": 1})
    metrics.set_live_quality("toy", "1", accuracy=1.0, f1=1.0, holdout_accuracy=1.0)
    families = list(registry.collect())
    assert families and all(f.name.startswith("tabops_") for f in families)
    names = {label for family in families for s in family.samples for label in s.labels}
    assert names <= ALLOWED_LABELS
    assert b"tabops_predictions_total{" in metrics.exposition()


def test_metrics_of_two_instances_do_not_mix() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first).observe_request("GET", "/health", 200, 0.001)
    Metrics(second)  # same metric names, own registry: no "duplicated timeseries" error
    labels = {"method": "GET", "route": "/health", "status": "200"}
    assert first.get_sample_value("tabops_http_requests_total", labels) == 1
    assert second.get_sample_value("tabops_http_requests_total", labels) is None


def test_middleware_labels_requests_by_route_template(registry: CollectorRegistry) -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    install_metrics(app, Metrics(registry), refresh_interval_s=60)
    with TestClient(app, raise_server_exceptions=False) as client:
        for i in range(3):
            assert client.get(f"/items/{i}").status_code == 200
        assert client.get("/nowhere/17").status_code == 404
        assert client.get("/boom").status_code == 500
        exposed = client.get("/metrics")
    assert exposed.status_code == 200
    assert exposed.headers["content-type"].startswith("text/plain")

    def requests(route: str, status: str) -> float | None:
        labels = {"method": "GET", "route": route, "status": status}
        return registry.get_sample_value("tabops_http_requests_total", labels)

    assert requests("/items/{item_id}", "200") == 3
    assert requests(UNMATCHED_ROUTE, "404") == 1
    assert requests("/boom", "500") == 1
    assert 'route="/items/{item_id}"' in exposed.text
    assert "/items/1" not in exposed.text


# --- the shared folder of worker processes ----------------------------------------------


def test_a_multi_worker_server_gets_an_empty_folder_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "/somewhere/else")
    dead = tmp_path / f"serve-{_dead_pid()}"
    dead.mkdir(parents=True)
    alive = tmp_path / f"serve-{os.getppid()}"
    alive.mkdir()
    mine = tmp_path / f"serve-{os.getpid()}"
    mine.mkdir()
    (mine / "counter_1.db").write_bytes(b"left by an earlier run with this pid")
    with multiprocess_metrics(tmp_path, workers=2) as folder:
        assert folder == mine.resolve()
        assert os.environ[MULTIPROC_ENV] == str(folder)
        assert not any(folder.iterdir())
        assert not dead.exists() and alive.exists()
    assert not mine.exists()
    assert MULTIPROC_ENV not in os.environ
    with multiprocess_metrics(tmp_path, workers=1) as folder:
        assert folder is None and MULTIPROC_ENV not in os.environ


def test_live_gauges_of_dead_processes_are_reaped(tmp_path: Path) -> None:
    pid = _dead_pid()
    for name in (f"gauge_livesum_{pid}.db", f"gauge_livemax_{os.getpid()}.db", f"counter_{pid}.db"):
        (tmp_path / name).write_bytes(b"")
    assert reap_dead(tmp_path) == [pid]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([f"counter_{pid}.db", f"gauge_livemax_{os.getpid()}.db"])


def _dead_pid() -> int:
    """The id of a process that has exited."""
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(proc.stdout)
