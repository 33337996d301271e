"""Compiled scorer: the pipeline's labels and probabilities without the pipeline, or a
fallback to the pipeline with a reason."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler

from tabops.data.datasets import training_dtypes, validate_frame
from tabops.scoring.base import Decision, PipelineScorer, Scorer, Scores
from tabops.scoring.compiled.scorer import CompiledScorer
from tabops.scoring.parity import PARITY_TOLERANCE, Parity, check_parity, compile_scorer
from tabops.scoring.records import records_to_frame, reference_records
from tabops.spec.derive import record_model
from tabops.spec.files import parse_spec
from tabops.spec.schema import UseCase
from tabops.training.estimators import FAMILIES as MODEL_FAMILIES
from tabops.training.pipeline import build_pipeline
from tests.factories import spec_dict, toy_frame

FAMILIES = list(MODEL_FAMILIES)  # every registered family
SMALL_PARAMS: dict[str, dict[str, Any]] = {
    "random_forest": {"n_estimators": 30},
    "hist_gradient_boosting": {"max_iter": 40},
}
MULTICLASS = ["low", "mid", "high"]  # not sorted: the model's classes_ order differs


def _spec(task: str = "binary", family: str = "logistic_regression") -> UseCase:
    """The toy spec with three optional features: a number with gaps in training, a
    category with gaps (None), and a boolean that had no gap in training (no indicator)."""
    raw = spec_dict(model={"family": family, "params": SMALL_PARAMS.get(family, {})})
    for feature in raw["features"]:
        if feature["name"] in ("plan", "active"):
            feature["required"] = False
    if task == "multiclass":
        raw.update(task="multiclass", target={"name": "outcome", "classes": MULTICLASS})
    return parse_spec(raw)


def _frame(spec: UseCase, n: int = 300) -> tuple[pd.DataFrame, pd.Series]:
    raw = toy_frame(n)
    rng = np.random.default_rng(1)
    raw["plan"] = raw["plan"].where(rng.random(n) > 0.1, None)
    if spec.task == "multiclass":
        score = 0.05 * (raw["age"] - 50) + (raw["plan"] == "pro") - raw["active"] * 0.8
        score = score + rng.normal(0, 0.5, n)
        low, high = np.quantile(score, [1 / 3, 2 / 3])
        raw["outcome"] = np.where(score < low, "low", np.where(score < high, "mid", "high"))
    typed = validate_frame(spec, raw)
    return training_dtypes(spec, typed), typed[spec.target.name].astype(str)


def _decision(spec: UseCase) -> Decision:
    threshold = 0.4 if spec.task == "binary" else None
    return Decision(tuple(spec.target.classes), spec.positive_class, threshold)


def _fitted(spec: UseCase) -> tuple[Any, pd.DataFrame]:
    X, y = _frame(spec)
    return build_pipeline(spec).fit(X, y), X.assign(**{spec.target.name: y})


def _api_records(spec: UseCase, reference: pd.DataFrame) -> list[dict[str, Any]]:
    """Reference rows and gap rows, passed through the API's own request model."""
    model = record_model(spec)
    return [model.model_validate(r).model_dump() for r in reference_records(spec, reference)]


def _assert_same(got: Scores, want: Scores) -> None:
    assert got.labels == want.labels
    assert got.classes == want.classes and got.threshold == want.threshold
    assert np.abs(got.probabilities - want.probabilities).max() <= PARITY_TOLERANCE


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("family", FAMILIES)
def test_compiled_scorer_matches_pipeline(family: str, task: str) -> None:
    spec = _spec(task, family)
    pipeline, reference = _fitted(spec)
    decision = _decision(spec)
    scorer, reason = compile_scorer(spec, pipeline, decision, "3", reference)
    assert isinstance(scorer, CompiledScorer), reason
    expected_path = "compiled-numpy" if family == "logistic_regression" else "compiled-trees"
    assert scorer.path == expected_path and scorer.version == "3"
    assert reason.startswith(f"{expected_path}: parity ok")
    baseline = PipelineScorer(spec, pipeline, decision, "3")
    records = _api_records(spec, reference)
    _assert_same(scorer.score(records), baseline.score(records))
    # every route: one record, a small batch (tree walk), a batch past the walk limit
    for size in (1, 2, min(scorer.small_limit, 64), scorer.small_limit + 1):
        chunk = records[-size:]  # the gap rows come last
        _assert_same(scorer.score(chunk), baseline.score(chunk))


