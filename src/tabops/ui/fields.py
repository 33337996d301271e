"""What the UI derives from a use case's spec (as ``GET /usecases/{name}`` gives it):
widget bounds and defaults, field captions, and CSV rows turned into typed records.

No field is listed here: everything is read from the spec's ``features``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = [
    "RowIssue",
    "caption",
    "csv_records",
    "display",
    "integer_bounds",
    "label_text",
]

_TRUE = frozenset({"true", "yes", "y", "1", "t"})
_FALSE = frozenset({"false", "no", "n", "0", "f"})
_MISSING = frozenset({"", "na", "nan", "null", "none", "unknown"})


@dataclass(frozen=True)
class RowIssue:
    """Why one CSV row cannot be scored: its row number (0 = first data row), field, reason."""

    row: int
    field: str
    reason: str


def display(spec: dict[str, Any], cls: str) -> str:
    """The display label of a class: the spec's ``target.labels``, else the class itself."""
    labels: dict[str, str] = spec.get("target", {}).get("labels") or {}
    return labels.get(cls, cls)


def label_text(feature: dict[str, Any]) -> str:
    """A widget's label: the feature's name and unit."""
    unit = feature.get("unit")
    return f"{feature['name']} ({unit})" if unit else str(feature["name"])


def caption(feature: dict[str, Any]) -> str:
    """A widget's help: the description, the accepted range or values, and if optional."""
    description = (feature.get("description") or "").strip()
    if description and description[-1] not in ".!?)":
        description += "."
    parts = [description]
    low, high = feature.get("min"), feature.get("max")
    if low is not None or high is not None:
        lo = "" if low is None else f"{low:g}"
        hi = "" if high is None else f"{high:g}"
        parts.append(f"Accepted: {lo} to {hi}." if lo and hi else f"Accepted: {lo or hi}.")
    if not feature.get("required", True):
        parts.append("Optional: leave it unknown if you do not know it.")
    return " ".join(p for p in parts if p)


def integer_bounds(feature: dict[str, Any]) -> tuple[int | None, int | None]:
    """The bounds an integer field accepts (the API's: ceil of min, floor of max)."""
    low, high = feature.get("min"), feature.get("max")
    return (
        math.ceil(low) if low is not None else None,
        math.floor(high) if high is not None else None,
    )


def _value(feature: dict[str, Any], raw: str) -> Any:
    """One CSV cell as the JSON value of its feature; raises ValueError with a reason."""
    text = raw.strip()
    if text.lower() in _MISSING:
        return None
    kind = feature["type"]
    if kind == "boolean":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"'{raw}' is not yes/no (true, false, yes, no, 1, 0)")
    if kind == "category":
        return text
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"'{raw}' is not a number") from None
    if kind == "integer":
        if not number.is_integer():
            raise ValueError(f"'{raw}' is not a whole number")
        return int(number)
    return number


def csv_records(
    frame: pd.DataFrame, spec: dict[str, Any]
) -> tuple[list[tuple[int, dict[str, Any]]], list[RowIssue], list[str]]:
    """Typed records from a CSV read as text (``dtype=str``), one per row.

    A column is found under the feature's name or its source ``column``. Columns that are
    not features (an id, the target) are ignored. Values are only typed here; the API
    validates them (bounds, allowed values, required fields).

    Returns:
        ``(row number, record)`` of the rows that could be typed; the issues of the
        others; and the required features with no column at all.
    """
    features: list[dict[str, Any]] = spec["features"]
    where: dict[str, str] = {}
    missing: list[str] = []
    for f in features:
        for candidate in (f["name"], f.get("column")):
            if candidate and candidate in frame.columns:
                where[f["name"]] = candidate
                break
        else:
            if f.get("required", True):
                missing.append(f["name"])
    if missing:
        return [], [], missing
    records: list[tuple[int, dict[str, Any]]] = []
    issues: list[RowIssue] = []
    for i, by_column in enumerate(frame.to_dict(orient="records")):
        record: dict[str, Any] = {}
        bad = False
        for f in features:
            column = where.get(f["name"])
            raw = by_column.get(column) if column is not None else None
            try:
                record[f["name"]] = _value(f, "" if raw is None else str(raw))
            except ValueError as exc:
                issues.append(RowIssue(i, f["name"], str(exc)))
                bad = True
        if not bad:
            records.append((i, record))
    return records, issues, []
