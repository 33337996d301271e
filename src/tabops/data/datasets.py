"""Data sets: read a use case's seed files and check every row against its spec.

:func:`validate_frame` is the one place rows are checked and typed; seeding, ingestion and
training all go through it, so a row that passes here is one the API would also accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tabops.config import Settings
from tabops.data.joins import join_files
from tabops.data.sniff import read_csv_text
from tabops.errors import DataNotFoundError, DataValidationError, FieldIssue
from tabops.spec.features import kind_of
from tabops.spec.schema import Feature, UseCase

__all__ = [
    "data_dir",
    "data_files",
    "SourceRows",
    "from_source_columns",
    "load_source",
    "read_rows",
    "read_source",
    "training_dtypes",
    "validate_frame",
]

_MAX_ISSUES = 200


def data_dir(spec: UseCase, settings: Settings) -> Path:
    """The folder a use case's data files are read from (settings override the spec)."""
    if spec.name in settings.data_dirs:
        return settings.data_dirs[spec.name]
    base = settings.usecases_dir / spec.name
    return base / spec.data.dir if spec.data.dir else base


def data_files(spec: UseCase, settings: Settings) -> list[Path]:
    """The use case's data files, checked to exist.

    Raises:
        DataNotFoundError: a file is missing; the message says where to get it and put it.
    """
    folder = data_dir(spec, settings)
    files = [folder / name for name in spec.data.files]
    missing = [p for p in files if not p.is_file()]
    if missing:
        names = ", ".join(p.name for p in missing)
        where = f"download it from {spec.data.download} and " if spec.data.download else ""
        env = f"TABOPS_DATA_DIRS__{spec.name.upper()}"
        raise DataNotFoundError(
            f"data for use case '{spec.name}' not found: {names} missing in {folder.resolve()}; "
            f"{where}put the file(s) there, or set {env} to the folder that holds them"
        )
    return files


@dataclass(frozen=True)
class SourceRows:
    """Seed rows read from a use case's files, and what was noticed on the way."""

    frame: pd.DataFrame
    notes: list[str]
    """Joins (rows matched, keys without a match) and rows left out for lack of a label."""


def load_source(spec: UseCase, settings: Settings) -> SourceRows:
    """Read the use case's seed files (concatenated, then joined by key as ``data.join``
    says), check and type every row.

    Rows whose target is missing carry nothing to learn from: they are left out and
    counted in the notes. Every other problem is an error.

    Raises:
        DataNotFoundError: a file is missing or unreadable.
        DataValidationError: some rows do not satisfy the spec, or a join key is not unique.
    """
    files = data_files(spec, settings)
    raw = pd.concat([_read_csv(p, spec.data.separator, spec) for p in files], ignore_index=True)
    notes: list[str] = []
    if spec.data.join:
        folder = files[0].parent
        raw, notes = join_files(
            spec.data,
            raw,
            lambda name, sep: _read_csv(folder / name, sep or spec.data.separator, spec),
        )
    frame = from_source_columns(spec, raw, where=str(files[0].parent))
    unlabelled = frame[spec.target.name].isna()
    if spec.target.derive is None:
        unlabelled |= frame[spec.target.name].astype("string").str.strip().fillna("").eq("")
    if unlabelled.any():
        notes.append(
            f"{int(unlabelled.sum())} row(s) without a value of the target "
            f"'{spec.target.source}' left out (nothing to learn from them)"
        )
        frame = frame[~unlabelled.to_numpy()]
    return SourceRows(validate_frame(spec, frame), notes)


def read_source(spec: UseCase, settings: Settings) -> pd.DataFrame:
    """Read, concatenate, check and type the use case's seed files (see :func:`load_source`).

    Returns:
        A frame with the entity id (if any), the features and the target, typed by
        :func:`validate_frame`.

    Raises:
        DataNotFoundError: a file is missing or unreadable.
        DataValidationError: some rows do not satisfy the spec.
    """
    return load_source(spec, settings).frame


