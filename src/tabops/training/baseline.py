"""The trivial baseline a first version must beat: class priors learned from the
training split, the same probabilities for every row (the majority class as the label)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["prior_proba"]


def prior_proba(classes: list[str], y_train: pd.Series, n_rows: int) -> np.ndarray:
    """Probabilities of the prior model (scikit-learn's ``DummyClassifier(strategy="prior")``):
    every row gets the training split's class frequencies. Scored at threshold 0.5 (or by
    argmax) it predicts the majority class; its ROC AUC is 0.5 and its log loss the entropy
    of the priors.

    Args:
        classes: The classes, in the order of the returned columns.
        y_train: Labels of the training split.
        n_rows: Rows to score (the hold-out's size).

    Returns:
        An ``(n_rows, len(classes))`` matrix.
    """
    labels = y_train.astype(str).to_numpy()
    priors = np.array([(labels == c).mean() for c in classes], dtype=float)
    return np.tile(priors, (n_rows, 1))
