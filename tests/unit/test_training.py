"""Pipeline building, threshold choice, decision policy and metrics on small data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tabops.data.datasets import training_dtypes, validate_frame
from tabops.errors import SpecError, TrainingError
from tabops.scoring.base import Decision, PipelineScorer
from tabops.spec.files import parse_spec
from tabops.training.estimators import FAMILIES as MODEL_FAMILIES
from tabops.training.fit import choose_threshold, evaluate, fit_usecase
from tabops.training.pipeline import build_pipeline
from tests.factories import spec_dict, toy_frame

FAMILIES = list(MODEL_FAMILIES)  # every registered family


def _spec(**changes: Any) -> Any:
    return parse_spec(spec_dict(**changes))


def _train_frame(spec: Any, n: int = 400) -> Any:
    typed = validate_frame(spec, toy_frame(n))
    out = training_dtypes(spec, typed)
    out[spec.target.name] = typed[spec.target.name].astype(str)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_pipeline_per_family_handles_gaps_and_unknown_categories(family: str) -> None:
    spec = _spec(model={"family": family, "params": {}})
    frame = _train_frame(spec)
    pipeline = build_pipeline(spec).fit(frame[spec.feature_names], frame["outcome"])
    rows = frame[spec.feature_names].head(3).copy()
    rows.loc[rows.index[0], "income"] = np.nan
    rows.loc[rows.index[1], "plan"] = np.nan
    proba = pipeline.predict_proba(rows)
    assert proba.shape == (3, 2)
    assert np.allclose(proba.sum(axis=1), 1)
    step = pipeline.named_steps["preprocess"]
    names = list(step.get_feature_names_out())
    assert any("missingindicator" in n for n in names), names  # optional feature: gap indicator
    assert sum(n.startswith("cat__plan_") for n in names) == 3


def test_params_override_and_unknown_param() -> None:
    spec = _spec(model={"family": "logistic_regression", "params": {"C": 0.5}})
    assert build_pipeline(spec).named_steps["model"].C == 0.5
    assert build_pipeline(spec, {"C": 2.0}).named_steps["model"].C == 2.0
    with pytest.raises(SpecError, match="unknown parameter.*n_estimators"):
        build_pipeline(
            _spec(model={"family": "logistic_regression", "params": {"n_estimators": 3}})
        )


def _brute_force(y: np.ndarray, p: np.ndarray, cost: Any) -> float:
    best, chosen = None, None
    for t in np.unique(np.round(p, 4)):
        if not 0 < t < 1:
            continue
        pred = p >= t
        value = cost(pred, y)
        if (
            best is None
            or value < best - 1e-12
            or (abs(value - best) < 1e-12 and abs(t - 0.5) < abs(chosen - 0.5))
        ):
            best, chosen = value, t
    assert chosen is not None
    return float(chosen)


def test_threshold_policies_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.3
    p = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    fixed = _spec(decision={"policy": "fixed", "threshold": 0.42})
    assert choose_threshold(fixed, y, p) == 0.42

    def neg_f1(pred: np.ndarray, y: np.ndarray) -> float:
        tp = (pred & y).sum()
        return -2 * tp / max(2 * tp + (pred & ~y).sum() + (~pred & y).sum(), 1)

    f1 = _spec(decision={"policy": "max_f1"})
    assert choose_threshold(f1, y, p) == pytest.approx(_brute_force(y, p, neg_f1))

    def cost(pred: np.ndarray, y: np.ndarray) -> float:
        return float(1 * (pred & ~y).sum() + 5 * (~pred & y).sum())

    costly = _spec(
        decision={"policy": "min_cost", "costs": {"false_positive": 1, "false_negative": 5}}
    )
    t_cost = choose_threshold(costly, y, p)
    assert t_cost == pytest.approx(_brute_force(y, p, cost))
    # a missed positive costs more, so the threshold drops below the F1 one
    assert t_cost is not None and t_cost <= choose_threshold(f1, y, p)  # type: ignore[operator]


def test_multiclass_has_no_threshold() -> None:
    spec = parse_spec(
        spec_dict(task="multiclass", target={"name": "outcome", "classes": ["a", "b", "c"]})
    )
    assert choose_threshold(spec, np.zeros(3), np.zeros(3)) is None


def test_decision_labels() -> None:
    binary = Decision(("no", "yes"), "yes", 0.3)
    proba = np.array([[0.75, 0.25], [0.7, 0.3], [0.1, 0.9]])
    assert list(binary.labels(proba)) == ["no", "yes", "yes"]
    multi = Decision(("a", "b", "c"))
    assert list(multi.labels(np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]))) == ["b", "a"]


def test_evaluate_binary_metrics() -> None:
    spec = _spec()
    y = np.array(["yes", "no", "yes", "no"])
    proba = np.array([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    metrics = evaluate(spec, y, proba, Decision(("no", "yes"), "yes", 0.5))
    assert metrics["accuracy"] == 0.5
    assert metrics["roc_auc"] == 0.75
    assert metrics["precision"] == 0.5 and metrics["recall"] == 0.5
    assert metrics["support.yes"] == 2


def test_fit_is_reproducible_and_scores_through_scorer() -> None:
    spec = _spec(training={"cv_folds": 3, "seed": 7, "reference_size": 50})
    frame = _train_frame(spec)
    first, second = fit_usecase(spec, frame), fit_usecase(spec, frame)
    assert first.holdout_metrics == second.holdout_metrics
    assert first.cv_metrics == second.cv_metrics
    assert first.decision == second.decision
    assert len(first.reference) == 50
    assert first.n_train + first.n_holdout == len(frame)
    scorer = PipelineScorer(spec, first.pipeline, first.decision, "1")
    record = {"age": 30, "income": None, "plan": "pro", "active": False}
    scores = scorer.score([record, record])
    assert scores.labels[0] in ("no", "yes")
    assert scores.probabilities.shape == (2, 2)


def test_too_little_data_is_a_clear_error() -> None:
    spec = _spec()
    with pytest.raises(TrainingError, match="no training data"):
        fit_usecase(spec, _train_frame(spec).head(0))
    frame = _train_frame(spec)
    tiny = pd.concat(
        [frame[frame["outcome"] == "no"].head(30), frame[frame["outcome"] == "yes"].head(3)]
    )
    with pytest.raises(TrainingError, match="too little data"):
        fit_usecase(spec, tiny)
