"""One training run end to end: read the table, fit, log to MLflow, gate, check, set the alias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from tabops.errors import TabopsError
from tabops.lifecycle.gate import check_version, gate_decision
from tabops.lifecycle.registry import Registry
from tabops.monitoring.rule import DriftParams
from tabops.spec.schema import UseCase
from tabops.store.training_tables import read_training_frame
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
    """Its hold-out metrics."""


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
    progress("logging to MLflow", 0.9)
    champion = registry.champion(spec.name)
    promote, reason = gate_decision(spec, trained.holdout_metrics, champion, force=force)
    logged = registry.log(trained, extra_tags={"tabops.gate": reason})
    run_id, version = logged.run_id, logged.version
    if promote:
        progress("checking the new version", 0.95)

        try:
            # loaded back from the logged artifact: score its reference sample
            check_version(logged)
        except TabopsError as exc:
            promote, reason = False, f"not promoted: sanity check failed: {exc}"
    if promote:
        registry.set_alias(spec.name, version)
    progress("done", 1.0)
    return TrainingOutcome(
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
        champion_metrics=champion.holdout_metrics if champion is not None else None,
    )