def _read_csv(path: Path, separator: str, spec: UseCase) -> pd.DataFrame:
    frame = read_csv_text(path, separator, spec.data.encoding, spec.data.missing_values)
    if spec.data.decimal == ",":
        numeric = {f.source for f in spec.features_of("number", "integer")}
        for column in numeric & set(frame.columns):
            frame[column] = frame[column].str.replace(",", ".", regex=False)
    return frame


def read_rows(spec: UseCase, path: Path, separator: str | None = None) -> pd.DataFrame:
    """Read labelled rows to add to a training table, checking every one of them.

    Columns may carry the source names the spec maps (as in the seed files) or the spec's
    own names. Rows are numbered as lines of the file (the header is line 1).

    Raises:
        DataNotFoundError: the file is missing or is not CSV.
        DataValidationError: listing every bad cell; nothing is returned then.
    """
    raw = _read_csv(path, separator or spec.data.separator, spec)
    by_name = {f.name: f.source for f in spec.features}
    if spec.entity_id is not None:
        by_name[spec.entity_id.name] = spec.entity_id.source
    if spec.target.derive is None:
        by_name[spec.target.name] = spec.target.source
    renames = {n: src for n, src in by_name.items() if src not in raw.columns and n in raw.columns}
    raw = raw.rename(columns=renames)
    return validate_frame(spec, from_source_columns(spec, raw, where=str(path)), first_row=2)


def from_source_columns(spec: UseCase, raw: pd.DataFrame, where: str) -> pd.DataFrame:
    """Rename source columns to spec names and derive the target where the spec says so.

    Raises:
        DataValidationError: a column the spec needs is not in the data.
    """
    wanted: dict[str, str] = {}
    if spec.entity_id is not None:
        wanted[spec.entity_id.source] = spec.entity_id.name
    wanted |= {f.source: f.name for f in spec.features}
    target = spec.target
    if target.derive is None:
        wanted[target.source] = target.name
    needed = list(wanted) + ([target.derive.column] if target.derive else [])
    absent = [c for c in needed if c not in raw.columns]
    if absent:
        raise DataValidationError(
            f"data in {where} lacks columns the spec of '{spec.name}' needs",
            [FieldIssue(c, "column not found") for c in absent],
        )
    out = raw[list(wanted)].rename(columns=wanted)
    if target.derive is not None and target.derive.map is not None:
        out[target.name] = _derive_by_map(spec, raw[target.derive.column])
    elif target.derive is not None:
        score = pd.to_numeric(raw[target.derive.column], errors="coerce")
        if score.isna().any():
            rows = (np.flatnonzero(score.isna().to_numpy()) + 1).tolist()
            raise DataValidationError(
                f"cannot derive the target of '{spec.name}'",
                [FieldIssue(target.derive.column, "not a number", row=r) for r in rows[:20]],
            )
        positive = target.positive or ""
        out[target.name] = np.where(
            score >= target.derive.threshold, positive, target.derive.negative or ""
        )
    return out


def _derive_by_map(spec: UseCase, source: pd.Series) -> pd.Series:
    """The target from ``target.derive.map``; a missing source value gives a missing target.

    Raises:
        DataValidationError: a value the map does not list (one detail per value).
    """
    derive = spec.target.derive
    assert derive is not None and derive.map is not None
    text = _as_text(source)
    mapped = text.map(derive.map)
    unknown = text.notna() & mapped.isna()
    if unknown.any():
        first_rows = text[unknown].reset_index(drop=True)
        rows = np.flatnonzero(unknown.to_numpy()) + 1
        seen: dict[str, int] = {}
        for value, row in zip(first_rows, rows, strict=True):
            seen.setdefault(str(value), int(row))
        raise DataValidationError(
            f"cannot derive the target of '{spec.name}': target.derive.map does not list "
            f"{len(seen)} value(s) of '{derive.column}'",
            [
                FieldIssue(derive.column, f"'{v}' is not in target.derive.map", row=r)
                for v, r in list(seen.items())[:20]
            ],
        )
    return mapped.astype(object).where(mapped.notna(), None)


