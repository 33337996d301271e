"""Seed data spread over several files: join them on a key, as ``data.join`` says.

The main files (``data.files``) give one row each; every joined file adds its columns to
the rows whose key it shares. Keys are compared as text, after the simple rewrites each
side's :class:`~tabops.spec.schema.KeyTransform` names (``E_12`` -> ``12``, ``000012`` ->
``12``), so that ids written differently by different systems still meet.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from tabops.errors import DataValidationError, FieldIssue
from tabops.spec.sources import DataSource, KeyTransform

__all__ = ["join_files", "normalise_keys"]

Reader = Callable[[str, str | None], pd.DataFrame]
"""Reads a data file (name, separator or None for the spec's) as text cells."""
_KEY = "__tabops_join_key__"
_EXAMPLES = 5


def normalise_keys(keys: pd.Series, transform: KeyTransform) -> pd.Series:
    """Keys as text, trimmed, and rewritten as ``transform`` says (missing stays missing)."""
    text = keys.astype("string").str.strip()
    if transform.strip_prefix:
        text = text.str.removeprefix(transform.strip_prefix)
    if transform.strip_suffix:
        text = text.str.removesuffix(transform.strip_suffix)
    if transform.strip_leading_zeros:
        stripped = text.str.lstrip("0")
        text = stripped.where(stripped != "", "0").where(text.notna())
    if transform.lowercase:
        text = text.str.lower()
    return text.replace("", pd.NA)


def _examples(values: pd.Series) -> str:
    shown = ", ".join(f"'{v}'" for v in values.head(_EXAMPLES))
    return shown + (", ..." if len(values) > _EXAMPLES else "")


def join_files(
    data: DataSource, main: pd.DataFrame, read: Reader
) -> tuple[pd.DataFrame, list[str]]:
    """Join each of ``data.join`` to the main rows on ``data.key``.

    Args:
        data: The spec's data section.
        main: The main files' rows (text cells).
        read: Reads a joined file.

    Returns:
        The joined rows, in the main files' order, and one note per joined file: rows
        matched, main rows without a match (left out, or kept when the file is not
        ``required``), and the file's keys that matched no row.

    Raises:
        DataValidationError: a key column is missing, a joined file repeats a key, or two
            files share a column name.
    """
    key = data.key
    assert key is not None
    if key not in main.columns:
        raise DataValidationError(
            f"data.key '{key}' is not a column of {', '.join(data.files)}",
            [FieldIssue("data.key", "column not found")],
        )
    out = main
    notes = []
    for joined in data.join:
        other = read(joined.file, joined.separator)
        if joined.key not in other.columns:
            raise DataValidationError(
                f"join key '{joined.key}' is not a column of {joined.file}",
                [FieldIssue(f"data.join ({joined.file}).key", "column not found")],
            )
        left = normalise_keys(out[key], joined.main_transform)
        right = normalise_keys(other[joined.key], joined.transform)
        repeated = right[right.duplicated(keep="first") & right.notna()]
        if not repeated.empty:
            raise DataValidationError(
                f"{joined.file}: key '{joined.key}' repeats {len(repeated)} value(s) "
                f"(e.g. {_examples(repeated)}); a joined file needs one row per key",
                [FieldIssue(joined.key, f"duplicate key '{v}'") for v in repeated.head(20)],
            )
        extra = other.drop(columns=[joined.key] if joined.key == key else [])
        clash = sorted(set(extra.columns) & set(out.columns))
        if clash:
            raise DataValidationError(
                f"{joined.file} has columns the rows already hold: {', '.join(clash)}",
                [FieldIssue(c, f"in {joined.file} and an earlier file") for c in clash],
            )
        found = left.isin(set(right.dropna()))
        unused = right[right.notna() & ~right.isin(set(left.dropna()))]
        merged = out.assign(**{_KEY: left.to_numpy()}).merge(
            extra.assign(**{_KEY: right.to_numpy()}),
            on=_KEY,
            how="inner" if joined.required else "left",
            sort=False,
        )
        out = merged.drop(columns=[_KEY]).reset_index(drop=True)
        n_miss = int((~found).sum())
        note = f"{joined.file}: {int(found.sum())} of {len(found)} rows matched on '{key}'"
        if n_miss:
            fate = "left out" if joined.required else "kept with its columns empty"
            missed = left[~found.to_numpy()].fillna("<missing>")
            note += f"; {n_miss} without a match {fate} ({_examples(missed)})"
        if not unused.empty:
            note += f"; {len(unused)} key(s) of {joined.file} match no row ({_examples(unused)})"
        notes.append(note)
    return out, notes
