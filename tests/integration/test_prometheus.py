"""The shipped Prometheus and Grafana files against a real Prometheus scraping a real server.

A `tabops serve --workers 2` process answers predictions while the `prometheus` binary
scrapes it every second with the shipped alert rules loaded. Every PromQL expression of the
Grafana dashboard and of the alert rules is then run through Prometheus's HTTP API and
must return data. Drift and live-quality gauges are published by a separate process
writing to the server's shared metric folder, which is how a job outside the API process
publishes them (until the drift job and live quality exist, that process stands in).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tabops.api.app import create_app
from tabops.api.deps import services_of
from tabops.config import Settings
from tabops.lifecycle.train import TrainingOutcome
from tabops.telemetry.metrics import Metrics
from tests.conftest import REPO, require
from tests.serverproc import ServerProcess, free_port, serve_env

pytestmark = pytest.mark.slow

Trained = tuple[Settings, dict[str, TrainingOutcome]]

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "tabops.json"
USECASE = "credit"
"""The use case the dashboard's ``$usecase`` is set to (the publisher's drift is on it)."""
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")
_THRESHOLD = re.compile(r"^(?P<signal>.*\S)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<value>-?[\d.]+)$")
_LABEL_VALUES = re.compile(r"^label_values\((?P<metric>.+),\s*(?P<label>\w+)\)$")

# Stands in for the drift job and live quality: a separate process that publishes through
# the server's shared metric folder (PROMETHEUS_MULTIPROC_DIR is set in its environment).
_PUBLISHER = """
import sys
from tabops.config import Settings
from tabops.data.datasets import read_source
from tabops.monitoring.drift import compute_drift
from tabops.spec.files import load_usecase
from tabops.telemetry.metrics import Metrics

usecase, version, holdout = sys.argv[1], sys.argv[2], float(sys.argv[3])
settings = Settings()
spec = load_usecase(settings.usecases_dir, usecase)
frame = read_source(spec, settings)
reference = frame.iloc[::2].reset_index(drop=True)
live = frame.iloc[1::2].reset_index(drop=True)
live["Income"] = live["Income"] * 1.8  # a real shift, so that a feature drifts
metrics = Metrics.for_process()
report = compute_drift(spec, reference, live, model_version=version)
assert report.n_drifted >= 1, report.message
metrics.record_drift(report)
metrics.set_live_quality(
    usecase, version, accuracy=holdout - 0.1, f1=0.5, holdout_accuracy=holdout, labelled=200
)
metrics.set_jobs({"queued": 0, "running": 0, "succeeded": 1})
metrics.close()
"""


def _require_prometheus() -> tuple[str, str]:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    require(
        prometheus is not None and promtool is not None,
        "prometheus and promtool are not installed (apt-get install prometheus)",
    )
    assert prometheus is not None and promtool is not None
    return prometheus, promtool


# --- expressions of the shipped files -----------------------------------------------------


def alert_expressions() -> dict[str, str]:
    """Each alert rule's expression, by alert name."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    """Each dashboard query (panel targets and template variables), by where it is."""
    board = json.loads(DASHBOARD.read_text())
    found: dict[str, str] = {}
    panels = list(board["panels"])
    while panels:
        panel = panels.pop(0)
        panels += panel.get("panels", [])
        for target in panel.get("targets", []):
            found[f"{panel['title']} / {target['refId']}"] = target["expr"]
    for variable in board["templating"]["list"]:
        query = variable["query"]
        found[f"variable {variable['name']}"] = query["query"] if isinstance(query, dict) else query
    return found


def _concrete(expr: str) -> str:
    """A Grafana query as Prometheus runs it: variables replaced by values."""
    for name in GRAFANA_INTERVALS:
        expr = expr.replace(name, "1m")
    expr = expr.replace("${usecase}", USECASE).replace("$usecase", USECASE)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    match = _LABEL_VALUES.match(expr)
    if match:  # Grafana's label_values(): the series that carry the label
        return f"count by ({match['label']}) ({match['metric']})"
    return expr


