"""Monitoring from the audit store: drift of recent live inputs against the champion's
reference, drift history, and live quality from feedback (measured) or from the model's
own probabilities (estimated, before labels arrive)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score
from sqlalchemy import Engine, and_, select

from tabops.lifecycle.registry import LoadedModel
from tabops.monitoring.drift import DriftParams, DriftReport, compute_drift, histograms
from tabops.monitoring.stats import Histogram
from tabops.scoring.base import PipelineScorer
from tabops.scoring.records import reference_records
from tabops.store.queries import latest_actual
from tabops.store.schema import drift_runs, predictions

__all__ = [
    "drift_history",
    "estimate_quality",
    "live_performance",
    "live_window",
    "reference_outputs",
    "run_drift",
]


def live_window(
    engine: Engine, usecase: str, model_version: str | None, window: int
) -> pd.DataFrame:
    """The most recent served (non-shadow) predictions: features, score, label, latest
    feedback (``actual``), oldest first."""
    actual = latest_actual(predictions.c.id)
    conds = [predictions.c.usecase == usecase, predictions.c.shadow.is_(False)]
    if model_version is not None:
        conds.append(predictions.c.model_version == model_version)
    query = (
        select(
            predictions.c.id,
            predictions.c.model_version,
            predictions.c.features,
            predictions.c.probabilities,
            predictions.c.score,
            predictions.c.label,
            actual.label("actual"),
        )
        .where(and_(*conds))
        .order_by(predictions.c.id.desc())
        .limit(window)
    )
    with engine.connect() as conn:
        rows = list(conn.execute(query).all())
    rows.reverse()
    frame = pd.DataFrame([r.features for r in rows])
    frame["_id"] = [r.id for r in rows]
    frame["_version"] = [r.model_version for r in rows]
    frame["_probabilities"] = [r.probabilities for r in rows]
    frame["_score"] = [r.score for r in rows]
    frame["_label"] = [r.label for r in rows]
    frame["_actual"] = [r.actual for r in rows]
    return frame


def reference_outputs(loaded: LoadedModel) -> tuple[np.ndarray, list[str]]:
    """The model's scores and labels on its own reference sample (the drift baseline of
    the score and label-mix checks)."""

    records = reference_records(loaded.spec, loaded.reference)[: len(loaded.reference)]
    scores = PipelineScorer(loaded.spec, loaded.pipeline, loaded.decision, loaded.version).score(
        records
    )
    return scores.positive_scores(loaded.decision.positive_index), scores.labels


def run_drift(
    engine: Engine, loaded: LoadedModel, window: int | None = None, store: bool = True
) -> tuple[DriftReport, dict[str, Histogram]]:
    """Compare the last ``window`` live inputs of the loaded version with its reference,
    and record the run in ``drift_runs``.

    Returns:
        The report (tier, per-feature results) and the per-feature histograms.
    """
    spec = loaded.spec
    size = window or spec.monitoring.window
    live = live_window(engine, spec.name, loaded.version, size)
    for name in spec.feature_names:
        if name not in live.columns:
            live[name] = None
    ref_scores, ref_labels = reference_outputs(loaded)
    params = DriftParams.from_spec(spec.monitoring)
    report = compute_drift(
        spec,
        loaded.reference,
        live[spec.feature_names],
        reference_scores=ref_scores,
        live_scores=live["_score"].to_numpy(dtype=float) if len(live) else np.array([]),
        reference_labels=ref_labels,
        live_labels=list(live["_label"]),
        model_version=loaded.version,
        params=params,
    )
    hists = histograms(spec, loaded.reference, live[spec.feature_names], params=params)
    if store:
        with engine.begin() as conn:
            conn.execute(
                drift_runs.insert(),
                {
                    "created_at": datetime.now(UTC),
                    "usecase": spec.name,
                    "model_version": loaded.version,
                    "window_size": size,
                    "n_live": report.n_live,
                    "tier": report.tier,
                    "level": report.level,
                    "n_drifted": report.n_drifted,
                    "report": report.as_dict(),
                },
            )
    return report, hists


def drift_history(engine: Engine, usecase: str, limit: int = 100) -> list[dict[str, Any]]:
    """Stored drift runs, newest first (without their per-feature detail)."""
    query = (
        select(
            drift_runs.c.id,
            drift_runs.c.created_at,
            drift_runs.c.model_version,
            drift_runs.c.window_size,
            drift_runs.c.n_live,
            drift_runs.c.tier,
            drift_runs.c.level,
            drift_runs.c.n_drifted,
        )
        .where(drift_runs.c.usecase == usecase)
        .order_by(drift_runs.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        if row["created_at"].tzinfo is None:
            row["created_at"] = row["created_at"].replace(tzinfo=UTC)
    return rows


def estimate_quality(
    probabilities: np.ndarray, labels: list[str], classes: list[str], positive: str | None
) -> dict[str, float]:
    """Accuracy and F1 expected from calibrated probabilities alone (confidence-based
    performance estimation, as NannyML's CBPE): each prediction is right with the
    probability the model gave its label.

    Args:
        probabilities: ``(n, k)`` class probabilities, columns in ``classes`` order.
        labels: The predicted labels.
        classes: The classes.
        positive: The positive class (binary), or None.
    """
    index = {c: i for i, c in enumerate(classes)}
    p_label = np.array([probabilities[i, index[label]] for i, label in enumerate(labels)])
    out = {"accuracy": float(p_label.mean())}
    if positive is not None:
        p_pos = probabilities[:, index[positive]]
        predicted = np.array([label == positive for label in labels])
        tp = p_pos[predicted].sum()
        fp = (1 - p_pos[predicted]).sum()
        fn = p_pos[~predicted].sum()
        out["f1"] = float(2 * tp / max(2 * tp + fp + fn, 1e-12))
    return out


def live_performance(
    engine: Engine, loaded: LoadedModel, window: int | None = None, model_version: str | None = None
) -> dict[str, Any]:
    """Live quality of a version over its recent predictions: measured where feedback
    exists (accuracy, F1, ROC AUC, Brier score and a calibration table), estimated from
    probabilities for all of them (CBPE), beside the hold-out figures."""
    spec = loaded.spec
    version = model_version or loaded.version
    live = live_window(engine, spec.name, version, window or spec.monitoring.window)
    classes = list(spec.target.classes)
    positive = spec.target.positive if spec.task == "binary" else None
    holdout = (
        {
            k.removeprefix("holdout_"): v
            for k, v in loaded.metrics.items()
            if k.startswith("holdout_") and "." not in k
        }
        if version == loaded.version
        else {}
    )
    out: dict[str, Any] = {
        "usecase": spec.name,
        "model_version": version,
        "n_predictions": int(len(live)),
        "n_labelled": 0,
        "measured": None,
        "estimated": None,
        "holdout": holdout,
    }
    if live.empty:
        return out
    proba = np.array([[p.get(c, 0.0) for c in classes] for p in live["_probabilities"]])
    out["estimated"] = estimate_quality(proba, list(live["_label"]), classes, positive)
    labelled = live[live["_actual"].notna()]
    out["n_labelled"] = int(len(labelled))
    if labelled.empty:
        return out
    y_true, y_pred = (
        labelled["_actual"].astype(str).to_numpy(),
        labelled["_label"].astype(str).to_numpy(),
    )
    measured: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred))}
    if positive is not None:
        measured["f1"] = float(f1_score(y_true, y_pred, pos_label=positive, zero_division=0))
        truth = y_true == positive
        p_pos = proba[live["_actual"].notna().to_numpy(), classes.index(positive)]
        measured["brier"] = float(brier_score_loss(truth, p_pos))
        if truth.any() and not truth.all():
            measured["roc_auc"] = float(roc_auc_score(truth, p_pos))
        edges = np.linspace(0, 1, 11)
        bins = np.clip(np.digitize(p_pos, edges[1:-1]), 0, 9)
        measured["calibration"] = [
            {
                "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                "n": int((bins == b).sum()),
                "mean_predicted": float(p_pos[bins == b].mean()),
                "observed_rate": float(truth[bins == b].mean()),
            }
            for b in range(10)
            if (bins == b).any()
        ]
    else:
        measured["f1"] = float(
            f1_score(y_true, y_pred, average="macro", labels=classes, zero_division=0)
        )
    out["measured"] = measured
    return out
