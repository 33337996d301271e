"""The drift-test registry: the spec names which tests run per kind, and the report, the
metrics and the HTML page show whatever statistics a run holds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tabops.errors import SpecError
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import train_usecase
from tabops.monitoring.drift import (
    DEFAULT_STATISTICS,
    DRIFT_TESTS,
    DriftParams,
    compute_drift,
)
from tabops.monitoring.report import render_html
from tabops.monitoring.stats import wasserstein
from tabops.spec.files import parse_spec
from tabops.spec.schema import UseCase
from tabops.store.db import create_db_engine
from tabops.telemetry.metrics import Metrics
from tests.conftest import make_settings
from tests.factories import spec_dict, toy_frame


def _spec(**monitoring: Any) -> UseCase:
    return parse_spec(spec_dict(monitoring=monitoring))


def _shifted() -> tuple[Any, Any]:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    live["income"] = live["income"] + 2 * reference["income"].std()
    return reference, live


def test_defaults_run_one_hypothesis_test_and_the_default_effect_sizes() -> None:
    reference, live = _shifted()
    report = compute_drift(_spec(), reference, live)
    by_name = {f.name: f for f in report.features}
    for name in ("age", "income"):
        assert by_name[name].test == "ks"
        assert tuple(by_name[name].statistics) == DEFAULT_STATISTICS
    for name in ("plan", "active"):
        assert by_name[name].test == "chi2"
        assert tuple(by_name[name].statistics) == DEFAULT_STATISTICS
    assert all(DRIFT_TESTS[n].default for n in DEFAULT_STATISTICS[2:])


def test_the_spec_chooses_the_tests_of_a_kind() -> None:
    reference, live = _shifted()
    spec = _spec(drift_tests={"number": ["ks", "js_distance"]})
    report = compute_drift(spec, reference, live)
    income = next(f for f in report.features if f.name == "income")
    assert list(income.statistics) == ["statistic", "p_value", "js_distance"]
    assert income.psi is None and income.js_distance is not None
    # with JS the only effect size and no JS threshold, significance alone decides
    assert income.drifted and "JS" in income.reason and "PSI" not in income.reason
    age = next(f for f in report.features if f.name == "age")  # an integer: the defaults
    assert tuple(age.statistics) == DEFAULT_STATISTICS
    # the JSON report holds the statistics, and the flat fields older readers know
    data = next(f for f in report.as_dict()["features"] if f["name"] == "income")
    assert data["statistics"]["js_distance"] == data["js_distance"] == income.js_distance
    assert data["psi"] is None


def test_an_effect_size_threshold_in_the_spec_is_decisive() -> None:
    reference, live = _shifted()
    lenient = compute_drift(
        _spec(thresholds={"js_distance": 0.99}, psi_threshold=50), reference, live
    )
    assert "income" not in lenient.drifted_features
    strict = compute_drift(
        _spec(thresholds={"js_distance": 0.01}, psi_threshold=50), reference, live
    )
    assert "income" in strict.drifted_features


@pytest.mark.parametrize(
    ("monitoring", "field", "reason"),
    [
        ({"drift_tests": {"number": ["ks", "kl"]}}, "monitoring.drift_tests.number", "unknown"),
        ({"drift_tests": {"category": ["ks"]}}, "monitoring.drift_tests.category", "apply"),
        ({"drift_tests": {"number": ["psi"]}}, "monitoring.drift_tests.number", "exactly one"),
        ({"thresholds": {"ks": 0.1}}, "monitoring.thresholds", "not an effect size"),
    ],
)
def test_a_wrong_choice_of_tests_is_a_spec_error(
    monitoring: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(SpecError) as info:
        DriftParams.from_spec(_spec(**monitoring).monitoring)
    (detail,) = info.value.details
    assert detail.field == field and reason in detail.reason


def test_an_unknown_kind_is_refused_by_the_spec() -> None:
    with pytest.raises(SpecError) as info:
        _spec(drift_tests={"text": ["chi2"]})
    assert any(d.field.startswith("monitoring.drift_tests") for d in info.value.details)


def test_metrics_and_html_show_what_the_run_holds() -> None:
    reference, live = _shifted()
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    def value(feature: str, statistic: str) -> float | None:
        labels = {"usecase": "toy", "feature": feature, "statistic": statistic}
        return registry.get_sample_value("tabops_drift_feature", labels)

    full = compute_drift(_spec(), reference, live)
    metrics.record_drift(full)
    income = next(f for f in full.features if f.name == "income")
    assert value("income", "psi") == income.psi
    html = render_html(full, {}, "Toy")
    assert "<th>PSI</th>" in html and "<th>JS distance</th>" in html

    narrow = compute_drift(_spec(drift_tests={"number": ["ks", "js_distance"]}), reference, live)
    metrics.record_drift(narrow)
    stale = value("income", "psi")  # this run holds no PSI for income: not a stale figure
    assert stale is not None and math.isnan(stale)
    assert value("income", "js_distance") == narrow.features[1].js_distance
    assert value("age", "psi") is not None and not math.isnan(value("age", "psi") or math.nan)


def test_wasserstein_distance_is_a_shift_in_the_feature_unit() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(100, 10, 2000)
    assert wasserstein(x, x) == 0.0
    assert wasserstein(x, x + 7.5) == pytest.approx(7.5)
    assert wasserstein(x, [np.nan, np.inf]) == 0.0  # nothing present on one side


def test_wasserstein_runs_when_the_spec_names_it() -> None:
    reference, live = _shifted()
    shift = 2 * reference["income"].std()
    named = {"number": ["ks", "psi", "wasserstein"]}
    report = compute_drift(_spec(drift_tests=named), reference, live)
    income = next(f for f in report.features if f.name == "income")
    assert income.statistics["wasserstein"] == pytest.approx(shift, rel=0.1)
    assert "Wasserstein" in income.reason and income.drifted
    # a threshold makes it decisive: far above the shift, with PSI out of reach too
    calm = _spec(drift_tests=named, thresholds={"wasserstein": 10 * shift}, psi_threshold=50)
    assert "income" not in compute_drift(calm, reference, live).drifted_features
    registry = CollectorRegistry()
    Metrics(registry).record_drift(report)
    labels = {"usecase": "toy", "feature": "income", "statistic": "wasserstein"}
    assert (
        registry.get_sample_value("tabops_drift_feature", labels)
        == income.statistics["wasserstein"]
    )
    assert "<th>Wasserstein</th>" in render_html(report, {}, "Toy")
    # not named: the defaults, as before
    default = compute_drift(_spec(), reference, live)
    assert all("wasserstein" not in f.statistics for f in default.features)


def test_training_refuses_a_spec_whose_drift_tests_are_wrong(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    spec = _spec(drift_tests={"boolean": ["ks"]})
    with pytest.raises(SpecError) as info:  # before the table is read: it does not exist
        train_usecase(spec, engine, Registry(settings))
    assert info.value.details[0].field == "monitoring.drift_tests.boolean"
    engine.dispose()
