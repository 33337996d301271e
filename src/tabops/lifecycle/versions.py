"""Registered versions as the registry lists them and as it loads them, and the MLflow
metric keys their figures are kept under (``holdout_``, ``cv_``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from tabops.scoring.base import Decision
from tabops.scoring.records import api_records
from tabops.spec.schema import UseCase
from tabops.store.privacy import mask_example

_TAG = "tabops."  # prefix of the tags tabops sets on runs and versions
_HOLDOUT = "holdout_"


_CV = "cv_"


def holdout_key(metric: str) -> str:
    """The MLflow key of a hold-out metric (``holdout_roc_auc``)."""
    return f"{_HOLDOUT}{metric}"


def holdout_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The hold-out figures among a run's MLflow metrics, by plain name; per-class
    figures (``holdout_recall.bad``) left out."""
    return {
        k.removeprefix(_HOLDOUT): v
        for k, v in metrics.items()
        if k.startswith(_HOLDOUT) and "." not in k
    }


def cv_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The cross-validation figures among a run's MLflow metrics, by plain name."""
    return {k.removeprefix(_CV): v for k, v in metrics.items() if k.startswith(_CV)}


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered version as listed (no artifact loaded)."""

    usecase: str
    version: str
    run_id: str
    created_at: datetime
    aliases: list[str]
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    gate: str | None = None
    """The promotion decision recorded when it was trained."""

    @property
    def sha256(self) -> str | None:
        return self.tags.get(f"{_TAG}sha256")

    def holdout(self, metric: str) -> float | None:
        return self.metrics.get(holdout_key(metric))

    @property
    def holdout_metrics(self) -> dict[str, float]:
        return holdout_metrics(self.metrics)

    @property
    def cv_metrics(self) -> dict[str, float]:
        return cv_metrics(self.metrics)

    @property
    def n_rows(self) -> int | None:
        """Training rows the version was trained on."""
        value = self.tags.get(f"{_TAG}n_rows")
        return int(value) if value else None


@dataclass
class LoadedModel:
    """A verified, loaded model version with everything needed to serve it."""

    spec: UseCase
    pipeline: Any
    decision: Decision
    version: str
    run_id: str
    sha256: str
    metrics: dict[str, float]
    reference: pd.DataFrame
    n_rows: int | None = None
    """Training rows the version was trained on (its table may have grown since)."""
    importances: pd.DataFrame | None = None
    """The permutation importances logged with it (``feature``, ``importance_mean``), if
    any: the training side of the explanations' global view."""
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def holdout_metrics(self) -> dict[str, float]:
        return holdout_metrics(self.metrics)

    @property
    def cv_metrics(self) -> dict[str, float]:
        return cv_metrics(self.metrics)

    def example(self) -> dict[str, Any]:
        """A real record from the reference sample, as the API takes it (for the docs),
        with its ``pii`` features masked: the docs are public."""

        features = self.reference[self.spec.feature_names]
        complete = features.dropna()
        row = api_records(self.spec, (complete if not complete.empty else features).head(1))[0]
        return mask_example(self.spec, row, self.reference)
