"""Metrics do not depend on the order in which a spec lists its classes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tabops.data.datasets import training_dtypes, validate_frame
from tabops.scoring.base import Decision
from tabops.spec.files import parse_spec
from tabops.training.fit import evaluate, fit_usecase
from tests.factories import spec_dict, toy_frame


def _by_hand(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> float:
    rows = np.arange(len(y))
    columns = np.array([classes.index(label) for label in y])
    return float(-np.mean(np.log(proba[rows, columns])))


@pytest.mark.parametrize("classes", [["high", "low"], ["low", "high"]])
def test_log_loss_reads_columns_in_the_specs_class_order(classes: list[str]) -> None:
    spec = parse_spec(spec_dict(target={"name": "outcome", "classes": classes, "positive": "high"}))
    y = np.array(["high", "low", "high", "low", "low"])
    p_high = np.array([0.9, 0.2, 0.7, 0.4, 0.1])
    proba = np.column_stack([p_high, 1 - p_high])
    if classes[0] == "low":
        proba = proba[:, ::-1]
    metrics = evaluate(spec, y, proba, Decision(tuple(classes), "high", 0.5))
    assert metrics["log_loss"] == pytest.approx(_by_hand(y, proba, classes))
    assert metrics["roc_auc"] == 1.0
    assert metrics["accuracy"] == 1.0


def test_multiclass_log_loss_in_any_class_order() -> None:
    spec = parse_spec(
        spec_dict(task="multiclass", target={"name": "outcome", "classes": ["c", "a", "b"]})
    )
    y = np.array(["a", "b", "c", "a"])
    proba = np.array(  # columns c, a, b
        [[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.3, 0.5, 0.2]]
    )
    metrics = evaluate(spec, y, proba, Decision(("c", "a", "b")))
    assert metrics["log_loss"] == pytest.approx(_by_hand(y, proba, ["c", "a", "b"]))
    assert metrics["accuracy"] == 1.0


def _trained(classes: list[str]) -> Any:
    spec = parse_spec(
        spec_dict(
            target={"name": "outcome", "classes": classes, "positive": "yes"},
            training={"cv_folds": 3, "reference_size": 50},
            decision={"policy": "max_f1"},
        )
    )
    typed = validate_frame(spec, toy_frame(300))
    frame = training_dtypes(spec, typed)
    frame["outcome"] = typed["outcome"].astype(str)
    return fit_usecase(spec, frame)


def test_training_metrics_are_the_same_whatever_the_class_order() -> None:
    alphabetical, reversed_ = _trained(["no", "yes"]), _trained(["yes", "no"])
    assert reversed_.decision.threshold == alphabetical.decision.threshold
    for key, value in alphabetical.holdout_metrics.items():
        assert reversed_.holdout_metrics[key] == pytest.approx(value), key
    for key, value in alphabetical.cv_metrics.items():
        assert reversed_.cv_metrics[key] == pytest.approx(value), key
