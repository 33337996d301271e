"""Leakage checks: features that give away the target.

A feature that separates the classes almost perfectly on its own (single-feature ROC AUC
near 1) is usually the outcome written down another way: a column filled in after the
fact, or the very column a derived target is computed from. ``tabops init`` and
``tabops train`` warn about both; they do not drop anything.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from tabops.spec.schema import UseCase

__all__ = ["LEAKAGE_AUC", "leakage_warnings", "leaky_columns", "single_feature_auc"]

LEAKAGE_AUC = 0.98
"""Single-feature ROC AUC from which a feature is reported as a possible leak."""
_MIN_ROWS = 20


def single_feature_auc(values: pd.Series, numeric: bool, hit: np.ndarray) -> float | None:
    """ROC AUC of one feature alone for a yes/no outcome, orientation-free (0.5..1).

    Numbers are used as the score directly. Other values are replaced by the outcome rate
    of their level, learned on the other half of the rows (cross-fitted, so that a column
    of unique values does not look perfect). Missing values are left out.

    Returns:
        The AUC, or None when too few rows or only one outcome remain.
    """
    keep = values.notna().to_numpy()
    if keep.sum() < _MIN_ROWS:
        return None
    y = hit[keep].astype(bool)
    if y.all() or not y.any():
        return None
    if numeric:
        score = pd.to_numeric(values[keep], errors="coerce").to_numpy(dtype=float)
        if np.isnan(score).any():
            return None
    else:
        levels = values[keep].astype(str).to_numpy()
        half = np.arange(len(levels)) % 2 == 0
        score = np.empty(len(levels))
        for part in (half, ~half):
            other = pd.Series(y[~part]).groupby(levels[~part]).mean()
            score[part] = pd.Series(levels[part]).map(other).fillna(y[~part].mean()).to_numpy()
    auc = float(roc_auc_score(y, score))
    return max(auc, 1.0 - auc)


def leaky_columns(
    columns: Mapping[str, tuple[pd.Series, bool]], target: pd.Series, classes: list[str]
) -> list[tuple[str, float]]:
    """The columns whose single-feature AUC reaches :data:`LEAKAGE_AUC`, with it.

    Args:
        columns: Name -> (values, whether numeric), aligned with ``target``.
        target: The labels.
        classes: The classes; for more than two, the mean of each one against the rest.
    """
    labels = target.astype(str).to_numpy()
    tested = classes[1:] if len(classes) == 2 else classes
    found = []
    for name, (values, numeric) in columns.items():
        aucs = [single_feature_auc(values, numeric, labels == c) for c in tested]
        if any(a is None for a in aucs):
            continue
        # one class that a feature sets apart (setosa by petal length) is no leak: the
        # feature must separate every class from the rest
        auc = float(np.mean([a for a in aucs if a is not None]))
        if auc >= LEAKAGE_AUC:
            found.append((name, auc))
    return found


def leakage_warnings(spec: UseCase, frame: pd.DataFrame) -> list[str]:
    """Warnings about possible leaks among a use case's features, on its training rows.

    Args:
        spec: The use case.
        frame: Training rows: the features and the target, by spec name.
    """
    out = []
    derive = spec.target.derive
    if derive is not None:
        for f in spec.features:
            if f.source == derive.column:
                out.append(
                    f"feature '{f.name}' is the column the target is derived from "
                    f"(target.derive.column '{derive.column}'): it gives the answer away; "
                    "remove it from the features"
                )
    columns = {
        f.name: (frame[f.name], f.type in ("number", "integer", "boolean"))
        for f in spec.features
        if f.name in frame.columns
    }
    target = frame[spec.target.name]
    present = target.notna().to_numpy()
    aligned = {name: (values[present], numeric) for name, (values, numeric) in columns.items()}
    for name, auc in leaky_columns(aligned, target[present], list(spec.target.classes)):
        out.append(
            f"feature '{name}' alone predicts the target with ROC AUC {auc:.3f}: "
            "possible leakage (known only after the outcome?); check it before serving"
        )
    return out