def test_preprocessor_reproduces_column_transformer_exactly() -> None:
    spec = _spec()
    pipeline, reference = _fitted(spec)
    compiled = CompiledScorer(spec, pipeline, _decision(spec), "1")
    records = _api_records(spec, reference)
    step = pipeline.named_steps["preprocess"]
    expected = step.transform(records_to_frame(spec, records))
    assert compiled.preprocessor.names == list(step.get_feature_names_out())
    np.testing.assert_array_equal(compiled.preprocessor.matrix(records), expected)
    for i in (0, len(records) - 1, len(records) // 2):
        np.testing.assert_array_equal(compiled.preprocessor.row(records[i]), expected[i : i + 1])
    # the one-record path in Python floats: the same values, bit for bit
    for record, row in zip(records, expected, strict=True):
        assert compiled.preprocessor.values(record) == row.tolist()


@pytest.mark.parametrize("threshold", [0.4, 0.5, 0.9])
def test_one_record_in_python_floats_answers_as_a_batch(threshold: float) -> None:
    """Binary logistic regression scores one record without numpy: the labels of the batch
    path, the probabilities to the last few bits, at any threshold."""
    spec = _spec()
    pipeline, reference = _fitted(spec)
    decision = Decision(tuple(spec.target.classes), spec.positive_class, threshold)
    compiled = CompiledScorer(spec, pipeline, decision, "1")
    assert compiled._one is not None
    records = _api_records(spec, reference)
    batch = compiled.score(records)
    for i, record in enumerate(records):
        one = compiled.score([record])
        assert one.labels == [batch.labels[i]]
        assert np.abs(one.probabilities - batch.probabilities[i : i + 1]).max() <= 1e-12


def test_absent_optional_fields_and_nan_count_as_missing() -> None:
    spec = _spec()
    pipeline, reference = _fitted(spec)
    compiled = CompiledScorer(spec, pipeline, _decision(spec), "1")
    baseline = PipelineScorer(spec, pipeline, _decision(spec), "1")
    records: list[dict[str, Any]] = [
        {"age": 30},
        {"age": 61, "income": float("nan"), "plan": "pro"},
        {"age": 45, "income": 1200.0, "plan": None, "active": None},
    ]
    _assert_same(compiled.score(records), baseline.score(records))
    for record in records:
        _assert_same(compiled.score([record]), baseline.score([record]))


def test_unsupported_estimator_falls_back_to_pipeline() -> None:
    spec = _spec()
    X, y = _frame(spec)
    pipeline = build_pipeline(spec).set_params(model=DummyClassifier(strategy="prior")).fit(X, y)
    scorer, reason = compile_scorer(spec, pipeline, _decision(spec), "1", X)
    assert isinstance(scorer, PipelineScorer)
    assert reason == "pipeline: cannot compile: unsupported estimator DummyClassifier"


def test_unsupported_transformer_falls_back_to_pipeline() -> None:
    spec = _spec()
    X, y = _frame(spec)
    pipeline = build_pipeline(spec).set_params(preprocess__num__scale=MinMaxScaler()).fit(X, y)
    scorer, reason = compile_scorer(spec, pipeline, _decision(spec), "1", X)
    assert isinstance(scorer, PipelineScorer)
    assert reason.startswith("pipeline: cannot compile: unsupported numeric step MinMaxScaler")


class _Sharpened(LogisticRegression):
    """A logistic regression whose probabilities are not what its coefficients say."""

    def predict_proba(self, X: Any) -> Any:
        p = super().predict_proba(X) ** 2
        return p / p.sum(axis=1, keepdims=True)


def test_parity_failure_falls_back_with_the_difference() -> None:
    spec = _spec()
    X, y = _frame(spec)
    pipeline = build_pipeline(spec).set_params(model=_Sharpened(max_iter=2000)).fit(X, y)
    scorer, reason = compile_scorer(spec, pipeline, _decision(spec), "1", X)
    assert isinstance(scorer, PipelineScorer)
    assert reason.startswith("pipeline: parity failed: max |Δp| 0.")
    assert "reference rows" in reason


def test_tampered_coefficient_is_caught_by_the_parity_check() -> None:
    spec = _spec()
    pipeline, reference = _fitted(spec)
    tampered = copy.deepcopy(pipeline)
    tampered.named_steps["model"].coef_[0, 0] += 0.5
    candidate = CompiledScorer(spec, tampered, _decision(spec), "1")
    baseline = PipelineScorer(spec, pipeline, _decision(spec), "1")
    parity = check_parity(candidate, baseline, reference_records(spec, reference))
    assert not parity.passed
    assert parity.max_diff > PARITY_TOLERANCE


def test_nan_difference_never_passes() -> None:
    assert not Parity(rows=1, max_diff=float("nan"), label_mismatches=0).passed
    assert not Parity(rows=1, max_diff=0.0, label_mismatches=1).passed
    assert Parity(rows=1, max_diff=PARITY_TOLERANCE, label_mismatches=0).passed


def test_empty_reference_falls_back() -> None:
    spec = _spec()
    pipeline, reference = _fitted(spec)
    scorer, reason = compile_scorer(spec, pipeline, _decision(spec), "1", reference.iloc[:0])
    assert isinstance(scorer, PipelineScorer)
    assert reason == "pipeline: no reference rows to check parity on"


def test_reference_missing_a_column_falls_back() -> None:
    spec = _spec()
    pipeline, reference = _fitted(spec)
    scorer, reason = compile_scorer(
        spec, pipeline, _decision(spec), "1", reference.drop(columns="age")
    )
    assert isinstance(scorer, PipelineScorer)
    assert reason == "pipeline: parity check could not run: KeyError: 'age'"


def test_reference_records_are_api_typed_with_gap_rows() -> None:
    spec = _spec()
    _, reference = _fitted(spec)
    records = reference_records(spec, reference)
    optional = [f.name for f in spec.features if not f.required]
    assert len(optional) == 3
    assert len(records) == len(reference) + 50 * (len(optional) + 1)
    first = records[0]
    assert set(first) == set(spec.feature_names)
    assert type(first["age"]) is int and type(first["active"]) is bool
    assert first["plan"] is None or type(first["plan"]) is str
    assert all(r["income"] is None or type(r["income"]) is float for r in records)
    assert all(r["active"] is None for r in records[-50:])
    assert all(r["plan"] is None and r["income"] is None for r in records[-50:])


def test_compiled_scorer_is_a_scorer() -> None:
    spec = _spec()
    pipeline, _ = _fitted(spec)
    scorer: Scorer = CompiledScorer(spec, pipeline, _decision(spec), "7")
    assert (scorer.version, scorer.path) == ("7", "compiled-numpy")
    scores = scorer.score([{"age": 40, "income": None, "plan": "pro", "active": True}])
    assert scores.labels[0] in ("no", "yes") and scores.probabilities.shape == (1, 2)


def test_one_row_is_rounded_as_numpy_rounds_a_batch() -> None:
    """The response's probabilities of one record are rounded without numpy, to the same
    floats: random values, ties at the sixth decimal, and the extremes."""
    rng = np.random.default_rng(7)
    values = [*rng.random(20000), *(k / 2e6 for k in range(0, 2000001, 997)), 0.0, 1.0]
    values += [0.1234565, 0.9999995, 0.0000005, float("nan")]
    for p in values:
        scores = Scores(["a"], np.array([[p, 1 - p]]), ("a", "b"), None)
        got = scores.probability_dicts()[0]
        want = np.round(np.array([[p, 1 - p]]), 6).tolist()[0]
        np.testing.assert_array_equal([got["a"], got["b"]], want)
