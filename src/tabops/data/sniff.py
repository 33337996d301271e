"""Reading real-world CSV files: encodings, separators, missing-value markers, decimal
commas and header problems.

``tabops init`` detects these once and writes what it found into the spec (``data.encoding``,
``separator``, ``decimal``, ``missing_values``); seeding and ingestion then read the files the
same way through :func:`read_csv_text`.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from tabops.errors import DataNotFoundError

__all__ = [
    "EXTRA_MISSING_MARKERS",
    "detect_encoding",
    "duplicate_headers",
    "missing_markers",
    "read_csv_text",
    "sniff_separator",
    "uses_decimal_comma",
]

EXTRA_MISSING_MARKERS = ("?", "-", "--", ".", "n.a.", "missing", "#N/D")
"""Cell values ``init`` takes for missing values when it finds them, beyond the ones
pandas always reads as missing (``""``, ``NA``, ``N/A``, ``n/a``, ``null``, ``NULL``, ``NaN``,
``nan``, ``None``, ``#N/A`` ...)."""
_SAMPLE = 256 * 1024
_COMMA_NUMBER = re.compile(r"^[+-]?\d+,\d+$")
_DOT_NUMBER = re.compile(r"^[+-]?\d*\.\d+$")
_FALLBACK_ENCODINGS = ("cp1252", "latin-1")


def _raw_sample(path: Path) -> bytes:
    with pd.io.common.get_handle(str(path), "rb", compression="infer", is_text=False) as handle:
        data: bytes = handle.handle.read(_SAMPLE * 16)
    return data


def detect_encoding(path: Path) -> str:
    """The file's text encoding: ``utf-8`` (with or without a byte-order mark) when it
    decodes as such, else ``cp1252`` (Windows Western European, a superset of Latin-1 for
    text), else ``latin-1``, which reads any byte."""
    data = _raw_sample(path)
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 4:  # a character cut at the end of the sample
            return "utf-8"
    for encoding in _FALLBACK_ENCODINGS:
        try:
            data.decode(encoding)
            return encoding
        except UnicodeDecodeError:
            continue
    return "latin-1"


def _python_encoding(encoding: str) -> str:
    # utf-8-sig reads plain utf-8 too, and drops a byte-order mark (which would otherwise
    # become part of the first column's name)
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _text_sample(path: Path, encoding: str) -> str:
    return _raw_sample(path)[:_SAMPLE].decode(_python_encoding(encoding), errors="replace")


def sniff_separator(path: Path, encoding: str) -> str:
    """The field separator among ``,``, ``;``, tab and ``|`` (``,`` when unsure)."""
    sample = _text_sample(path, encoding)
    lines = sample.splitlines()
    if len(lines) > 1:
        sample = "\n".join(lines[:-1])  # the last line of the sample may be cut
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def duplicate_headers(path: Path, encoding: str, separator: str) -> dict[str, int]:
    """Header names that appear more than once, with their count (pandas reads the
    repeats as ``name.1``, ``name.2``...)."""
    first = _text_sample(path, encoding).splitlines()[:1]
    if not first:
        return {}
    header = next(csv.reader(io.StringIO(first[0]), delimiter=separator), [])
    counts = Counter(h.strip() for h in header)
    return {h: n for h, n in counts.items() if n > 1}


def read_csv_text(
    path: Path,
    separator: str = ",",
    encoding: str = "utf-8",
    missing_values: list[str] | tuple[str, ...] = (),
) -> pd.DataFrame:
    """Read a CSV file as text cells (``None``/NaN where missing), as the spec says.

    Raises:
        DataNotFoundError: the file is missing, is not CSV, or is not in that encoding
            (the message names the encoding to set).
    """
    try:
        frame = pd.read_csv(
            path,
            sep=separator,
            dtype=str,
            keep_default_na=True,
            encoding=_python_encoding(encoding),
        )
    except FileNotFoundError:
        raise DataNotFoundError(f"no such file: {path}") from None
    except UnicodeDecodeError:
        guess = detect_encoding(path)
        raise DataNotFoundError(
            f"cannot read {path}: it is not {encoding} text; it looks like {guess}: set "
            f"data.encoding: {guess} in the spec"
        ) from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataNotFoundError(f"cannot read {path} as CSV: {exc}") from None
    if missing_values:
        # matched on trimmed cells: " ?" after a separator and a space is a marker too
        markers = set(missing_values)
        for column in frame.columns:
            cells = frame[column]
            hit = cells.str.strip().isin(markers) & cells.notna()
            if hit.any():
                frame[column] = cells.where(~hit)
    return frame


def missing_markers(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Which of :data:`EXTRA_MISSING_MARKERS` occur as whole cells, and in which columns."""
    found: dict[str, list[str]] = {}
    for column in frame.columns:
        cells = set(frame[column].dropna().astype(str).str.strip().unique())
        for marker in EXTRA_MISSING_MARKERS:
            if marker in cells:
                found.setdefault(marker, []).append(str(column))
    return found


def uses_decimal_comma(frame: pd.DataFrame) -> bool:
    """Whether numbers are written with a decimal comma (``3,14``): some column holds only
    such numbers (and integers), and no column holds numbers with a decimal point."""
    comma = dot = False
    for column in frame.columns:
        cells = frame[column].dropna().astype(str).str.strip()
        if cells.empty:
            continue
        if cells.str.fullmatch(_DOT_NUMBER.pattern).any():
            dot = True
        with_comma = cells.str.fullmatch(_COMMA_NUMBER.pattern)
        if (
            with_comma.any()
            and pd.to_numeric(cells.str.replace(",", ".", regex=False), errors="coerce")
            .notna()
            .all()
        ):
            comma = True
    return comma and not dot
