"""Monitoring from the audit store: drift of recent live inputs against the champion's
reference, drift history, and live quality from feedback (measured) or from the model's
own probabilities (estimated, before labels arrive)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score
from sqlalchemy import Engine

from tabops.lifecycle.versions import LoadedModel
from tabops.monitoring.drift import DriftParams, DriftReport, compute_drift, histograms
from tabops.monitoring.influence import live_influence
from tabops.monitoring.stats import Histogram
from tabops.scoring.base import PipelineScorer
from tabops.scoring.records import reference_records
from tabops.store.monitoring import live_window, record_drift_run

__all__ = [
    "estimate_quality",
    "live_performance",
    "reference_outputs",
    "run_drift",
]


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
    influence = live_influence(engine, loaded, size)
    if influence["explanations"]:  # a section only when explained predictions exist
        report = dataclasses.replace(report, explanations=influence)
    hists = histograms(spec, loaded.reference, live[spec.feature_names], params=params)
    if store:
        record_drift_run(engine, report, size)
    return report, hists


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
    holdout = loaded.holdout_metrics if version == loaded.version else {}
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
