"""Feature kinds: every rule that depends on a feature's type, one class per type.

A spec feature is a ``number``, an ``integer``, a ``category`` or a ``boolean``
(:data:`~tabops.spec.schema.FeatureType`). Each type's :class:`FeatureKind` owns what the
rest of tabops needs to know about it: the API field's annotation and bounds, the
columnar batch check, the CSV check and its typed column, the dtype the pipeline is
trained on, conversions between frames and API records, the training table's SQL type,
its preprocessing group in the pipeline and its family of drift tests. Code elsewhere
asks ``kind_of(feature)`` instead of comparing ``feature.type`` with a name.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BeforeValidator, Field
from sqlalchemy import BigInteger, Boolean, Float, String
from sqlalchemy.types import TypeEngine

from tabops.spec.schema import Feature, FeatureType

__all__ = [
    "KINDS",
    "BooleanKind",
    "CategoryKind",
    "ColumnCheck",
    "DriftKind",
    "FeatureKind",
    "Flag",
    "IntegerKind",
    "NumberKind",
    "PipelineGroup",
    "kind_of",
]

ColumnCheck = Callable[[list[Any]], bool]
"""Accepts a column of JSON values as sent (see :mod:`tabops.scoring.columnar`)."""
Flag = Callable[[npt.NDArray[np.bool_], str], None]
"""Reports the cells a mask marks; ``{}`` in the reason is replaced by the cell's text."""
DriftKind = Literal["numeric", "categorical"]
PipelineGroup = Literal["numeric", "category"]

_NONE = type(None)
_TRUE = frozenset({"1", "1.0", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "0.0", "false", "no", "n", "f"})


class FeatureKind(ABC):
    """The rules of one feature type. Subclasses are stateless; use :func:`kind_of`."""

    name: ClassVar[FeatureType]
    drift: ClassVar[DriftKind]
    """Which drift tests apply: distribution tests of numbers, or of category counts."""
    drift_booleans: ClassVar[bool] = False
    """Drift reads values as the labels ``"True"``/``"False"`` (from bools, 0/1 or text)."""
    pipeline: ClassVar[PipelineGroup]
    """Preprocessing in training: imputed and scaled numbers, or one-hot categories."""

    @abstractmethod
    def annotation(self, feature: Feature) -> tuple[Any, dict[str, Any]]:
        """The API field's type and its ``pydantic.Field`` constraints."""
        raise NotImplementedError

    @abstractmethod
    def column_check(self, feature: Feature) -> ColumnCheck:
        """A check that accepts a column only when every value is valid as sent."""
        raise NotImplementedError

    def from_json(self, values: list[Any]) -> list[Any] | None:
        """The column as the record model gives it, or None when it needs no change."""
        return None

    @abstractmethod
    def read_text(self, feature: Feature, text: pd.Series, flag: Flag) -> pd.Series:
        """Check a column of stripped CSV text (NA where missing) and return it typed."""
        raise NotImplementedError

    def training_column(self, column: pd.Series) -> pd.Series:
        """A typed column as scikit-learn is fed it (NaN for missing values)."""
        return pd.to_numeric(column.astype("Float64"), errors="coerce").astype("float64")

    def frame_column(self, values: list[Any]) -> npt.NDArray[Any]:
        """API values (None for missing) as the training frame holds them."""
        return np.array([np.nan if v is None else float(v) for v in values], dtype=float)

    @abstractmethod
    def api_value(self, value: Any) -> Any:
        """A present value of a typed frame as the API passes it."""
        raise NotImplementedError

    @abstractmethod
    def sql_type(self, feature: Feature) -> TypeEngine[Any]:
        """The training table's column type."""
        raise NotImplementedError

    def value_of(self, feature: Feature, text: str) -> tuple[bool, Any]:
        """A value typed on a command line (``tabops simulate --drift FEATURE=VALUE``).

        Returns:
            ``(True, value)`` for a value to set, ``(False, None)`` for a kind whose
            changes are arithmetic (+2sd, *1.2, +100) rather than values.

        Raises:
            ValueError: not a value of this feature (the message says what is).
        """
        return False, None


