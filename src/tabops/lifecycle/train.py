"""One training run end to end: read the table, fit, log to MLflow, gate, check, set the alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from tabops.errors import TabopsError
from tabops.lifecycle.gate import check_version, gate_decision, rescore_champion
from tabops.lifecycle.registry import Registry
from tabops.monitoring.rule import DriftParams
from tabops.spec.schema import UseCase
from tabops.store.training_tables import read_training_frame
from tabops.training.card import model_card
from tabops.training.fit import Progress, fit_usecase, no_progress


@dataclass(frozen=True)
class TrainingOutcome:
    """What a training run produced and whether its version became champion."""

    usecase: str
    run_id: str
    version: str
    promoted: bool
    reason: str
    holdout_metrics: dict[str, float]
    cv_metrics: dict[str, float]
    threshold: float | None
    n_rows: int
    data_sha256: str
    champion_version: str | None = None
    """The champion the new version was compared with."""
    champion_metrics: dict[str, float] | None = None
    """Its metrics on the new version's hold-out rows (or, when it could not be re-scored
    on them, its own recorded hold-out metrics)."""
    baseline_metrics: dict[str, float] | None = None
    """The prior (majority-class) baseline on the same hold-out."""
    warnings: tuple[str, ...] = ()
    """Possible leakage found in the training rows."""


def train_usecase(
    spec: UseCase,
    engine: Engine,
    registry: Registry,
    *,
    force: bool = False,
    params: dict[str, Any] | None = None,
    progress: Progress = no_progress,
) -> TrainingOutcome:
    """Train on the current training table, register a version, and promote it to
    champion if it passes the gate (or ``force``).

    Raises:
        TrainingError: no data or too few rows of some class.
        SpecError: invalid hyperparameters, or drift tests the registry refuses.
    """
    DriftParams.from_spec(spec.monitoring)  # a version's spec is the one its drift runs on

    progress("reading the training table", 0.0)
    frame = read_training_frame(engine, spec)
    trained = fit_usecase(spec, frame, params=params, progress=progress)
    progress("scoring the champion on the same rows", 0.9)
    champion = registry.champion(spec.name)
    champion_metrics: dict[str, float] | None = None
    note = ""
    if champion is not None:
        try:
            loaded = registry.load(spec.name, champion.version)
            champion_metrics, note = rescore_champion(loaded, spec, trained.holdout)
        except TabopsError as exc:
            note = f"champion v{champion.version} could not be loaded: {exc}"
    promote, reason = gate_decision(
        spec,
        trained.holdout_metrics,
        champion,
        force=force,
        champion_metrics=champion_metrics,
        baseline=trained.baseline_metrics,
        n_rows=trained.n_holdout,
    )
    if note:
        reason = f"{reason} ({note})"
    progress("logging to MLflow", 0.92)
    gate_metrics = {f"baseline_{k}": v for k, v in trained.baseline_metrics.items() if "." not in k}
    if champion_metrics is not None:
        gate_metrics |= {f"gate_champion_{k}": v for k, v in champion_metrics.items()}
    tags = {"tabops.gate": reason}
    if champion is not None:
        tags["tabops.gate.champion"] = champion.version
    if trained.warnings:
        tags["tabops.warnings"] = "; ".join(trained.warnings)[:5000]
    logged = registry.log(trained, extra_tags=tags, extra_metrics=gate_metrics)
    run_id, version = logged.run_id, logged.version
    if promote:
        progress("checking the new version", 0.95)

        try:
            # loaded back from the logged artifact: score its reference sample
            check_version(logged)
        except TabopsError as exc:
            promote, reason = False, f"not promoted: sanity check failed: {exc}"
            registry.client.set_tag(run_id, "tabops.gate", reason)
    if promote:
        registry.set_alias(spec.name, version)
    if champion is not None and champion_metrics is None:
        champion_metrics = champion.holdout_metrics
    outcome = TrainingOutcome(
        usecase=spec.name,
        run_id=run_id,
        version=version,
        promoted=promote,
        reason=reason,
        holdout_metrics=trained.holdout_metrics,
        cv_metrics=trained.cv_metrics,
        threshold=trained.decision.threshold,
        n_rows=trained.n_rows,
        data_sha256=trained.data_sha256,
        champion_version=champion.version if champion is not None else None,
        champion_metrics=champion_metrics,
        baseline_metrics={k: v for k, v in trained.baseline_metrics.items() if "." not in k},
        warnings=tuple(trained.warnings),
    )
    registry.log_card(
        run_id,
        model_card(
            trained,
            version=version,
            run_id=run_id,
            promoted=promote,
            reason=reason,
            champion_version=outcome.champion_version,
            champion_metrics=champion_metrics,
        ),
    )
    progress("done", 1.0)
    return outcome
