"""Small specs and data for unit tests."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

BASE_SPEC: dict[str, Any] = {
    "name": "toy",
    "title": "Toy",
    "task": "binary",
    "target": {"name": "outcome", "classes": ["no", "yes"], "positive": "yes"},
    "entity_id": {"name": "customer", "type": "string"},
    "features": [
        {"name": "age", "type": "integer", "min": 18, "max": 100, "unit": "years"},
        {"name": "income", "type": "number", "min": 0, "required": False},
        {"name": "plan", "type": "category", "values": ["basic", "plus", "pro"]},
        {"name": "active", "type": "boolean"},
    ],
    "data": {"files": ["toy.csv"]},
}


def spec_dict(**changes: Any) -> dict[str, Any]:
    """A valid spec mapping with top-level fields replaced."""
    spec = copy.deepcopy(BASE_SPEC)
    spec.update(changes)
    return spec


def toy_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Rows that satisfy BASE_SPEC, with a target that depends on the features."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    income = rng.normal(3000, 800, n).clip(0)
    plan = rng.choice(["basic", "plus", "pro"], n)
    active = rng.random(n) < 0.6
    logit = 0.04 * (age - 50) + 0.001 * (income - 3000) + (plan == "pro") * 1.0 - active * 0.8
    outcome = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    income_with_gaps = np.where(rng.random(n) < 0.1, np.nan, income.round(2))
    return pd.DataFrame(
        {
            "customer": [f"c{i:05d}" for i in range(n)],
            "age": age,
            "income": income_with_gaps,
            "plan": plan,
            "active": active,
            "outcome": outcome,
        }
    )


def model_output(pipeline: Any, frame: pd.DataFrame, cls: str, raw_scores: bool) -> np.ndarray:
    """A fitted pipeline's own output for class ``cls``, computed by scikit-learn: the
    decision function (log-odds or class logit) when ``raw_scores``, else the probability."""
    classes = [str(c) for c in pipeline.classes_]
    if raw_scores:
        scores = np.asarray(pipeline.decision_function(frame))
        if scores.ndim == 1:  # binary: the log-odds of classes_[1]
            return scores if cls == classes[1] else -scores
        return scores[:, classes.index(cls)]
    return np.asarray(pipeline.predict_proba(frame))[:, classes.index(cls)]


def fold_by_column_names(spec: Any, pipeline: Any, column_values: np.ndarray) -> np.ndarray:
    """Sum ``(n, columns)`` values of a pipeline's model matrix into ``(n, features)`` by the
    ColumnTransformer's output names (``cat__plan_pro``, ``num__missingindicator_x``),
    independently of the explainer's own folding."""
    names = [str(n) for n in pipeline[:-1].get_feature_names_out()]
    features = list(spec.feature_names)
    out = np.zeros((column_values.shape[0], len(features)))
    for j, name in enumerate(names):
        block, column = name.split("__", 1)
        column = column.removeprefix("missingindicator_")
        if block == "cat":  # the longest feature name the column starts with
            owner = max((f for f in features if column.startswith(f"{f}_")), key=len)
        else:
            owner = column
        out[:, features.index(owner)] += column_values[:, j]
    return out