def _signal(expr: str) -> str:
    """An alert expression that returns its signal whether or not the alert fires: the
    final comparison with the threshold becomes a ``bool`` comparison (0 or 1 per series)."""
    flat = " ".join(expr.split())
    match = _THRESHOLD.match(flat)
    assert match, f"not '<signal> <comparison> <threshold>': {flat}"
    return f"{match['signal']} {match['op']} bool {match['value']}"


# --- the running pieces ---------------------------------------------------------------------


def _shared_folder(base: Path, proc: ServerProcess) -> Path:
    assert proc.proc is not None
    return base / f"serve-{proc.proc.pid}"


@pytest.fixture(scope="module")
def server(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A two-worker server sampling its gauges every second, with traffic until the end."""
    _require_prometheus()
    settings, _ = trained
    tmp = tmp_path_factory.mktemp("prometheus-serve")
    env = serve_env(
        settings,
        TABOPS_METRICS__MULTIPROC_DIR=str(tmp / "metrics"),
        TABOPS_METRICS__REFRESH_INTERVAL_S="1",
        # the periodic drift pass must not replace the publisher's report mid-test
        TABOPS_MONITOR__ENABLED="false",
    )
    log = tmp / "serve.log"
    with ServerProcess(env, log, workers=2) as proc:
        stop = threading.Event()
        traffic = threading.Thread(target=_traffic, args=(proc.base, stop), daemon=True)
        traffic.start()
        try:
            yield proc
        finally:
            stop.set()
            traffic.join(timeout=30)
    assert "Traceback" not in log.read_text()


def _traffic(base: str, stop: threading.Event) -> None:
    """Predictions for every use case, and a few refused inputs, until stopped."""
    with httpx.Client(base_url=base, timeout=10) as client:
        names = [u["name"] for u in client.get("/usecases").json()]
        examples = {n: client.get(f"/usecases/{n}").json()["example"] for n in names}
        while not stop.is_set():
            for name, example in examples.items():
                assert client.post(f"/usecases/{name}/predict", json=example).status_code == 200
            batch = {"records": [examples[USECASE]] * 5}
            assert client.post(f"/usecases/{USECASE}/predict", json=batch).status_code == 200
            assert client.post(f"/usecases/{USECASE}/predict", json={}).status_code == 422
            assert client.post("/usecases/nosuch/predict", json={}).status_code == 404
            assert client.get("/no/such/path").status_code == 404  # no route: "(unmatched)"
            stop.wait(0.2)


@pytest.fixture(scope="module")
def published(server: ServerProcess, trained: Trained) -> None:
    """Drift, live quality and job gauges published by another process (see _PUBLISHER)."""
    settings, outcomes = trained
    folder = _shared_folder(Path(server.env["TABOPS_METRICS__MULTIPROC_DIR"]), server)
    assert folder.is_dir()
    outcome = outcomes[USECASE]
    env = serve_env(settings, PROMETHEUS_MULTIPROC_DIR=str(folder))
    holdout = str(outcome.holdout_metrics["accuracy"])
    subprocess.run(
        [sys.executable, "-c", _PUBLISHER, USECASE, outcome.version, holdout],
        env=env,
        check=True,
        cwd=REPO,
        timeout=120,
    )


@pytest.fixture(scope="module")
def prometheus(
    server: ServerProcess, published: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The prometheus binary scraping the server every second, with the shipped rules."""
    binary, _ = _require_prometheus()
    tmp = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "tabops",  # the job the dashboard and the rules select
                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
            }
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_target(base, proc, tmp / "prometheus.log")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_for_target(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{log.read_text()}")
        try:
            response = httpx.get(f"{base}/api/v1/targets", timeout=2)
        except httpx.TransportError:
            response = None
        # 503 in plain text until it has started
        if response is not None and response.status_code == 200:
            targets = response.json()["data"]["activeTargets"]
            if [t["health"] for t in targets] == ["up"]:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the server is not an 'up' target after 60 s:\n{log.read_text()}")


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _query_until_data(base: str, expr: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Rates need two scrapes of a series: wait for them rather than sleep a guess."""
    deadline = time.monotonic() + timeout
    while True:
        result = _query(base, expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


# --- tests --------------------------------------------------------------------------------


def test_shipped_files_pass_promtool() -> None:
    _, promtool = _require_prometheus()
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],  # each rule fires when, and only when, it should
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=PROMETHEUS_DIR)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_rule_test() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested == set(alert_expressions())


def test_every_expression_is_found() -> None:
    alerts, panels = alert_expressions(), dashboard_expressions()
    assert len(alerts) >= 9 and len(panels) >= 20
    every = " ".join([*alerts.values(), *panels.values()])
    for metric in ("tabops_drift_level", "tabops_live_accuracy", "tabops_prediction_score_bucket"):
        assert metric in every
    for name, expr in alerts.items():
        _signal(expr)  # every rule keeps the '<signal> <comparison> <threshold>' form
        assert 'job="tabops"' in expr, name


def test_every_dashboard_expression_returns_data(prometheus: str) -> None:
    empty = []
    for where, expr in dashboard_expressions().items():
        if not _query_until_data(prometheus, _concrete(expr)):
            empty.append(f"{where}: {expr}")
    assert not empty, "\n".join(empty)


def test_every_alert_signal_returns_data(prometheus: str) -> None:
    empty = []
    for name, expr in alert_expressions().items():
        _query(prometheus, expr)  # the rule itself is valid PromQL
        if not _query_until_data(prometheus, _signal(expr)):
            empty.append(f"{name}: {expr}")
    assert not empty, "\n".join(empty)


def test_the_rules_evaluate_without_errors(prometheus: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if all(rule.get("lastEvaluation", "").startswith("2") for rule in rules):
            break
        assert time.monotonic() < deadline, "rules not evaluated in 30 s"
        time.sleep(0.5)
    assert {rule["name"] for rule in rules} == set(alert_expressions())
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    firing = {r["name"] for r in rules if r["state"] != "inactive"}
    # a healthy server: only the published stand-ins may trigger (drift, accuracy)
    assert firing <= {
        "TabopsDriftRetrain",
        "TabopsDriftWatch",
        "TabopsLiveAccuracyBelowHoldout",
    }


def test_series_are_what_the_dashboard_shows(prometheus: str, trained: Trained) -> None:
    _, outcomes = trained
    models = _query_until_data(prometheus, 'tabops_model_info{job="tabops"} > 0')
    assert {m["metric"]["usecase"]: m["metric"]["model_version"] for m in models} == {
        name: o.version for name, o in outcomes.items()
    }
    routes = _query(prometheus, 'count by (route) (tabops_http_requests_total{job="tabops"})')
    assert {r["metric"]["route"] for r in routes} >= {
        "/usecases/{name}",
        "/usecases/{name}/predict",
        "/metrics",
        "(unmatched)",
    }
    drifted = _query(prometheus, 'tabops_drift_feature_drifted{job="tabops",feature="Income"}')
    assert [d["value"][1] for d in drifted] == ["1"]


def test_one_process_serves_its_own_registry(trained: Trained) -> None:
    """Without worker processes: a plain registry, the same series."""
    settings, outcomes = trained
    with TestClient(create_app(settings)) as client:
        metrics: Metrics = services_of(client.app).metrics  # type: ignore[arg-type]
        assert metrics.multiprocess_dir is None
        example = client.get(f"/usecases/{USECASE}").json()["example"]
        for _ in range(3):
            assert client.post(f"/usecases/{USECASE}/predict", json=example).status_code == 200
        batch = client.post(f"/usecases/{USECASE}/predict", json={"records": [example] * 4})
        assert batch.status_code == 200
        families = list(text_string_to_metric_families(client.get("/metrics").text))
    version = outcomes[USECASE].version
    assert _total(families, "tabops_predictions_total", usecase=USECASE, model_version=version) == 7
    assert _total(families, "tabops_inference_seconds_count", usecase=USECASE) == 4
    assert _total(families, "tabops_audit_records_total", outcome="written") == 4
    info = {
        s.labels["usecase"]: s.labels["model_version"]
        for family in families
        for s in family.samples
        if s.name == "tabops_model_info" and s.value > 0
    }
    assert info == {name: o.version for name, o in outcomes.items()}


def test_two_workers_count_every_prediction_exactly_once(trained: Trained, tmp_path: Path) -> None:
    """Fresh connections spread the calls over both workers; /metrics, answered by either
    worker, must sum them exactly."""
    settings, _ = trained
    base_dir = tmp_path / "metrics"
    env = serve_env(
        settings,
        TABOPS_METRICS__MULTIPROC_DIR=str(base_dir),
        TABOPS_METRICS__REFRESH_INTERVAL_S="0.5",
    )
    log = tmp_path / "serve.log"
    with ServerProcess(env, log, workers=2) as proc:
        folder = _shared_folder(base_dir, proc)
        url = f"{proc.base}/usecases/{USECASE}/predict"
        example = httpx.get(f"{proc.base}/usecases/{USECASE}").json()["example"]

        def predict(_: int) -> int:
            return httpx.post(url, json=example, timeout=10).status_code  # a new connection

        sent, per_worker = 0, {}
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(25):  # until both workers have answered some
                assert set(pool.map(predict, range(40))) == {200}
                sent += 40
                per_worker = _predictions_by_process(folder, tmp_path / "copies")
                if len(per_worker) == 2:
                    break
        assert len(per_worker) == 2, per_worker
        assert sum(per_worker.values()) == sent

        for _ in range(3):  # whichever worker answers the scrape
            families = _scrape(proc.base)
            assert _total(families, "tabops_predictions_total") == sent
            assert _total(families, "tabops_inference_seconds_count", usecase=USECASE) == sent
            assert _total(families, "tabops_prediction_score_count", usecase=USECASE) == sent
            assert (
                _total(
                    families,
                    "tabops_http_requests_total",
                    route="/usecases/{name}/predict",
                    status="200",
                )
                == sent
            )
        # the audit counters are sampled by each worker's timer: wait for the next samples
        deadline = time.monotonic() + 15
        while _total(_scrape(proc.base), "tabops_audit_records_total", outcome="written") < sent:
            assert time.monotonic() < deadline, "audit counters not sampled"
            time.sleep(0.3)
        assert _total(_scrape(proc.base), "tabops_audit_records_total", outcome="written") == sent
        assert folder.is_dir()
    assert not folder.exists(), "tabops serve leaves its metric folder behind"
    assert "Traceback" not in log.read_text()


def _scrape(base: str) -> list[Any]:
    with httpx.Client(timeout=10) as client:  # a fresh connection: any worker may answer
        response = client.get(f"{base}/metrics")
    assert response.status_code == 200
    return list(text_string_to_metric_families(response.text))


def _total(families: list[Any], sample: str, **labels: str) -> float:
    return sum(
        s.value
        for family in families
        for s in family.samples
        if s.name == sample and labels.items() <= s.labels.items()
    )


def _predictions_by_process(folder: Path, scratch: Path) -> dict[int, float]:
    """Predictions counted by each worker, read from its own counter file."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        alone = scratch / str(pid)
        alone.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, alone / path.name)
        families = list(MultiProcessCollector(None, path=str(alone)).collect())
        n = _total(families, "tabops_predictions_total")
        if n:
            counts[pid] = n
    return counts