def _as_text(series: pd.Series) -> pd.Series:
    return series.astype("string").str.strip().replace("", pd.NA)


def _check_feature(
    feature: Feature, text: pd.Series, issues: list[FieldIssue], first_row: int
) -> pd.Series:
    """Check one column of text values; return it typed."""

    def flag(mask: np.ndarray, reason: str) -> None:
        for i in np.flatnonzero(mask)[: _MAX_ISSUES - len(issues)]:
            issues.append(FieldIssue(feature.name, reason.format(text.iloc[i]), row=first_row + i))

    missing = text.isna().to_numpy()
    if feature.required:
        flag(missing, "value is required")
    return kind_of(feature).read_text(feature, text, flag)


def validate_frame(
    spec: UseCase, frame: pd.DataFrame, *, with_target: bool = True, first_row: int = 1
) -> pd.DataFrame:
    """Check every row of a frame (spec column names, any dtypes) and return it typed.

    Numbers become float64, integers Int64, booleans boolean, categories and the target
    Python strings (None where missing).

    Args:
        spec: The use case.
        frame: The rows, one column per spec name (extra columns are ignored).
        with_target: Whether the target column must be present and valid.
        first_row: Number given to the first row in error reports (1 = first data row).

    Raises:
        DataValidationError: listing each bad cell (row, column, reason), up to 200.
    """
    issues: list[FieldIssue] = []
    columns = list(spec.feature_names)
    if spec.entity_id is not None:
        columns.insert(0, spec.entity_id.name)
    if with_target:
        columns.append(spec.target.name)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataValidationError(
            f"rows for '{spec.name}' lack columns",
            [FieldIssue(c, "column not found") for c in absent],
        )
    frame = frame.reset_index(drop=True)
    out: dict[str, pd.Series] = {}
    if spec.entity_id is not None:
        ident = _as_text(frame[spec.entity_id.name])
        id_feature = Feature(
            name=spec.entity_id.name,
            type="integer" if spec.entity_id.type == "integer" else "category",
            values=None if spec.entity_id.type == "integer" else ["-"],
        )
        if spec.entity_id.type == "integer":
            out[id_feature.name] = _check_feature(id_feature, ident, issues, first_row)
        else:
            for i in np.flatnonzero(ident.isna().to_numpy())[:_MAX_ISSUES]:
                issues.append(FieldIssue(id_feature.name, "value is required", row=first_row + i))
            out[id_feature.name] = ident.astype(object)
        dupes = ident.duplicated(keep="first").to_numpy() & ident.notna().to_numpy()
        for i in np.flatnonzero(dupes)[:_MAX_ISSUES]:
            issues.append(
                FieldIssue(
                    spec.entity_id.name, f"duplicate id '{ident.iloc[i]}'", row=first_row + i
                )
            )
    for feature in spec.features:
        out[feature.name] = _check_feature(
            feature, _as_text(frame[feature.name]), issues, first_row
        )
    if with_target:
        target = Feature(name=spec.target.name, type="category", values=spec.target.classes)
        out[target.name] = _check_feature(target, _as_text(frame[target.name]), issues, first_row)
    if issues:
        issues.sort(key=lambda d: d.row or 0)
        raise DataValidationError(
            f"{len(issues)}{'+' if len(issues) >= _MAX_ISSUES else ''} invalid value(s) "
            f"in rows for '{spec.name}'",
            issues,
        )
    return pd.DataFrame(out)


def training_dtypes(spec: UseCase, frame: pd.DataFrame) -> pd.DataFrame:
    """Feature columns as scikit-learn wants them: floats (NaN for missing), objects for
    categories (NaN for missing), in spec order."""
    out = {f.name: kind_of(f).training_column(frame[f.name]) for f in spec.features}
    return pd.DataFrame(out, index=frame.index)
