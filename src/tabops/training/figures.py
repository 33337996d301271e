"""Figures logged with each model version: confusion matrix and ROC curve(s)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from tabops.scoring.base import Decision  # noqa: E402

__all__ = ["confusion_matrix_figure", "roc_figure"]


def confusion_matrix_figure(y_true: np.ndarray, proba: np.ndarray, decision: Decision) -> Figure:
    """Hold-out confusion matrix at the model's decision threshold."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ConfusionMatrixDisplay.from_predictions(
        y_true, decision.labels(proba), labels=list(decision.classes), ax=ax, colorbar=False
    )
    suffix = f" (threshold {decision.threshold:.3f})" if decision.threshold is not None else ""
    ax.set_title(f"Hold-out confusion matrix{suffix}")
    fig.tight_layout()
    return fig


def roc_figure(y_true: np.ndarray, proba: np.ndarray, decision: Decision) -> Figure:
    """Hold-out ROC curve (one-vs-rest, one curve per class, for multiclass tasks)."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    if decision.positive is not None:
        pos = decision.classes.index(decision.positive)
        RocCurveDisplay.from_predictions(
            y_true == decision.positive, proba[:, pos], name=decision.positive, ax=ax
        )
    else:
        for i, name in enumerate(decision.classes):
            RocCurveDisplay.from_predictions(y_true == name, proba[:, i], name=name, ax=ax)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_title("Hold-out ROC")
    fig.tight_layout()
    return fig
