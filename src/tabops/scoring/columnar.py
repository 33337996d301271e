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

from typing import Any

from tabops.spec.features import kind_of
from tabops.spec.schema import UseCase

__all__ = ["ColumnChecker"]


class ColumnChecker:
    """Accepts a batch of records that is valid as sent, column by column."""

    def __init__(self, spec: UseCase) -> None:
        self.names = frozenset(f.name for f in spec.features)
        self._checks = [
            (f.name, kind_of(f).column_check(f), kind_of(f).from_json) for f in spec.features
        ]

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
            for name, check, from_json in self._checks:
                values = [r[name] for r in records]
                if not check(values):
                    return None
                converted = from_json(values)
                if converted is not None:  # as the record model gives them (floats for numbers)
                    for r, v in zip(records, converted, strict=True):
                        r[name] = v
        except (AttributeError, TypeError, OverflowError):
            return None  # not objects, unhashable values, integers too big for a float
        return records
