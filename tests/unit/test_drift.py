"""Drift statistics: invariants of PSI, and the cases where drift tools usually break."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tabops.monitoring.drift import (
    DriftParams,
    DriftReport,
    categorical_drift,
    compute_drift,
    histograms,
    numeric_drift,
)
from tabops.monitoring.stats import (
    bin_categories,
    bin_counts,
    chi2_test,
    js_distance,
    ks_test,
    missing_test,
    psi,
    psi_from_counts,
    quantile_edges,
)
from tabops.spec.files import parse_spec
from tabops.spec.schema import UseCase
from tests.factories import BASE_SPEC, spec_dict, toy_frame

SPEC = parse_spec(spec_dict())
PARAMS = DriftParams.from_spec(SPEC.monitoring)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)


def _floats(value: Any) -> Iterator[float]:
    """Every float inside a nested structure of dicts, lists and tuples."""
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _floats(item)


def _assert_finite(report: DriftReport) -> None:
    data = report.as_dict()
    assert all(math.isfinite(x) for x in _floats(data))
    json.dumps(data, allow_nan=False)  # refuses NaN and infinity


def _drifted(report: DriftReport) -> set[str]:
    return {f.name for f in report.features if f.drifted}


def _spec_with(features: list[dict[str, Any]], **monitoring: Any) -> UseCase:
    return parse_spec(spec_dict(features=features, monitoring=monitoring))


# --- PSI and friends -------------------------------------------------------------------


@given(st.lists(finite_floats, min_size=1, max_size=300))
def test_psi_of_a_sample_with_itself_is_zero(values: list[float]) -> None:
    assert abs(psi(values, values)) <= 1e-9


@given(
    st.lists(finite_floats, min_size=1, max_size=300),
    st.lists(finite_floats, min_size=0, max_size=300),
    st.integers(min_value=1, max_value=20),
)
def test_psi_is_finite_and_not_negative(ref: list[float], live: list[float], bins: int) -> None:
    value = psi(ref, live, bins=bins)
    assert math.isfinite(value)
    assert value >= 0


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30).flatmap(
        lambda ref: st.tuples(
            st.just(ref),
            st.lists(st.integers(0, 10_000), min_size=len(ref), max_size=len(ref)),
        )
    )
)
def test_psi_and_js_of_counts_are_bounded(counts: tuple[list[int], list[int]]) -> None:
    ref, live = counts
    assert psi_from_counts(ref, live) >= 0
    assert psi_from_counts(ref, ref) == 0
    assert 0 <= js_distance(ref, live) <= 1
    assert js_distance(ref, ref) == 0


@given(st.lists(finite_floats, min_size=1, max_size=200), st.integers(1, 20))
def test_reference_fills_only_inner_bins(values: list[float], bins: int) -> None:
    counts = bin_counts(values, quantile_edges(values, bins))
    assert counts.sum() == len(values)
    assert counts[0] == 0 and counts[-1] == 0  # outer bins are for live values out of range


def test_out_of_range_values_raise_psi() -> None:
    ref = np.linspace(0, 1, 1000)
    assert psi(ref, ref + 10) > 5  # all live values above the reference's maximum


def test_degenerate_tests_are_defined() -> None:
    assert ks_test([5.0] * 50, [5.0] * 80) == (0.0, 1.0)
    assert ks_test([5.0] * 50, [7.0] * 80).p_value < 1e-10
    assert chi2_test([10, 0], [5, 0]) == (0.0, 1.0)  # one category left: nothing to compare
    assert chi2_test([10, 0], [0, 0]) == (0.0, 1.0)  # empty side
    assert missing_test(0, 100, 0, 50) == (0.0, 1.0)
    assert missing_test(100, 100, 50, 50) == (0.0, 1.0)
    with pytest.raises(ValueError):
        ks_test([], [1.0])


# --- use case ---------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=100, max_value=800), st.integers(min_value=0, max_value=10_000))
def test_identical_samples_do_not_drift(n: int, seed: int) -> None:
    frame = toy_frame(n, seed)
    scores = np.random.default_rng(seed).random(n)
    report = compute_drift(
        SPEC,
        frame,
        frame.copy(),
        reference_scores=scores,
        live_scores=scores.copy(),
        reference_labels=frame["outcome"],
        live_labels=frame["outcome"].copy(),
    )
    assert report.tier == "stable" and report.level == 0 and report.n_drifted == 0
    assert not _drifted(report)
    # (a feature with fewer than min_rows present values is not tested: psi is None)
    assert all(f.psi in (0.0, None) and f.js_distance in (0.0, None) for f in report.features)
    assert report.score_drift is not None and not report.score_drift.drifted
    assert report.label_drift is not None and not report.label_drift.drifted
    _assert_finite(report)


def test_a_large_shift_is_detected_and_the_rest_is_not() -> None:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    live["income"] = live["income"] + 2 * reference["income"].std()
    report = compute_drift(SPEC, reference, live, model_version="3")
    assert _drifted(report) == {"income"}
    income = next(f for f in report.features if f.name == "income")
    assert income.test == "ks" and income.distribution_drift and not income.missing_drift
    assert income.p_value is not None and income.p_value < 1e-10
    assert income.psi is not None and income.psi > 1
    assert report.tier == "watch" and report.level == 1
    assert report.model_version == "3" and "income" in report.message
    _assert_finite(report)


def test_tiers_follow_watch_at_and_retrain_at() -> None:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    live["age"] = live["age"] + 30
    live["income"] = live["income"] * 3
    live["plan"] = "pro"
    assert compute_drift(SPEC, reference, live).tier == "retrain"
    lenient = parse_spec(spec_dict(monitoring={"watch_at": 2, "retrain_at": 4}))
    report = compute_drift(lenient, reference, live)
    assert (report.n_drifted, report.tier, report.level) == (3, "watch", 1)


def test_unseen_categories_are_counted_reported_and_drift() -> None:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    live.loc[:149, "plan"] = "premium"
    live.loc[150, "plan"] = "gold"
    plan = next(f for f in compute_drift(SPEC, reference, live).features if f.name == "plan")
    assert plan.unseen_categories == ("premium", "gold")
    assert plan.n_unseen == 151
    assert plan.drifted and plan.psi is not None and math.isfinite(plan.psi) and plan.psi > 1
    assert "unseen" in plan.reason


def test_a_rare_unseen_category_alone_is_not_drift() -> None:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    live.loc[0, "plan"] = "gold"
    plan = next(f for f in compute_drift(SPEC, reference, live).features if f.name == "plan")
    assert plan.unseen_categories == ("gold",) and plan.n_unseen == 1
    assert not plan.drifted


@pytest.mark.parametrize(
    ("ref_value", "live_value", "drifted"),
    [(40, 40, False), (40, 55, True)],
)
def test_constant_numeric_columns(ref_value: int, live_value: int, drifted: bool) -> None:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    reference["age"], live["age"] = ref_value, live_value
    report = compute_drift(SPEC, reference, live)
    age = next(f for f in report.features if f.name == "age")
    assert age.drifted is drifted
    assert age.p_value is not None and age.statistic is not None
    if not drifted:
        assert (age.statistic, age.p_value, age.psi, age.js_distance) == (0.0, 1.0, 0.0, 0.0)
    else:
        assert "constant changed" in age.reason
    _assert_finite(report)


def test_constant_on_one_side_only() -> None:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    reference["age"] = 40  # live ages vary: drift, with finite figures
    live["plan"] = "basic"  # reference plans vary
    live["active"] = True
    report = compute_drift(SPEC, reference, live)
    assert {"age", "plan", "active"} <= _drifted(report)
    _assert_finite(report)


@pytest.mark.parametrize(
    ("ref_value", "live_value", "drifted"),
    [("pro", "pro", False), ("pro", "basic", True), (True, True, False), (True, False, True)],
)
def test_constant_categorical_columns(ref_value: object, live_value: object, drifted: bool) -> None:
    column = "active" if isinstance(ref_value, bool) else "plan"
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    reference[column], live[column] = ref_value, live_value
    report = compute_drift(SPEC, reference, live)
    feature = next(f for f in report.features if f.name == column)
    assert feature.drifted is drifted
    if drifted:  # a constant that changed: certain drift
        assert feature.p_value is not None and feature.p_value < 0.05
    else:
        assert feature.p_value == 1.0
    _assert_finite(report)


def test_a_column_entirely_missing_in_live_is_missing_rate_drift() -> None:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    live["income"] = None
    report = compute_drift(SPEC, reference, live.drop(columns=["age"]))
    for name in ("income", "age"):
        feature = next(f for f in report.features if f.name == name)
        assert feature.test == "none" and feature.p_value is None
        assert feature.missing_drift and feature.drifted
        assert feature.missing_rate_live == 1.0
    _assert_finite(report)


def _cities(n: int, seed: int) -> list[str]:
    """A long tail: 30 cities hold 60% of the rows, 470 share the other 40%."""
    weights = np.r_[np.full(30, 0.6 / 30), np.full(470, 0.4 / 470)]
    rng = np.random.default_rng(seed)
    return list(rng.choice([f"city{i:03d}" for i in range(500)], n, p=weights))


CITY_SPEC = _spec_with(
    [
        *BASE_SPEC["features"],
        {"name": "city", "type": "category", "values": [f"city{i:03d}" for i in range(500)]},
    ]
)


@pytest.mark.parametrize("seed", range(5))
def test_high_cardinality_categories_are_capped(seed: int) -> None:
    # The default reference of 1,000 rows misses ~17% of this population's mass: live
    # shows many categories it never saw, which is sampling, not drift.
    reference, live = toy_frame(1000, seed), toy_frame(500, seed + 100)
    reference["city"], live["city"] = _cities(1000, seed), _cities(500, seed + 100)
    report = compute_drift(CITY_SPEC, reference, live)
    city = next(f for f in report.features if f.name == "city")
    assert city.n_unseen > 20 and len(city.unseen_categories) == 20  # listed up to 20
    assert not city.drifted, city.reason
    hist = histograms(CITY_SPEC, reference, live)["city"]
    assert len(hist.labels) == PARAMS.max_categories + 2
    assert hist.labels[-2:] == ("(other)", "(unseen)")
    assert 0.1 < hist.reference[-1] / sum(hist.reference) < 0.25  # singletons stand for unseen
    _assert_finite(report)


def test_high_cardinality_drift_is_still_seen() -> None:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    reference["city"] = _cities(1000, 0)
    live["city"] = [f"new{i}" for i in range(len(live))]  # ids the reference never saw
    city = next(f for f in compute_drift(CITY_SPEC, reference, live).features if f.name == "city")
    assert city.drifted and city.n_unseen == len(live)
    live["city"] = _cities(500, 1)[::-1]
    live.loc[: len(live) // 2, "city"] = "city499"  # a tail city becomes half the traffic
    city = next(f for f in compute_drift(CITY_SPEC, reference, live).features if f.name == "city")
    assert city.drifted


def test_flat_categories_are_not_given_lucky_names() -> None:
    binned = bin_categories([f"c{i % 300}" for i in range(1000)], ["c1"] * 10, 20)
    assert binned.labels == ("(other)",)  # no category reaches 1% of the reference


def test_a_change_in_missing_rate_is_its_own_drift() -> None:
    reference, live = toy_frame(2000, 0), toy_frame(1000, 1)
    live.loc[live.sample(frac=0.35, random_state=0).index, "income"] = np.nan
    report = compute_drift(SPEC, reference, live)
    income = next(f for f in report.features if f.name == "income")
    assert income.missing_drift and income.drifted and not income.distribution_drift
    assert income.missing_rate_ref < 0.15 < 0.3 < income.missing_rate_live
    assert "missing rate" in income.reason
    assert report.tier == "watch" and _drifted(report) == {"income"}


def test_a_small_change_in_missing_rate_is_not_drift() -> None:
    reference, live = toy_frame(2000, 0), toy_frame(1000, 1)
    live.loc[live.sample(frac=0.02, random_state=0).index, "income"] = np.nan
    income = next(f for f in compute_drift(SPEC, reference, live).features if f.name == "income")
    assert not income.missing_drift


def test_a_tiny_shift_on_a_large_window_is_significant_but_not_drift() -> None:
    rng = np.random.default_rng(7)
    n = 50_000
    spec = _spec_with(
        [
            {"name": "x", "type": "number"},
            {"name": "plan", "type": "category", "values": ["a", "b", "c"]},
        ]
    )
    reference = pd.DataFrame(
        {"x": rng.normal(0, 1, n), "plan": rng.choice(["a", "b", "c"], n, p=[0.34, 0.33, 0.33])}
    )
    live = pd.DataFrame(
        {"x": rng.normal(0.05, 1, n), "plan": rng.choice(["a", "b", "c"], n, p=[0.36, 0.32, 0.32])}
    )
    report = compute_drift(spec, reference, live)
    for feature in report.features:
        assert feature.p_value is not None and feature.p_value < PARAMS.p_value  # significant
        assert feature.psi is not None and feature.psi < 0.01  # but small
        assert not feature.drifted and "significant but small" in feature.reason
    assert report.tier == "stable"


def test_js_threshold_can_stand_for_psi() -> None:
    rng = np.random.default_rng(3)
    ref, live = rng.normal(0, 1, 5000), rng.normal(0.4, 1, 5000)
    strict = DriftParams.from_spec(SPEC.monitoring)
    assert not numeric_drift("x", ref, live, strict).drifted  # PSI ~0.16 < 0.2
    with_js = dataclasses.replace(strict, js_threshold=0.1)
    assert numeric_drift("x", ref, live, with_js).drifted


@pytest.mark.parametrize("n_live", [0, 1, 99])
def test_a_small_window_is_insufficient_data(n_live: int) -> None:
    reference, live = toy_frame(1000, 0), toy_frame(max(n_live, 1), 1).head(n_live)
    live["age"] = 200  # would be drift with enough rows
    report = compute_drift(SPEC, reference, live)
    assert report.tier == "insufficient_data" and report.level == 0
    assert report.features == () and report.n_drifted == 0
    assert f"{n_live} live rows" in report.message
    _assert_finite(report)


def test_a_small_reference_is_insufficient_data() -> None:
    report = compute_drift(SPEC, toy_frame(50, 0), toy_frame(500, 1))
    assert report.tier == "insufficient_data" and "50 reference rows" in report.message


def test_few_present_values_skip_the_distribution_test_only() -> None:
    params = DriftParams.from_spec(SPEC.monitoring)
    ref = np.r_[np.random.default_rng(0).normal(size=500), [np.nan] * 500]
    live = [1.0] * 50 + [None] * 450
    result = numeric_drift("x", ref, live, params)
    assert result.test == "none" and result.p_value is None and result.psi is None
    assert result.missing_drift and "not tested" in result.reason


def test_score_and_label_drift() -> None:
    rng = np.random.default_rng(1)
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    report = compute_drift(
        SPEC,
        reference,
        live,
        reference_scores=rng.beta(2, 5, 1000),
        live_scores=rng.beta(5, 2, 500),
        reference_labels=rng.choice(["no", "yes"], 1000, p=[0.7, 0.3]),
        live_labels=rng.choice(["no", "yes"], 500, p=[0.3, 0.7]),
    )
    assert report.score_drift is not None and report.score_drift.drifted
    assert report.score_drift.kind == "score" and report.score_drift.test == "ks"
    assert report.label_drift is not None and report.label_drift.drifted
    assert report.label_drift.kind == "label" and report.label_drift.test == "chi2"
    assert report.tier == "stable"  # the tier counts features; scores are reported beside


def test_booleans_arrive_as_bool_or_text() -> None:
    ref = [True, False] * 300
    live: list[object] = ["true", "false", True, "False"] * 100
    result = categorical_drift("active", ref, live, PARAMS, kind="boolean")
    assert result.n_unseen == 0 and not result.drifted


def test_histograms_match_the_tested_bins() -> None:
    reference, live = toy_frame(1000, 0), toy_frame(500, 1)
    hists = histograms(SPEC, reference, live)
    assert list(hists) == SPEC.feature_names
    for name, hist in hists.items():
        assert len(hist.labels) == len(hist.reference) == len(hist.live)
        assert sum(hist.reference) + hist.missing_reference == len(reference)
        assert sum(hist.live) + hist.missing_live == len(live)
        if SPEC.feature(name).type in ("number", "integer"):
            assert len(hist.edges) >= 2 and list(hist.edges) == sorted(hist.edges)
        else:
            assert hist.edges == ()
    assert hists["income"].missing_reference == reference["income"].isna().sum()
    json.dumps({k: v.as_dict() for k, v in hists.items()}, allow_nan=False)


def test_bin_categories_pools_rare_and_unseen() -> None:
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 2 + ["d"]
    binned = bin_categories(ref, ["a", "c", "d", "z", "z", "y"], 2)
    assert binned.labels == ("a", "b", "(other)", "(unseen)")
    # "d", seen once, stands for the categories the reference missed (Good-Turing)
    assert binned.reference == (50, 30, 2, 1) and binned.live == (1, 0, 2, 3)
    assert binned.unseen == ("z", "y") and binned.n_unseen == 3
    # without capping, an unseen category has no reference count: PSI's epsilon share
    binned = bin_categories(["a", "b", "b", "c"], ["a", "z"], 20)
    assert binned.labels == ("b", "a", "c", "(unseen)") and binned.reference[-1] == 0


def test_report_is_json_ready() -> None:
    when = datetime(2024, 5, 1, tzinfo=UTC)
    report = compute_drift(SPEC, toy_frame(1000, 0), toy_frame(500, 1), computed_at=when)
    data = json.loads(json.dumps(report.as_dict(), allow_nan=False))
    assert data["computed_at"] == "2024-05-01T00:00:00+00:00"
    assert data["usecase"] == "toy" and data["params"]["p_value"] == 0.01
    assert [f["name"] for f in data["features"]] == SPEC.feature_names


def test_inputs_that_cannot_be_compared_are_refused() -> None:
    frame = toy_frame(200, 0)
    with pytest.raises(ValueError, match="no column age"):
        compute_drift(SPEC, frame.drop(columns=["age"]), frame)
    with pytest.raises(ValueError, match="scores"):
        compute_drift(SPEC, frame, frame, live_scores=np.zeros(200))


values_or_missing = st.one_of(st.none(), st.just(float("nan")), finite_floats)
categories_or_missing = st.one_of(st.none(), st.sampled_from(["basic", "plus", "pro", "new"]))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(values_or_missing, categories_or_missing, st.booleans()), min_size=1),
    st.lists(
        st.tuples(values_or_missing, categories_or_missing, st.one_of(st.none(), st.booleans())),
        min_size=1,
    ),
)
def test_any_input_gives_a_finite_report(
    ref_rows: list[tuple[float | None, str | None, bool]],
    live_rows: list[tuple[float | None, str | None, bool | None]],
) -> None:
    columns = ["income", "plan", "active"]
    reference = pd.DataFrame(ref_rows, columns=columns).assign(age=40)
    live = pd.DataFrame(live_rows, columns=columns).assign(age=41)
    params = dataclasses.replace(PARAMS, min_rows=1)  # test even the tiniest samples
    report = compute_drift(SPEC, reference, live, params=params)
    assert report.tier in ("stable", "watch", "retrain")
    assert report.n_drifted == len(_drifted(report))
    _assert_finite(report)
    for hist in histograms(SPEC, reference, live, params=params).values():
        assert len(hist.labels) == len(hist.reference) == len(hist.live)


def test_boolean_reference_as_floats_matches_live_booleans() -> None:
    """The reference sample comes from training frames (booleans as 0.0/1.0); live inputs
    come from JSON (true/false): the same values must not look like drift."""
    from tabops.monitoring.stats import category_values

    floats, _ = category_values([0.0, 1.0, 1.0, None], boolean=True)
    flags, _ = category_values([False, True, True, None], boolean=True)
    assert floats == flags == ["False", "True", "True"]
