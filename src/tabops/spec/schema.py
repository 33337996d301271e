"""The use-case spec: parse and validate ``usecase.yaml``, and derive everything from it.

The spec is the single list of model inputs. The API's request and response models
(:func:`record_model`, :func:`prediction_model`), the training table's columns
(``tabops.store.training_tables``) and the feature lists used in training all come from here.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tabops.spec.sources import DataSource
from tabops.training.estimators import FamilyName

__all__ = [
    "RESERVED_NAMES",
    "DecisionSpec",
    "DeriveTarget",
    "EntityId",
    "FamilyName",
    "Feature",
    "FeatureType",
    "GateSpec",
    "ModelSpec",
    "RetrainPolicy",
    "MonitoringSpec",
    "TargetSpec",
    "TrainingSpec",
    "UseCase",
]

FeatureType = Literal["number", "integer", "category", "boolean"]
GATE_METRICS = {
    "roc_auc": "max",
    "accuracy": "max",
    "balanced_accuracy": "max",
    "f1": "max",
    "precision": "max",
    "recall": "max",
    "log_loss": "min",
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_NAMES = frozenset({"records", "prediction_id", "model_version"})
Identifier = Annotated[
    str,
    Field(
        pattern=_IDENTIFIER.pattern,
        max_length=63,
        description="letters, digits and _; not starting with a digit",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One model input."""

    name: Identifier
    """API field and table column name."""
    type: FeatureType
    title: str | None = Field(default=None, min_length=1, max_length=80)
    """A short name in words, for reasons and labels (default: from ``name``)."""
    description: str = ""
    unit: str | None = None
    min: float | None = None
    """Smallest accepted value (numbers and integers)."""
    max: float | None = None
    """Largest accepted value (numbers and integers)."""
    values: list[str] | None = None
    """Allowed values (categories only)."""
    required: bool = True
    """False: the value may be missing; training imputes it (see README, missing values)."""
    pii: bool = False
    """Personal data: pseudonymised in the audit log."""
    column: str | None = None
    """Column in the source CSV, when it differs from ``name``."""

    @model_validator(mode="after")
    def _check_type_fields(self) -> Feature:
        numeric = self.type in ("number", "integer")
        if self.type == "category":
            if not self.values:
                raise ValueError("a category feature needs a non-empty 'values' list")
            if len(set(self.values)) != len(self.values):
                raise ValueError("'values' has duplicates")
        elif self.values is not None:
            raise ValueError(f"'values' is only for category features, not {self.type}")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(
                f"'min'/'max' are only for number and integer features, not {self.type}"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("bounds must be finite numbers")
        if self.name.lower() in RESERVED_NAMES:
            raise ValueError(f"'{self.name}' is a reserved name")
        return self

    @property
    def source(self) -> str:
        """The column read from the source CSV."""
        return self.column or self.name


class DeriveTarget(_Strict):
    """Make the target from another column: a numeric ``threshold`` (``>= threshold`` is
    the positive class, anything below ``negative``), or a ``map`` from each of the
    column's values to a class."""

    column: str
    threshold: float | None = None
    negative: str | None = None
    """The class of values below ``threshold``."""
    map: dict[str, str] | None = None
    """Every value of ``column`` and the class it stands for; another value is an error."""

    @model_validator(mode="after")
    def _one_rule(self) -> DeriveTarget:
        if (self.threshold is None) == (self.map is None):
            raise ValueError("give either 'threshold' (with 'negative') or 'map'")
        if self.threshold is not None and self.negative is None:
            raise ValueError("a 'threshold' needs 'negative', the class below it")
        if self.map is not None and self.negative is not None:
            raise ValueError("'negative' goes with 'threshold'; a 'map' names every class")
        if self.map is not None and not self.map:
            raise ValueError("'map' must not be empty")
        return self


class TargetSpec(_Strict):
    """What is predicted."""

    name: Identifier
    classes: list[str] = Field(min_length=2)
    """Every class, as it appears in the data."""
    positive: str | None = None
    """The positive class (binary tasks)."""
    column: str | None = None
    """Column in the source CSV, when it differs from ``name``."""
    derive: DeriveTarget | None = None
    description: str = ""
    labels: dict[str, str] = {}
    """Display labels of classes for people (the UI): ``{"bad": "Refused"}``. The API and
    the audit trail keep the class names."""

    @model_validator(mode="after")
    def _check_labels(self) -> TargetSpec:
        unknown = sorted(set(self.labels) - set(self.classes))
        if unknown:
            raise ValueError(f"labels given for unknown classes: {', '.join(unknown)}")
        return self

    @property
    def source(self) -> str:
        return self.column or self.name

    def display(self, cls: str) -> str:
        """The display label of a class (its name when the spec gives none)."""
        return self.labels.get(cls, cls)


class EntityId(_Strict):
    """An id column: enables predicting by id from the training table."""

    name: Identifier
    type: Literal["integer", "string"] = "string"
    column: str | None = None
    description: str = ""

    @property
    def source(self) -> str:
        return self.column or self.name


class ModelSpec(_Strict):
    """Model family and its hyperparameters."""

    family: FamilyName = "logistic_regression"
    """One of the registered model families (``tabops.training.estimators.FAMILIES``)."""
    params: dict[str, Any] = {}


class CostMatrix(_Strict):
    false_positive: float = Field(default=1.0, ge=0)
    false_negative: float = Field(default=1.0, ge=0)


class DecisionSpec(_Strict):
    """How a binary label is decided from the positive-class probability."""

    policy: Literal["fixed", "max_f1", "min_cost"] = "fixed"
    threshold: float = Field(default=0.5, gt=0, lt=1)
    """The threshold of the ``fixed`` policy."""
    costs: CostMatrix = CostMatrix()
    """Costs of the ``min_cost`` policy."""


class GateSpec(_Strict):
    """When a new version may replace the champion."""

    metric: str = "roc_auc"
    margin: float = Field(default=0.0, ge=0)
    """The new version must beat the champion by at least this much."""
    baseline_margin: float = Field(default=0.02, ge=0)
    """A first version must beat the prior (majority-class) baseline by at least this much."""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in GATE_METRICS:
            raise ValueError(f"unknown metric '{v}'; one of {', '.join(sorted(GATE_METRICS))}")
        return v

    @property
    def higher_is_better(self) -> bool:
        return GATE_METRICS[self.metric] == "max"


class TrainingSpec(_Strict):
    test_size: float = Field(default=0.2, gt=0, lt=0.5)
    cv_folds: int = Field(default=5, ge=2, le=20)
    seed: int = 42
    reference_size: int = Field(default=1000, ge=10)
    """Rows of the training split kept with the model as the drift reference."""


class MonitoringSpec(_Strict):
    window: int = Field(default=500, ge=10)
    """Recent predictions compared with the reference."""
    min_rows: int = Field(default=100, ge=1)
    """Fewer live rows than this give 'insufficient data'."""
    p_value: float = Field(default=0.01, gt=0, lt=1)
    psi_threshold: float = Field(default=0.2, gt=0)
    watch_at: int = Field(default=1, ge=1)
    """Drifted features from which the tier is 'watch'."""
    retrain_at: int = Field(default=3, ge=1)
    """Drifted features from which the tier is 'retrain'."""
    drift_tests: dict[FeatureType | Literal["score", "label"], list[str]] = {}
    """Drift tests run per kind, by name (``tabops.monitoring.drift.DRIFT_TESTS``): one
    hypothesis test and any effect sizes, e.g. ``number: [ks, psi, wasserstein]``. A kind
    not listed runs the defaults (KS or chi-square, PSI, Jensen-Shannon distance)."""
    thresholds: dict[str, float] = {}
    """Thresholds of further effect sizes, by test name; one reached (with a significant
    test) is drift, as ``psi_threshold`` is for PSI. Without one an effect size is
    reported only."""


class RetrainPolicy(_Strict):
    """When the server starts a training job by itself (the gate still decides promotion)."""

    on_drift_tier: Literal["watch", "retrain"] | None = "retrain"
    """Start a job when drift reaches this tier (None: drift never triggers)."""
    on_quality_drop: float | None = Field(default=None, gt=0, lt=1)
    """Start a job when measured live accuracy falls this far below the hold-out's."""
    min_labelled: int = Field(default=50, ge=1)
    """Feedback rows needed before live accuracy may trigger."""
    min_new_rows: int = Field(default=0, ge=0)
    """Rows the training table must have gained since the champion was trained."""
    cooldown_hours: float = Field(default=24.0, ge=0)
    """Least time between two automatic jobs of the use case."""


class UseCase(_Strict):
    """A parsed, validated ``usecase.yaml``."""

    name: Identifier
    title: str
    description: str = ""
    task: Literal["binary", "multiclass"]
    target: TargetSpec
    entity_id: EntityId | None = None
    features: list[Feature] = Field(min_length=1)
    data: DataSource
    model: ModelSpec = ModelSpec()
    decision: DecisionSpec = DecisionSpec()
    gate: GateSpec = GateSpec()
    training: TrainingSpec = TrainingSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    retrain: RetrainPolicy | None = None
    """Optional: retrain automatically on drift or a drop in live quality."""
    explain: Literal["always", "on_request", "never"] = "on_request"
    """Per-prediction explanations: with every prediction, when a request asks, or never."""

    @model_validator(mode="after")
    def _check_consistency(self) -> UseCase:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {', '.join(dupes)}")
        others = {self.target.name} | ({self.entity_id.name} if self.entity_id else set())
        clash = others & set(names)
        if clash:
            raise ValueError(f"{', '.join(sorted(clash))} is both a feature and the target or id")
        classes = self.target.classes
        if len(set(classes)) != len(classes):
            raise ValueError("target.classes has duplicates")
        if self.task == "binary":
            if len(classes) != 2:
                raise ValueError(
                    f"a binary task needs exactly 2 target classes, got {len(classes)}"
                )
            if self.target.positive not in classes:
                raise ValueError(f"target.positive must be one of target.classes {classes}")
        elif self.decision.policy != "fixed":
            raise ValueError("decision policies other than 'fixed' apply to binary tasks only")
        derive = self.target.derive
        if derive is not None and derive.map is not None:
            unknown = sorted(set(derive.map.values()) - set(classes))
            if unknown:
                raise ValueError(
                    f"target.derive.map gives classes not in target.classes: {unknown}"
                )
            unused = [c for c in classes if c not in derive.map.values()]
            if unused:
                raise ValueError(f"target.derive.map gives no value the class(es) {unused}")
        elif derive is not None:
            if self.task != "binary":
                raise ValueError(
                    "target.derive.threshold makes a binary target; task must be binary"
                )
            if derive.negative not in classes or derive.negative == self.target.positive:
                raise ValueError("target.derive.negative must be the class that is not positive")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def features_of(self, *types: str) -> list[Feature]:
        """The features of the given types, in spec order."""
        return [f for f in self.features if f.type in types]

    @property
    def positive_class(self) -> str | None:
        return self.target.positive if self.task == "binary" else None

    @property
    def negative_class(self) -> str | None:
        if self.task != "binary":
            return None
        return next(c for c in self.target.classes if c != self.target.positive)

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


# --- derived API models -------------------------------------------------------------
