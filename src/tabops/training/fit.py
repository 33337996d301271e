"""Training: a scikit-learn pipeline built from the spec, cross-validation, the decision
threshold, hold-out metrics. Logging to MLflow and registration live in ``registry``.

Everything here is deterministic for a given table and seed: rows are read in insertion
order, splits and estimators take the spec's seed, and work runs in one process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline

from tabops.errors import TrainingError
from tabops.scoring.base import Decision
from tabops.spec.schema import UseCase
from tabops.training.baseline import prior_proba
from tabops.training.leakage import leakage_warnings
from tabops.training.pipeline import build_pipeline

if TYPE_CHECKING:
    pass

__all__ = [
    "Progress",
    "TrainedModel",
    "choose_threshold",
    "class_order_log_loss",
    "data_hash",
    "evaluate",
    "fit_usecase",
]

Progress = Callable[[str, float], None]
"""Called with a stage name and the fraction of the work done (0..1)."""

_MIN_ROWS_PER_CLASS = 5


def no_progress(stage: str, fraction: float) -> None:
    del stage, fraction


def choose_threshold(spec: UseCase, y_positive: np.ndarray, p_positive: np.ndarray) -> float | None:
    """The decision threshold of a binary use case, chosen on out-of-fold probabilities.

    ``fixed``: the spec's threshold. ``max_f1``: the threshold maximising F1 of the positive
    class. ``min_cost``: the one minimising ``cost_fp * FP + cost_fn * FN``. Ties go to the
    threshold closest to 0.5. Returns None for multiclass use cases (argmax decides).
    """
    if spec.task != "binary":
        return None
    policy = spec.decision
    if policy.policy == "fixed":
        return policy.threshold
    candidates = np.unique(np.round(p_positive, 4))
    candidates = candidates[(candidates > 0.0) & (candidates < 1.0)]
    if candidates.size == 0:
        return policy.threshold
    y = y_positive.astype(bool)
    # predictions at every candidate threshold at once: (thresholds, rows)
    predicted = p_positive[None, :] >= candidates[:, None]
    tp = (predicted & y).sum(axis=1)
    fp = (predicted & ~y).sum(axis=1)
    fn = (~predicted & y).sum(axis=1)
    if policy.policy == "max_f1":
        score = -(2 * tp / np.maximum(2 * tp + fp + fn, 1))
    else:
        score = policy.costs.false_positive * fp + policy.costs.false_negative * fn
    best = np.flatnonzero(score == score.min())
    chosen = best[np.argmin(np.abs(candidates[best] - 0.5))]
    return float(candidates[chosen])


def class_order_log_loss(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> float:
    """Log loss of probabilities whose columns follow ``classes``, in any order.

    scikit-learn's ``log_loss`` sorts ``labels`` and reads the probability columns in that
    sorted order; a spec listing its classes otherwise (``[low, high]``) would be scored
    against the wrong columns. The columns are put in sorted order first.
    """
    order = sorted(range(len(classes)), key=lambda i: classes[i])
    return float(
        log_loss(y_true, np.clip(proba[:, order], 1e-15, 1.0), labels=[classes[i] for i in order])
    )


def evaluate(
    spec: UseCase, y_true: np.ndarray, proba: np.ndarray, decision: Decision
) -> dict[str, float]:
    """Metrics of probabilities against true labels.

    Args:
        spec: The use case.
        y_true: True labels (strings).
        proba: ``(n, k)`` probabilities, columns in ``decision.classes`` order.
        decision: The classes and the decision policy applied to get labels.

    Returns:
        accuracy, balanced_accuracy, precision, recall, f1 (of the positive class for binary
        tasks, macro averages for multiclass), roc_auc, log_loss, and per class
        ``precision.<class>``, ``recall.<class>``, ``f1.<class>``, ``support.<class>``.
    """
    classes = list(decision.classes)
    y_pred = decision.labels(proba)
    out: dict[str, float] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "log_loss": class_order_log_loss(y_true, proba, classes),
    }
    if spec.task == "binary":
        pos = decision.positive_index
        assert pos is not None
        out["roc_auc"] = float(roc_auc_score(y_true == classes[pos], proba[:, pos]))
        average, pos_label = "binary", classes[pos]
    else:
        # like log_loss, a multiclass roc_auc_score needs its labels (and columns) sorted
        order = sorted(range(len(classes)), key=lambda i: classes[i])
        out["roc_auc"] = float(
            roc_auc_score(
                y_true,
                proba[:, order],
                multi_class="ovr",
                average="macro",
                labels=[classes[i] for i in order],
            )
        )
        average, pos_label = "macro", None
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, average=average, pos_label=pos_label, labels=classes, zero_division=0
    )
    out.update(precision=float(p), recall=float(r), f1=float(f))
    pc, rc, fc, sc = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    for i, name in enumerate(classes):
        out[f"precision.{name}"] = float(pc[i])
        out[f"recall.{name}"] = float(rc[i])
        out[f"f1.{name}"] = float(fc[i])
        out[f"support.{name}"] = float(sc[i])
    return out


def data_hash(frame: pd.DataFrame) -> str:
    """sha256 of the training rows as read (order, values and column names)."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


