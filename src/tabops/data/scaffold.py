"""``tabops init``: infer a starter ``usecase.yaml`` from a CSV file.

The result is a draft for the user to edit (titles, descriptions, bounds, positive class);
it is validated by :func:`tabops.spec.parse_spec` before it is written, so it always loads.
"""

from __future__ import annotations

import codecs
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tabops.data.sniff import (
    detect_encoding,
    duplicate_headers,
    missing_markers,
    read_csv_text,
    sniff_separator,
    uses_decimal_comma,
)
from tabops.errors import DataNotFoundError, SpecError
from tabops.spec.files import SPEC_FILENAME, parse_spec
from tabops.spec.schema import RESERVED_NAMES
from tabops.training.leakage import leaky_columns

__all__ = ["MAX_CATEGORIES", "BOUNDS_MARGIN", "infer_spec", "write_starter_spec"]

MAX_CATEGORIES = 100
"""Default cap on the distinct values of a category column (``--max-categories``)."""
BOUNDS_MARGIN = 0.5
"""Inferred bounds are the observed range widened by this share of its width on each side."""
_TRUE_FALSE = [{"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"}]
_FREE_TEXT_SHARE = 0.5
"""A text column with more distinct values than this share of its rows is not a category."""


@dataclass
class _Inference:
    """What inference found, beyond the spec itself."""

    notes: list[str] = field(default_factory=list)
    observed: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Feature name -> observed (min, max), for the features whose bounds were inferred."""


def _identifier(column: str, taken: set[str]) -> str:
    # accents transliterated ("Étudiant" -> "Etudiant"), not dropped ("tudiant")
    ascii_ = unicodedata.normalize("NFKD", column.strip()).encode("ascii", "ignore").decode()
    name = ascii_
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


def _is_boolean(values: pd.Series) -> bool:
    # 0/1 is left to the numbers: a count seen as 0 and 1 may be 2 tomorrow
    seen = {str(v).strip().lower() for v in values.dropna().unique()}
    return len(seen) == 2 and any(seen == s for s in _TRUE_FALSE)


def _all_integers(values: pd.Series) -> bool:
    numeric = pd.to_numeric(values, errors="coerce")
    return bool(numeric.notna().all() and (numeric == numeric.round()).all())


def _looks_like_id(column: str, values: pd.Series) -> bool:
    named = re.search(r"(^|[^a-z])(id|rownames|key|code)([^a-z]|$)", column.lower()) is not None
    return named and values.notna().all() and values.is_unique


def _widened(low: float, high: float, integer: bool) -> tuple[float | int, float | int]:
    """The observed range widened by :data:`BOUNDS_MARGIN` of its width on each side, not
    below zero when nothing observed is negative, rounded outwards."""
    margin = (high - low) * BOUNDS_MARGIN
    lower, upper = low - margin, high + margin
    if low >= 0:
        lower = max(lower, 0.0)
    if integer or high - low >= 10:
        lo, hi = math.floor(lower), math.ceil(upper)
        return (int(lo), int(hi)) if integer else (float(lo), float(hi))
    return math.floor(lower * 100) / 100, math.ceil(upper * 100) / 100


def _feature(
    name: str, column: str, values: pd.Series, max_categories: int, found: _Inference
) -> dict[str, Any] | None:
    entry: dict[str, Any] = {"name": name}
    present = values.dropna()
    if present.empty:
        found.notes.append(f"column '{column}' left out: no values at all")
        return None
    numeric = pd.to_numeric(present, errors="coerce")
    if _is_boolean(values):
        entry["type"] = "boolean"
    elif numeric.notna().all():
        low, high = float(numeric.min()), float(numeric.max())
        if low == high:
            found.notes.append(
                f"column '{column}' left out: the same value ({present.iloc[0]}) in every row "
                "cannot inform the model"
            )
            return None
        integer = bool((numeric == numeric.round()).all())
        entry["type"] = "integer" if integer else "number"
        entry["min"], entry["max"] = _widened(low, high, integer)
        found.observed[name] = (low, high)
        if integer and {low, high} == {0.0, 1.0}:
            found.notes.append(
                f"column '{column}' holds only 0 and 1: typed integer (a count?); "
                "make it boolean if it is a yes/no flag"
            )
    else:
        distinct = sorted(str(v) for v in present.unique())
        if len(distinct) > max_categories:
            found.notes.append(
                f"column '{column}' left out: text with {len(distinct)} distinct values, over "
                f"the category cap of {max_categories} (--max-categories to raise it)"
            )
            return None
        if len(distinct) > max(20, _FREE_TEXT_SHARE * len(present)):
            found.notes.append(
                f"column '{column}' left out: text with {len(distinct)} distinct values in "
                f"{len(present)} rows (an id or free text?); add it as entity_id or a "
                "category by hand"
            )
            return None
        entry["type"] = "category"
        entry["values"] = distinct
    if values.isna().any():
        entry["required"] = False
    if column != name:
        entry["column"] = column
    entry["description"] = ""
    return entry


def _read(
    csv_path: Path, encoding: str | None, found: _Inference
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read the file as seeding will, detecting its encoding, separator, missing-value
    markers and decimal mark; return the frame and the spec's ``data`` settings for it."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise SpecError(
                f"unknown encoding '{encoding}' (for example utf-8, latin-1, cp1252)"
            ) from None
    chosen = encoding or detect_encoding(csv_path)
    if chosen != "utf-8" and encoding is None:
        found.notes.append(f"file read as {chosen} (it is not UTF-8): data.encoding set")
    separator = sniff_separator(csv_path, chosen)
    for header, count in duplicate_headers(csv_path, chosen, separator).items():
        copies = ", ".join(f"'{header}.{i}'" for i in range(1, count))
        found.notes.append(
            f"header '{header}' appears {count} times: the repeats are read as {copies}; "
            "rename them in the file if they differ"
        )
    frame = read_csv_text(csv_path, separator, chosen)
    data: dict[str, Any] = {}
    if separator != ",":
        data["separator"] = separator
    if chosen != "utf-8":
        data["encoding"] = chosen
    markers = missing_markers(frame)
    if markers:
        data["missing_values"] = sorted(markers)
        for marker, columns in sorted(markers.items()):
            shown = ", ".join(columns[:5]) + (", ..." if len(columns) > 5 else "")
            found.notes.append(f"'{marker}' read as a missing value (in {shown})")
        frame = read_csv_text(csv_path, separator, chosen, data["missing_values"])
    if uses_decimal_comma(frame):
        data["decimal"] = ","
        found.notes.append("numbers use a decimal comma (3,14): data.decimal set to ','")
        for column in frame.columns:
            converted = frame[column].str.replace(",", ".", regex=False)
            present = converted.dropna()
            if not present.empty and pd.to_numeric(present, errors="coerce").notna().all():
                frame[column] = converted
    return frame, data


def infer_spec(
    name: str,
    csv_path: Path,
    target: str,
    usecase_dir: Path | None = None,
    *,
    encoding: str | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> tuple[dict[str, Any], list[str]]:
    """Infer a starter spec from a CSV file.

    The rules, each reported in a note when it applies: the encoding is UTF-8 (a byte-order
    mark is dropped) or else cp1252/Latin-1; the separator is sniffed; ``?``, ``-`` and the
    other :data:`~tabops.data.sniff.EXTRA_MISSING_MARKERS` found as whole cells are missing
    values; a decimal comma is recognised. A column of numbers is an integer or a number,
    with bounds widened from the observed range (see :func:`_widened`) and marked
    ``# inferred`` in the written file; 0/1 is an integer, not a boolean; true/false,
    yes/no, y/n and t/f are booleans; other text is a category up to ``max_categories``
    values. Constant and empty columns are left out. Headers become identifiers, accents
    transliterated; repeated headers are reported. Rows without a target value are counted
    (seeding leaves them out). Features that predict the target almost perfectly on their
    own are reported as possible leakage.

    Args:
        name: The use case's name (its folder name).
        csv_path: The CSV file (``.csv`` or ``.csv.gz``).
        target: The column to predict.
        usecase_dir: The use case's folder; a CSV inside it is referenced relatively.
        encoding: The file's encoding, when detection should not decide.
        max_categories: Most distinct values of a category column (and of the target).

    Returns:
        The spec as a mapping, and notes about columns left out or guessed.

    Raises:
        DataNotFoundError: the file cannot be read.
        SpecError: the target column is missing or has fewer than two classes.
    """
    spec, found = _infer(name, csv_path, target, usecase_dir, encoding, max_categories)
    return spec, found.notes


def _infer(
    name: str,
    csv_path: Path,
    target: str,
    usecase_dir: Path | None,
    encoding: str | None,
    max_categories: int,
) -> tuple[dict[str, Any], _Inference]:
    if not csv_path.is_file():
        raise DataNotFoundError(f"no such file: {csv_path}")
    found = _Inference()
    frame, data_options = _read(csv_path, encoding, found)
    if target not in frame.columns:
        raise SpecError(
            f"target column '{target}' is not in {csv_path} "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    unlabelled = int(frame[target].isna().sum())
    if unlabelled:
        found.notes.append(
            f"{unlabelled} row(s) have no value of the target '{target}': seeding leaves them out"
        )
    labels = sorted(str(v) for v in frame[target].dropna().unique())
    if len(labels) < 2:
        raise SpecError(f"target column '{target}' has fewer than two distinct values")
    if len(labels) > max_categories:
        raise SpecError(
            f"target column '{target}' has {len(labels)} distinct values; "
            "tabops predicts classes (binary or multiclass), not numbers"
        )
    taken: set[str] = set()
    target_name = _identifier(target, taken)
    counts = frame[target].value_counts()
    positive = str(counts.idxmin()) if len(labels) == 2 else None
    target_entry: dict[str, Any] = {"name": target_name, "classes": labels}
    if positive is not None:
        target_entry["positive"] = positive
        found.notes.append(f"positive class guessed as '{positive}' (the rarer one): check it")
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
            found.notes.append(
                f"column '{column}' taken as the entity id (unique values, id-like name)"
            )
            continue
        name_ = _identifier(str(column), taken)
        entry = _feature(name_, str(column), frame[column], max_categories, found)
        if entry is not None:
            features.append(entry)
    if not features:
        raise SpecError(f"no usable feature column in {csv_path}")
    _warn_leakage(frame, target, features, labels, found)
    data: dict[str, Any] = {"files": [csv_path.name], "dir": str(csv_path.resolve().parent)}
    if usecase_dir is not None and csv_path.resolve().is_relative_to(usecase_dir.resolve()):
        data = {"files": [csv_path.resolve().relative_to(usecase_dir.resolve()).as_posix()]}
    data |= data_options
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
    if found.observed:
        found.notes.append(
            f"bounds of {len(found.observed)} numeric feature(s) are the observed range widened "
            f"by {BOUNDS_MARGIN:.0%} of its width each side (not below 0 for columns with no "
            "negative value), marked '# inferred' in the spec: set the real limits, since "
            "the API refuses values outside them"
        )
    return spec, found


def _warn_leakage(
    frame: pd.DataFrame,
    target: str,
    features: list[dict[str, Any]],
    labels: list[str],
    found: _Inference,
) -> None:
    present = frame[target].notna().to_numpy()
    columns = {
        str(f.get("column", f["name"])): (
            frame[f.get("column", f["name"])][present],
            f["type"] in ("number", "integer"),
        )
        for f in features
    }
    for column, auc in leaky_columns(columns, frame[target][present], labels):
        found.notes.append(
            f"column '{column}' alone predicts '{target}' with ROC AUC {auc:.3f}: possible "
            "leakage (known only after the outcome?); remove it unless it is known beforehand"
        )


def _flag_inferred(text: str, observed: dict[str, tuple[float, float]]) -> str:
    """Mark the inferred bounds in the dumped YAML with the range actually observed."""
    out, current = [], None
    for line in text.splitlines():
        item = re.match(r"^- name: (\S+)$", line)
        if item:
            current = item.group(1)
        bound = re.match(r"^  (min|max): ", line)
        if bound and current in observed:
            low, high = observed[current]
            seen = low if bound.group(1) == "min" else high
            line += f"  # inferred: observed {seen:g}"
        out.append(line)
    return "\n".join(out) + "\n"


def write_starter_spec(
    usecases_dir: Path,
    name: str,
    csv_path: Path,
    target: str,
    overwrite: bool = False,
    *,
    encoding: str | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> tuple[Path, list[str]]:
    """Infer a spec (see :func:`infer_spec`) and write it to ``usecases_dir/name/usecase.yaml``.

    Raises:
        SpecError: the file exists and ``overwrite`` is false, or inference failed.
    """
    import yaml

    out = usecases_dir / name / SPEC_FILENAME
    if out.exists() and not overwrite:
        raise SpecError(f"{out} already exists (use --force to overwrite)")
    spec, found = _infer(name, csv_path, target, out.parent, encoding, max_categories)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Starter spec inferred by `tabops init` from {csv_path.name}. Edit it, then:\n"
        f"#   tabops seed {name} && tabops train {name} && tabops serve\n"
    )
    body = _flag_inferred(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), found.observed)
    out.write_text(header + body, "utf-8")
    return out, found.notes
