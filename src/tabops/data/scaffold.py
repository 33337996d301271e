"""``tabops init``: infer a starter ``usecase.yaml`` from a CSV file.

The result is a draft for the user to edit (titles, descriptions, bounds, positive class);
it is validated by :func:`tabops.spec.parse_spec` before it is written, so it always loads.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from tabops.errors import DataNotFoundError, SpecError
from tabops.spec.schema import RESERVED_NAMES, SPEC_FILENAME, parse_spec

__all__ = ["infer_spec", "write_starter_spec"]

_MAX_CATEGORIES = 50
_BOOL_SETS = [
    {"0", "1"},
    {"true", "false"},
    {"yes", "no"},
    {"y", "n"},
    {"t", "f"},
]


def _identifier(column: str, taken: set[str]) -> str:
    name = column.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        name = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_").lower() or "column"
    if name.lower() in RESERVED_NAMES:
        name = f"{name}_value"
    if name[0].isdigit():
        name = f"c_{name}"
    name = name[:63]
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _sniff_separator(path: Path) -> str:
    opener = pd.io.common.get_handle(str(path), "r", compression="infer", encoding="utf-8")
    with opener as handle:
        sample = handle.handle.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _is_boolean(values: pd.Series) -> bool:
    seen = {str(v).strip().lower() for v in values.dropna().unique()}
    seen = {"1" if v == "1.0" else "0" if v == "0.0" else v for v in seen}
    return len(seen) == 2 and any(seen == s for s in _BOOL_SETS)


def _all_integers(values: pd.Series) -> bool:
    numeric = pd.to_numeric(values, errors="coerce")
    return bool(numeric.notna().all() and (numeric == numeric.round()).all())


def _looks_like_id(column: str, values: pd.Series) -> bool:
    named = re.search(r"(^|[^a-z])(id|rownames|key|code)([^a-z]|$)", column.lower()) is not None
    return named and values.notna().all() and values.is_unique


def _round_bound(value: float, integer: bool, down: bool) -> float | int:
    if integer:
        return int(value)
    rounded = math.floor(value) if down else math.ceil(value)
    return float(rounded) if rounded == value or abs(value) >= 10 else float(value)


def _feature(name: str, column: str, values: pd.Series) -> dict[str, Any] | None:
    entry: dict[str, Any] = {"name": name}
    if _is_boolean(values):
        entry["type"] = "boolean"
    else:
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().sum() == values.notna().sum() and values.notna().any():
            finite = numeric.dropna()
            integer = bool((finite == finite.round()).all())
            entry["type"] = "integer" if integer else "number"
            entry["min"] = _round_bound(float(finite.min()), integer, down=True)
            entry["max"] = _round_bound(float(finite.max()), integer, down=False)
        else:
            distinct = sorted(str(v) for v in values.dropna().unique())
            if len(distinct) > _MAX_CATEGORIES or not distinct:
                return None
            entry["type"] = "category"
            entry["values"] = distinct
    if values.isna().any():
        entry["required"] = False
    if column != name:
        entry["column"] = column
    entry["description"] = ""
    return entry


def infer_spec(
    name: str, csv_path: Path, target: str, usecase_dir: Path | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Infer a starter spec from a CSV file.

    Args:
        name: The use case's name (its folder name).
        csv_path: The CSV file (``.csv`` or ``.csv.gz``; separator detected).
        target: The column to predict.
        usecase_dir: The use case's folder; a CSV inside it is referenced relatively.

    Returns:
        The spec as a mapping, and notes about columns left out or guessed.

    Raises:
        DataNotFoundError: the file cannot be read.
        SpecError: the target column is missing or has fewer than two classes.
    """
    if not csv_path.is_file():
        raise DataNotFoundError(f"no such file: {csv_path}")
    separator = _sniff_separator(csv_path)
    try:
        frame = pd.read_csv(csv_path, sep=separator, dtype=str, keep_default_na=True)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataNotFoundError(f"cannot read {csv_path} as CSV: {exc}") from None
    if target not in frame.columns:
        raise SpecError(
            f"target column '{target}' is not in {csv_path} "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    labels = sorted(str(v) for v in frame[target].dropna().unique())
    if len(labels) < 2:
        raise SpecError(f"target column '{target}' has fewer than two distinct values")
    if len(labels) > _MAX_CATEGORIES:
        raise SpecError(
            f"target column '{target}' has {len(labels)} distinct values; "
            "tabops predicts classes (binary or multiclass), not numbers"
        )
    notes: list[str] = []
    taken: set[str] = set()
    target_name = _identifier(target, taken)
    counts = frame[target].value_counts()
    positive = str(counts.idxmin()) if len(labels) == 2 else None
    target_entry: dict[str, Any] = {"name": target_name, "classes": labels}
    if positive is not None:
        target_entry["positive"] = positive
        notes.append(f"positive class guessed as '{positive}' (the rarer one): check it")
    if target_name != target:
        target_entry["column"] = target
    features = []
    entity: dict[str, Any] | None = None
    for column in frame.columns:
        if column == target:
            continue
        if entity is None and _looks_like_id(str(column), frame[column]):
            entity = {"name": _identifier(str(column), taken)}
            entity["type"] = "integer" if _all_integers(frame[column]) else "string"
            if entity["name"] != column:
                entity["column"] = column
            notes.append(f"column '{column}' taken as the entity id (unique values, id-like name)")
            continue
        name_ = _identifier(str(column), taken)
        values = frame[column]
        entry = _feature(name_, str(column), values)
        if entry is None:
            notes.append(
                f"column '{column}' left out: text with {values.nunique()} distinct values "
                "(an id or free text?); add it as entity_id or a category by hand"
            )
            continue
        features.append(entry)
    data: dict[str, Any] = {"files": [csv_path.name], "dir": str(csv_path.resolve().parent)}
    if usecase_dir is not None and csv_path.resolve().is_relative_to(usecase_dir.resolve()):
        data = {"files": [csv_path.resolve().relative_to(usecase_dir.resolve()).as_posix()]}
    if separator != ",":
        data["separator"] = separator
    spec: dict[str, Any] = {
        "name": name,
        "title": name.replace("_", " ").capitalize(),
        "description": f"Predict {target} from {csv_path.name}.",
        "task": "binary" if len(labels) == 2 else "multiclass",
        "target": target_entry,
        **({"entity_id": entity} if entity else {}),
        "features": features,
        "data": data,
        "model": {"family": "logistic_regression", "params": {}},
        "decision": {"policy": "max_f1" if len(labels) == 2 else "fixed"},
        "gate": {"metric": "roc_auc", "margin": 0.0},
    }
    parse_spec(spec, f"inferred spec for {csv_path}")
    notes.append("bounds are the observed range: widen them to what live data may hold")
    return spec, notes


def write_starter_spec(
    usecases_dir: Path, name: str, csv_path: Path, target: str, overwrite: bool = False
) -> tuple[Path, list[str]]:
    """Infer a spec (see :func:`infer_spec`) and write it to ``usecases_dir/name/usecase.yaml``.

    Raises:
        SpecError: the file exists and ``overwrite`` is false, or inference failed.
    """
    import yaml

    out = usecases_dir / name / SPEC_FILENAME
    if out.exists() and not overwrite:
        raise SpecError(f"{out} already exists (use --force to overwrite)")
    spec, notes = infer_spec(name, csv_path, target, out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Starter spec inferred by `tabops init` from {csv_path.name}. Edit it, then:\n"
        f"#   tabops seed {name} && tabops train {name} && tabops serve\n"
    )
    out.write_text(header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), "utf-8")
    return out, notes