@dataclass
class TrainedModel:
    """A fitted pipeline and everything learned about it, ready to be logged."""

    spec: UseCase
    pipeline: Pipeline
    decision: Decision
    params: dict[str, Any]
    cv_metrics: dict[str, float]
    holdout_metrics: dict[str, float]
    n_rows: int
    n_train: int
    n_holdout: int
    data_sha256: str
    reference: pd.DataFrame
    """A sample of the training split (features and target), the drift reference."""
    holdout: pd.DataFrame
    holdout_proba: np.ndarray
    importances: pd.DataFrame = field(default_factory=pd.DataFrame)
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    """Hold-out metrics of the prior (majority-class) baseline."""
    class_counts: dict[str, int] = field(default_factory=dict)
    """Rows of each class in the whole table."""
    warnings: list[str] = field(default_factory=list)
    """Possible leakage: features that predict the target almost perfectly on their own."""


def _proba(pipeline: Pipeline, frame: pd.DataFrame, classes: list[str]) -> np.ndarray:
    order = [list(map(str, pipeline.classes_)).index(c) for c in classes]
    return np.asarray(pipeline.predict_proba(frame), dtype=float)[:, order]


def _check_rows(spec: UseCase, y: pd.Series) -> None:
    if y.empty:
        raise TrainingError(
            f"no training data for '{spec.name}': run `tabops seed {spec.name}` first"
        )
    counts = y.value_counts()
    missing = [c for c in spec.target.classes if counts.get(c, 0) < _MIN_ROWS_PER_CLASS * 2]
    if missing:
        raise TrainingError(
            f"too little data for '{spec.name}': class(es) {', '.join(missing)} have fewer than "
            f"{_MIN_ROWS_PER_CLASS * 2} rows ({len(y)} rows in all)"
        )


