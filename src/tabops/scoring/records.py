"""Conversions between typed frames and API records (dicts of API field values)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tabops.spec.features import kind_of
from tabops.spec.schema import UseCase

Record = Mapping[str, Any]
"""One validated record: API field names, None for missing values."""


def records_to_frame(spec: UseCase, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Records (API field names; None for missing) as the frame the pipeline was trained on:
    floats with NaN for numbers, integers and booleans; objects with NaN for categories."""
    columns: dict[str, np.ndarray] = {}
    for feature in spec.features:
        values = [r.get(feature.name) for r in records]
        columns[feature.name] = kind_of(feature).frame_column(values)
    return pd.DataFrame(columns)


_GAP_ROWS = 50  # reference rows repeated with gaps, per optional feature


def api_records(spec: UseCase, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a typed frame as the API passes records: numbers float, integers int,
    booleans bool, categories str, missing values None."""
    columns = []
    for feature in spec.features:
        col, to = frame[feature.name], kind_of(feature).api_value
        missing = col.isna().to_numpy()
        values = zip(col.to_numpy(object), missing, strict=True)
        columns.append([None if m else to(v) for v, m in values])
    names = spec.feature_names
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def reference_records(spec: UseCase, reference: pd.DataFrame) -> list[Record]:
    """The reference sample as the API would pass it, plus copies with gaps.

    Numbers become float, integers int, booleans bool, categories str, missing values None.
    Up to 50 rows are repeated with each optional feature missing, and (with several
    optional features) with all of them missing.

    Args:
        spec: The use case.
        reference: Rows holding the feature columns, typed as training typed them.

    Returns:
        The records, reference rows first.
    """
    records: list[Record] = list(api_records(spec, reference))
    optional = [f.name for f in spec.features if not f.required]
    head = records[:_GAP_ROWS]
    gaps = [{**r, name: None} for name in optional for r in head]
    if len(optional) > 1:
        gaps += [{**r, **dict.fromkeys(optional)} for r in head]
    return records + gaps