def _bounded(low: float | None, high: float | None) -> ColumnCheck:
    def within(values: list[Any]) -> bool:
        if low is not None and min(values) < low:
            return False
        return high is None or max(values) <= high

    return within


def _numeric_check(
    feature: Feature, types: frozenset[type], low: float | None, high: float | None
) -> ColumnCheck:
    within = _bounded(low, high)
    allowed = types if feature.required else types | {_NONE}

    def check(values: list[Any]) -> bool:
        if not set(map(type, values)) <= allowed:
            return False
        present = [v for v in values if v is not None] if not feature.required else values
        # NaN and infinity are refused; a huge integer raises OverflowError, caught by the caller
        if not all(map(math.isfinite, present)):
            return False
        return not present or within(present)

    return check


def _read_numbers(
    feature: Feature, text: pd.Series, flag: Flag, *, whole: bool = False
) -> npt.NDArray[np.float64]:
    """Check numeric text (``whole``: integers); the values as floats, NaN where missing."""
    values: npt.NDArray[np.float64] = pd.to_numeric(text, errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    missing = text.isna().to_numpy()
    flag(~missing & np.isnan(values), "'{}' is not a number")
    flag(np.isinf(values), "'{}' is not a finite number")
    finite = np.isfinite(values)
    if whole:
        flag(finite & (values != np.round(values)), "'{}' is not a whole number")
    if feature.min is not None:
        flag(finite & (values < feature.min), f"'{{}}' is below the minimum {feature.min:g}")
    if feature.max is not None:
        flag(finite & (values > feature.max), f"'{{}}' is above the maximum {feature.max:g}")
    return values


class NumberKind(FeatureKind):
    """Real numbers: JSON numbers (integers become floats), finite, within min/max."""

    name = "number"
    drift = "numeric"
    pipeline = "numeric"

    def annotation(self, feature: Feature) -> tuple[Any, dict[str, Any]]:
        bounds = {"ge": feature.min, "le": feature.max, "allow_inf_nan": False}
        return float, {k: v for k, v in bounds.items() if v is not None}

    def column_check(self, feature: Feature) -> ColumnCheck:
        return _numeric_check(feature, frozenset({int, float}), feature.min, feature.max)

    def from_json(self, values: list[Any]) -> list[Any] | None:
        # the record model gives floats for numbers sent as JSON integers
        if int not in set(map(type, values)):
            return None
        return [float(v) if type(v) is int else v for v in values]

    def read_text(self, feature: Feature, text: pd.Series, flag: Flag) -> pd.Series:
        values = _read_numbers(feature, text, flag)
        return pd.Series(np.where(np.isfinite(values), values, np.nan), index=text.index)

    def api_value(self, value: Any) -> Any:
        return float(value)

    def sql_type(self, feature: Feature) -> TypeEngine[Any]:
        return Float()


def _integral(value: Any) -> Any:
    """An integral float as the int it is (exactly representable ones only)."""
    if type(value) is float and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


class IntegerKind(FeatureKind):
    """Whole numbers: JSON integers within ``ceil(min)`` and ``floor(max)``."""

    name = "integer"
    drift = "numeric"
    pipeline = "numeric"

    @staticmethod
    def _bounds(feature: Feature) -> tuple[int | None, int | None]:
        low = math.ceil(feature.min) if feature.min is not None else None
        high = math.floor(feature.max) if feature.max is not None else None
        return low, high

    def annotation(self, feature: Feature) -> tuple[Any, dict[str, Any]]:
        low, high = self._bounds(feature)
        # JSON has one number type: 66370.0 is the integer 66370 (JSON Schema says so too).
        # The bounds go inside, so the schema of an optional one keeps them.
        return Annotated[int, Field(ge=low, le=high), BeforeValidator(_integral)], {}

    def column_check(self, feature: Feature) -> ColumnCheck:
        return _numeric_check(feature, frozenset({int}), *self._bounds(feature))

    def read_text(self, feature: Feature, text: pd.Series, flag: Flag) -> pd.Series:
        values = _read_numbers(feature, text, flag, whole=True)
        finite = np.isfinite(values)
        rounded = np.where(finite, np.round(values), np.nan)
        return pd.Series(pd.array(rounded, dtype="Float64"), index=text.index).astype("Int64")

    def api_value(self, value: Any) -> Any:
        return int(round(float(value)))

    def sql_type(self, feature: Feature) -> TypeEngine[Any]:
        return BigInteger()


class CategoryKind(FeatureKind):
    """One of the spec's ``values``, as a string."""

    name = "category"
    drift = "categorical"
    pipeline = "category"

    def annotation(self, feature: Feature) -> tuple[Any, dict[str, Any]]:
        return Literal[tuple(feature.values or ())], {}

    def column_check(self, feature: Feature) -> ColumnCheck:
        allowed: frozenset[str | None] = frozenset(feature.values or ())
        if not feature.required:
            allowed = allowed | {None}

        def check(values: list[Any]) -> bool:
            # only str values can equal the allowed strings; unhashable ones raise TypeError
            return set(values) <= allowed

        return check

    def read_text(self, feature: Feature, text: pd.Series, flag: Flag) -> pd.Series:
        missing = text.isna().to_numpy()
        bad = ~missing & ~text.isin(set(feature.values or ())).to_numpy()
        flag(bad, "'{}' is not one of the allowed values")
        return text.astype(object).where(~missing, None)

    def training_column(self, column: pd.Series) -> pd.Series:
        return column.astype(object).where(column.notna(), np.nan)

    def frame_column(self, values: list[Any]) -> npt.NDArray[Any]:
        return np.array([np.nan if v is None else v for v in values], dtype=object)

    def api_value(self, value: Any) -> Any:
        return str(value)

    def sql_type(self, feature: Feature) -> TypeEngine[Any]:
        return String(max(len(v) for v in feature.values or [""]) or 1)

    def value_of(self, feature: Feature, text: str) -> tuple[bool, Any]:
        if text not in (feature.values or []):
            raise ValueError(f"{feature.name} takes {', '.join(feature.values or [])}")
        return True, text


class BooleanKind(FeatureKind):
    """JSON true/false; in CSV also yes/no, 1/0, t/f (any case). Trained as 0/1."""

    name = "boolean"
    drift = "categorical"
    drift_booleans = True
    pipeline = "numeric"

    def annotation(self, feature: Feature) -> tuple[Any, dict[str, Any]]:
        return bool, {}

    def column_check(self, feature: Feature) -> ColumnCheck:
        allowed = frozenset({bool}) if feature.required else frozenset({bool, _NONE})

        def check(values: list[Any]) -> bool:
            return set(map(type, values)) <= allowed

        return check

    def read_text(self, feature: Feature, text: pd.Series, flag: Flag) -> pd.Series:
        missing = text.isna().to_numpy()
        lowered = text.str.lower()
        truth = lowered.isin(_TRUE).to_numpy()
        falsity = lowered.isin(_FALSE).to_numpy()
        flag(~missing & ~truth & ~falsity, "'{}' is not a boolean (true/false, yes/no, 1/0)")
        return pd.Series(
            pd.array(np.where(missing, None, truth), dtype="boolean"), index=text.index
        )

    def api_value(self, value: Any) -> Any:
        return bool(value)

    def sql_type(self, feature: Feature) -> TypeEngine[Any]:
        return Boolean()

    def value_of(self, feature: Feature, text: str) -> tuple[bool, Any]:
        if text.lower() not in ("true", "false"):
            raise ValueError("true, false or null")
        return True, text.lower() == "true"


KINDS: Mapping[str, FeatureKind] = MappingProxyType(
    {k.name: k for k in (NumberKind(), IntegerKind(), CategoryKind(), BooleanKind())}
)
"""The kind of each feature type, by name."""
if set(KINDS) != set(get_args(FeatureType)):  # pragma: no cover - a programming error
    raise RuntimeError("every FeatureType needs exactly one FeatureKind")


def kind_of(feature: Feature) -> FeatureKind:
    """The rules of the feature's type."""
    return KINDS[feature.type]