def fit_usecase(
    spec: UseCase,
    frame: pd.DataFrame,
    params: dict[str, Any] | None = None,
    progress: Progress = no_progress,
) -> TrainedModel:
    """Split, cross-validate, choose the threshold, fit and evaluate on the hold-out.

    Args:
        spec: The use case.
        frame: The training table (``store.read_training_frame``): features and target.
        params: Hyperparameters overriding the spec's.
        progress: Receives stage names and the fraction done.

    Raises:
        TrainingError: no data or too few rows of some class.
        SpecError: invalid hyperparameters.
    """
    seed = spec.training.seed
    classes = list(spec.target.classes)
    target = spec.target.name
    y_all = frame[target].astype(str)
    _check_rows(spec, y_all)
    X_all = frame[spec.feature_names]
    progress("splitting", 0.02)
    X_train, X_hold, y_train, y_hold = train_test_split(
        X_all, y_all, test_size=spec.training.test_size, stratify=y_all, random_state=seed
    )
    pipeline = build_pipeline(spec, params)
    folds = StratifiedKFold(n_splits=spec.training.cv_folds, shuffle=True, random_state=seed)
    oof = np.zeros((len(X_train), len(classes)))
    fold_scores: dict[str, list[float]] = {"roc_auc": [], "log_loss": [], "accuracy": []}
    plain = Decision(tuple(classes), spec.positive_class, 0.5 if spec.task == "binary" else None)
    for i, (fit_idx, val_idx) in enumerate(folds.split(X_train, y_train)):
        progress(f"cross-validation fold {i + 1}/{folds.n_splits}", 0.05 + 0.6 * i / folds.n_splits)
        model = clone(pipeline).fit(X_train.iloc[fit_idx], y_train.iloc[fit_idx])
        oof[val_idx] = _proba(model, X_train.iloc[val_idx], classes)
        fold = evaluate(spec, y_train.iloc[val_idx].to_numpy(), oof[val_idx], plain)
        for name in fold_scores:
            fold_scores[name].append(fold[name])
    progress("choosing the decision threshold", 0.66)
    threshold = None
    if spec.task == "binary":
        pos = classes.index(spec.target.positive or "")
        threshold = choose_threshold(spec, (y_train == classes[pos]).to_numpy(), oof[:, pos])
    decision = Decision(tuple(classes), spec.positive_class, threshold)
    cv_metrics = {f"{k}_mean": float(np.mean(v)) for k, v in fold_scores.items()}
    cv_metrics |= {f"{k}_std": float(np.std(v)) for k, v in fold_scores.items()}
    cv_metrics |= {
        f"oof_{k}": v
        for k, v in evaluate(spec, y_train.to_numpy(), oof, decision).items()
        if "." not in k
    }
    progress("fitting the final model", 0.7)
    pipeline.fit(X_train, y_train)
    progress("evaluating on the hold-out", 0.8)
    hold_proba = _proba(pipeline, X_hold, classes)
    holdout_metrics = evaluate(spec, y_hold.to_numpy(), hold_proba, decision)
    progress("feature importances", 0.85)
    importances = _importances(spec, pipeline, X_hold, y_hold)
    progress("baseline and leakage checks", 0.88)
    baseline = evaluate(spec, y_hold.to_numpy(), prior_proba(classes, y_train, len(y_hold)), plain)
    warnings = leakage_warnings(spec, frame)
    train_rows = X_train.assign(**{target: y_train})
    size = min(spec.training.reference_size, len(train_rows))
    reference = train_rows.sample(n=size, random_state=seed).sort_index()
    return TrainedModel(
        spec=spec,
        pipeline=pipeline,
        decision=decision,
        params={k: v for k, v in pipeline.named_steps["model"].get_params().items()},
        cv_metrics=cv_metrics,
        holdout_metrics=holdout_metrics,
        n_rows=len(frame),
        n_train=len(X_train),
        n_holdout=len(X_hold),
        data_sha256=data_hash(frame[[*spec.feature_names, target]]),
        reference=reference,
        holdout=X_hold.assign(**{target: y_hold}),
        holdout_proba=hold_proba,
        importances=importances,
        baseline_metrics=baseline,
        class_counts={c: int((y_all == c).sum()) for c in classes},
        warnings=warnings,
    )


def _importances(spec: UseCase, pipeline: Pipeline, X: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
    """Permutation importance of each input feature on the hold-out (any model family)."""
    scoring = "roc_auc" if spec.task == "binary" else "accuracy"
    result = permutation_importance(
        pipeline, X, y, scoring=scoring, n_repeats=5, random_state=spec.training.seed, n_jobs=1
    )
    frame = pd.DataFrame(
        {
            "feature": spec.feature_names,
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        }
    )
    return frame.sort_values("importance_mean", ascending=False, kind="stable").reset_index(
        drop=True
    )
