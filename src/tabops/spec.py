"""The use-case spec: parse and validate ``usecase.yaml``, and derive everything from it.

The spec is the single list of model inputs. The API's request and response models
(:func:`record_model`, :func:`prediction_model`), the training table's columns
(``tabops.store.tables``) and the feature lists used in training all come from here.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from tabops.errors import FieldIssue, SpecError, UseCaseNotFoundError

__all__ = [
    "RESERVED_NAMES",
    "SPEC_FILENAME",
    "DataSource",
    "DecisionSpec",
    "DeriveTarget",
    "EntityId",
    "Feature",
    "FeatureType",
    "GateSpec",
    "ModelSpec",
    "RetrainPolicy",
    "MonitoringSpec",
    "TargetSpec",
    "TrainingSpec",
    "UseCase",
    "dump_spec",
    "list_usecases",
    "load_spec",
    "load_usecase",
    "parse_spec",
    "prediction_model",
    "record_model",
]

SPEC_FILENAME = "usecase.yaml"
FeatureType = Literal["number", "integer", "category", "boolean"]
ModelFamily = Literal["logistic_regression", "random_forest", "hist_gradient_boosting"]
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
    """Make a binary target from a numeric column: ``>= threshold`` is the positive class."""

    column: str
    threshold: float
    negative: str


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

    @property
    def source(self) -> str:
        return self.column or self.name


class EntityId(_Strict):
    """An id column: enables predicting by id from the training table."""

    name: Identifier
    type: Literal["integer", "string"] = "string"
    column: str | None = None
    description: str = ""

    @property
    def source(self) -> str:
        return self.column or self.name


class DataSource(_Strict):
    """Where the seed data comes from."""

    files: list[str] = Field(min_length=1)
    """CSV files (optionally .gz), relative to ``dir``; several are concatenated."""
    dir: str | None = None
    """Folder of the files (default: the use case's folder);
    ``TABOPS_DATA_DIRS__<NAME>`` overrides it."""
    separator: str = ","
    download: str | None = None
    """Where a user gets the files when they are not shipped."""
    provenance: str = ""


class ModelSpec(_Strict):
    """Model family and its hyperparameters."""

    family: ModelFamily = "logistic_regression"
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
        if derive is not None:
            if self.task != "binary":
                raise ValueError("target.derive makes a binary target; task must be binary")
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


def _loc_to_field(raw: Any, loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as ``features[3] (Age).max``, naming list items when possible."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            try:
                node = node[item]
                if isinstance(node, dict) and "name" in node:
                    label += f" ({node['name']})"
            except (IndexError, KeyError, TypeError):
                node = None
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def parse_spec(raw: Any, source: str = "<spec>") -> UseCase:
    """Validate a spec given as a mapping.

    Args:
        raw: The parsed YAML document.
        source: Where it came from, for error messages.

    Returns:
        The validated use case.

    Raises:
        SpecError: naming the source, the field and the reason of each problem.
    """
    if not isinstance(raw, dict):
        raise SpecError(
            f"invalid use-case spec {source}",
            [FieldIssue("(top level)", "must be a mapping of fields")],
        )
    try:
        return UseCase.model_validate(raw)
    except ValidationError as exc:
        details = []
        for err in exc.errors():
            field = _loc_to_field(raw, tuple(err["loc"]))
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                reason = "unknown field"
            details.append(FieldIssue(field, reason))
        raise SpecError(f"invalid use-case spec {source}", details) from None


def load_spec(path: Path) -> UseCase:
    """Read and validate a ``usecase.yaml`` file.

    Raises:
        SpecError: the file is missing, is not YAML, or is not a valid spec.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read use-case spec {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"invalid YAML in {path}{where}: {problem}") from None
    spec = parse_spec(raw, str(path))
    if spec.name != path.parent.name:
        raise SpecError(
            f"invalid use-case spec {path}",
            [FieldIssue("name", f"'{spec.name}' must match its folder name '{path.parent.name}'")],
        )
    return spec


def list_usecases(usecases_dir: Path) -> list[str]:
    """Names of the use cases found in a folder, sorted."""
    if not usecases_dir.is_dir():
        return []
    return sorted(p.parent.name for p in usecases_dir.glob(f"*/{SPEC_FILENAME}"))


def load_usecase(usecases_dir: Path, name: str) -> UseCase:
    """Load the spec of the use case ``name`` from ``usecases_dir``.

    Raises:
        UseCaseNotFoundError: there is no such use case.
        SpecError: its spec is invalid.
    """
    path = usecases_dir / name / SPEC_FILENAME
    if not _IDENTIFIER.match(name) or not path.is_file():
        known = ", ".join(list_usecases(usecases_dir)) or "none"
        raise UseCaseNotFoundError(f"unknown use case '{name}' (known: {known})")
    return load_spec(path)


def dump_spec(spec: UseCase) -> str:
    """The spec as YAML (what is logged with each model version)."""
    data = spec.model_dump(mode="json", exclude_defaults=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# --- derived API models -------------------------------------------------------------


def _class_name(spec: UseCase) -> str:
    return "".join(part.capitalize() for part in spec.name.split("_"))


def _integral(value: Any) -> Any:
    """An integral float as the int it is (exactly representable ones only)."""
    if type(value) is float and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _feature_annotation(feature: Feature) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {}
    desc = feature.description
    if feature.unit:
        desc = f"{desc} ({feature.unit})" if desc else feature.unit
    if desc:
        kwargs["description"] = desc
    ann: Any
    if feature.type == "category":
        ann = Literal[tuple(feature.values or ())]
    elif feature.type == "boolean":
        ann = bool
    else:
        bounds: dict[str, Any] = {}
        if feature.min is not None:
            bounds["ge"] = feature.min if feature.type == "number" else math.ceil(feature.min)
        if feature.max is not None:
            bounds["le"] = feature.max if feature.type == "number" else math.floor(feature.max)
        if feature.type == "number":
            ann = float
            kwargs.update(bounds, allow_inf_nan=False)
        else:
            # JSON has one number type: 66370.0 is the integer 66370 (JSON Schema says so
            # too). The bounds go inside, so the schema of an optional one keeps them.
            ann = Annotated[int, Field(**bounds), BeforeValidator(_integral)]
    if feature.required:
        return ann, Field(..., **kwargs)
    return ann | None, Field(None, **kwargs)


def record_model(spec: UseCase, example: dict[str, Any] | None = None) -> type[BaseModel]:
    """The pydantic model of one input record: fields, types, bounds and allowed values.

    Unknown fields, values of the wrong JSON type, NaN and infinity are refused.

    Args:
        spec: The use case.
        example: A record shown in the OpenAPI docs, normally taken from the data.
    """
    fields = {f.name: _feature_annotation(f) for f in spec.features}
    extra: dict[str, Any] = {"examples": [example]} if example else {}
    config = ConfigDict(
        extra="forbid",
        strict=True,
        title=f"{_class_name(spec)}Record",
        json_schema_extra=extra,
    )
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{_class_name(spec)}Record",
        __config__=config,
        __doc__=f"One {spec.title} case to score.",
        **fields,
    )
    return model


def prediction_model(spec: UseCase) -> type[BaseModel]:
    """The pydantic model of one prediction in a response (for the OpenAPI docs)."""
    labels: Any = Literal[tuple(spec.target.classes)]
    optional_float: Any = float | None
    model: type[BaseModel] = create_model(
        f"{_class_name(spec)}Prediction",
        __doc__=f"The model's answer for one {spec.title} case.",
        prediction_id=(str, Field(description="Id of this prediction, for feedback and audit")),
        label=(labels, Field(description=f"Predicted {spec.target.name}")),
        probabilities=(
            dict[str, float],
            Field(description=f"Probability of each class: {', '.join(spec.target.classes)}"),
        ),
        threshold=(
            optional_float,
            Field(description="Probability of the positive class from which it is predicted"),
        ),
        model_version=(str, Field(description="Registered model version that answered")),
    )
    return model
