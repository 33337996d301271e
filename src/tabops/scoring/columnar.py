"""Columnar validation of batch requests: one pass per feature instead of a model per record.

Validating a 1,000-record batch with the spec's pydantic record model costs ~6 µs per
record and capped batches near 50k records/s. :class:`ColumnChecker` reads a batch column
by column with C-level builtins (``set(map(type, values))``, ``min``, ``max``, set
inclusion) and accepts it only when every value is of its canonical JSON type and within
its bounds, which is a strict subset of what the record model accepts. Anything else (a
missing optional field, a wrong type, a value out of bounds, an unknown field) returns
None, and the caller validates with the record model, which either accepts the batch or
names every bad field. The two paths therefore accept the same batches and produce the
same records; the tests check that on every bundled use case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from tabops.spec.schema import Feature, UseCase

__all__ = ["ColumnChecker"]

_NUMBER = frozenset({int, float})
_INTEGER = frozenset({int})
_BOOLEAN = frozenset({bool})
_NONE = type(None)

Check = Callable[[list[Any]], bool]


def _bounded(low: float | None, high: float | None) -> Callable[[list[Any]], bool]:
    def within(values: list[Any]) -> bool:
        if low is not None and min(values) < low:
            return False
        return high is None or max(values) <= high

    return within


def _numeric(
    feature: Feature, types: frozenset[type], low: float | None, high: float | None
) -> Check:
    within = _bounded(low, high)
    allowed = types if feature.required else types | {_NONE}

    def check(values: list[Any]) -> bool:
        if not set(map(type, values)) <= allowed:
            return False
        present = [v for v in values if v is not None] if not feature.required else values
        # NaN and infinity are refused; a huge integer raises OverflowError, caught above
        if not all(map(math.isfinite, present)):
            return False
        return not present or within(present)

    return check


def _number(feature: Feature) -> Check:
    return _numeric(feature, _NUMBER, feature.min, feature.max)


def _integer(feature: Feature) -> Check:
    # the record model's bounds for integers: ge=ceil(min), le=floor(max)
    low = math.ceil(feature.min) if feature.min is not None else None
    high = math.floor(feature.max) if feature.max is not None else None
    return _numeric(feature, _INTEGER, low, high)


def _category(feature: Feature) -> Check:
    allowed: frozenset[str | None] = frozenset(feature.values or ())
    if not feature.required:
        allowed = allowed | {None}

    def check(values: list[Any]) -> bool:
        # only str values can equal the allowed strings; unhashable ones raise TypeError
        return set(values) <= allowed

    return check


def _boolean(feature: Feature) -> Check:
    allowed = _BOOLEAN if feature.required else _BOOLEAN | {_NONE}

    def check(values: list[Any]) -> bool:
        return set(map(type, values)) <= allowed

    return check


_CHECKS: dict[str, Callable[[Feature], Check]] = {
    "number": _number,
    "integer": _integer,
    "category": _category,
    "boolean": _boolean,
}


class ColumnChecker:
    """Accepts a batch of records that is valid as sent, column by column."""

    def __init__(self, spec: UseCase) -> None:
        self.names = frozenset(f.name for f in spec.features)
        self._checks = [(f.name, _CHECKS[f.type](f), f.type == "number") for f in spec.features]

    def check(self, records: list[Any]) -> list[dict[str, Any]] | None:
        """The records, if every one holds every feature with a valid value as sent.

        Numbers sent as JSON integers are converted to floats in place, as the record
        model does.

        Args:
            records: Decoded JSON values, normally objects.

        Returns:
            The same records, or None when the batch needs the record model: a record
            that is not an object, lacks an optional field or has an unknown one, or a
            value of another type or out of bounds.
        """
        names = self.names
        try:
            if not all(r.keys() == names for r in records):
                return None
            for name, check, number in self._checks:
                values = [r[name] for r in records]
                if not check(values):
                    return None
                if number and int in set(map(type, values)):
                    for r in records:  # the record model gives floats for numbers
                        if type(r[name]) is int:
                            r[name] = float(r[name])
        except (AttributeError, TypeError, OverflowError):
            return None  # not objects, unhashable values, integers too big for a float
        return records
