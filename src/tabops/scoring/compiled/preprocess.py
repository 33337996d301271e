"""The ColumnTransformer of a fitted pipeline, compiled to numpy."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tabops.errors import CompileError
from tabops.scoring.base import Matrix
from tabops.scoring.records import Record
from tabops.spec.features import kind_of
from tabops.spec.schema import UseCase


def _imputes_nan(imputer: SimpleImputer) -> bool:
    missing = imputer.missing_values
    return isinstance(missing, float) and missing != missing


class Preprocessor:
    """Validated records to the matrix the fitted ColumnTransformer produces, without pandas.

    Columns follow ``get_feature_names_out()``: per transformer, imputed numbers then their
    missing-value indicators, or one column per category. Every gap is imputed, so the
    matrix never holds NaN. Stateless after construction, hence safe across threads.
    """

    def __init__(self, spec: UseCase, transformer: ColumnTransformer) -> None:
        """Read the learned parameters of a fitted ColumnTransformer.

        Args:
            spec: The use case (feature types).
            transformer: The fitted ``preprocess`` step.

        Raises:
            CompileError: a transformer or option this class does not reproduce.
        """
        self.names: list[str] = []
        self._numeric: list[tuple[str, int, float, int]] = []  # name, column, fill, indicator
        self._categories: list[tuple[str, dict[Any, int]]] = []
        self._shift: list[float] = []
        self._scale: list[float] = []
        for block, step, columns in transformer.transformers_:
            if isinstance(step, str) and step == "drop":
                continue
            if not isinstance(step, Pipeline) or not all(isinstance(c, str) for c in columns):
                raise CompileError(f"transformer '{block}' is not a pipeline over named columns")
            prefix = f"{block}__" if transformer.verbose_feature_names_out is True else ""
            parts = [s for _, s in step.steps]
            kinds = {kind_of(spec.feature(c)).pipeline == "category" for c in columns}
            if kinds == {True}:
                self._add_categories(parts, list(columns), prefix)
            elif kinds == {False}:
                self._add_numbers(parts, list(columns), prefix)
            else:
                raise CompileError(f"transformer '{block}' mixes categories and numbers")
        if self.names != [str(n) for n in transformer.get_feature_names_out()]:
            raise CompileError("the compiled column layout differs from the ColumnTransformer's")
        self.width = len(self.names)
        numeric = self._numeric
        self._getter = itemgetter(*(n for n, _, _, _ in numeric)) if numeric else None
        self._num_cols = np.asarray([c for _, c, _, _ in numeric], dtype=np.intp)
        self._fills = np.asarray([f for _, _, f, _ in numeric], dtype=np.float64)
        flagged = [i for i, (_, _, _, ind) in enumerate(numeric) if ind >= 0]
        self._ind_src = np.asarray(flagged, dtype=np.intp)
        self._ind_cols = np.asarray([numeric[i][3] for i in flagged], dtype=np.intp)
        self._shift_a = np.asarray(self._shift, dtype=np.float64)
        self._scale_a = np.asarray(self._scale, dtype=np.float64)
        self._template = [0.0] * (self.width + 1)  # the last slot sinks unknown categories
        self._scaling = list(zip(self._shift, self._scale, strict=True))

    def _add_numbers(self, parts: list[Any], columns: list[str], prefix: str) -> None:
        imputer, scaler = parts[0], parts[1] if len(parts) == 2 else None
        if len(parts) > 2 or not isinstance(imputer, SimpleImputer) or not _imputes_nan(imputer):
            raise CompileError("numbers need a SimpleImputer of NaN, then a StandardScaler")
        if scaler is not None and not isinstance(scaler, StandardScaler):
            raise CompileError(f"unsupported numeric step {type(scaler).__name__}")
        fills = np.asarray(imputer.statistics_, dtype=np.float64)
        if not np.isfinite(fills).all():  # SimpleImputer drops a column empty at fit time
            raise CompileError("an imputer drops a column that was empty in training")
        first = len(self.names)
        flagged = [int(j) for j in imputer.indicator_.features_] if imputer.add_indicator else []
        indicator = {j: first + len(columns) + k for k, j in enumerate(flagged)}
        self.names += [f"{prefix}{c}" for c in columns]
        self.names += [f"{prefix}missingindicator_{columns[j]}" for j in flagged]
        for j, name in enumerate(columns):
            self._numeric.append((name, first + j, float(fills[j]), indicator.get(j, -1)))
        shift, scale = [0.0] * len(self.names[first:]), [1.0] * len(self.names[first:])
        if scaler is not None:  # StandardScaler keeps mean_/scale_ None when switched off
            shift = [float(v) for v in scaler.mean_] if scaler.with_mean else shift
            scale = [float(v) for v in scaler.scale_] if scaler.with_std else scale
        self._shift += shift
        self._scale += scale

    def _add_categories(self, parts: list[Any], columns: list[str], prefix: str) -> None:
        encoder, fills = parts[-1], [None] * len(columns)
        if len(parts) == 2 and isinstance(parts[0], SimpleImputer) and _imputes_nan(parts[0]):
            fills = list(parts[0].statistics_)
        elif len(parts) != 1:
            raise CompileError("categories need a SimpleImputer of NaN, then a OneHotEncoder")
        if (
            not isinstance(encoder, OneHotEncoder)
            or encoder.drop_idx_ is not None
            or encoder.handle_unknown != "ignore"
            or getattr(encoder, "_infrequent_enabled", False)
        ):
            raise CompileError("categories need OneHotEncoder(handle_unknown='ignore', no drop)")
        for name, fill, values in zip(columns, fills, encoder.categories_, strict=True):
            lookup = {v: len(self.names) + k for k, v in enumerate(values.tolist())}
            self.names += [f"{prefix}{name}_{v}" for v in values.tolist()]
            if fill in lookup:  # a gap imputed with a known category lands on its column
                lookup[None] = lookup[fill]
            self._categories.append((name, lookup))
        self._shift += [0.0] * (len(self.names) - len(self._shift))
        self._scale += [1.0] * (len(self.names) - len(self._scale))

    def matrix(self, records: Sequence[Record]) -> Matrix:
        """The model matrix of a batch: numbers converted at once, one lookup per category.

        Args:
            records: Validated records (API field names, None for missing).

        Returns:
            A ``(len(records), width)`` float64 matrix.
        """
        n = len(records)
        z = np.zeros((n, self.width + 1))
        if self._getter is not None:
            try:  # validated records hold every field: one C-level gather per record
                rows = list(map(self._getter, records))
            except KeyError:
                rows = [tuple(r.get(f[0]) for f in self._numeric) for r in records]
            raw = np.array(rows, dtype=np.float64).reshape(n, len(self._numeric))  # None: NaN
            missing = np.isnan(raw)
            z[:, self._num_cols] = np.where(missing, self._fills, raw)
            z[:, self._ind_cols] = missing[:, self._ind_src]
        every, sink = np.arange(n), self.width
        for name, lookup in self._categories:
            z[every, [lookup.get(r.get(name), sink) for r in records]] = 1.0
        # the scaler's own operations and order, so the values are bit-identical
        out: Matrix = (z[:, :sink] - self._shift_a) / self._scale_a
        return out

    def _unscaled(self, record: Record) -> list[float]:
        """One record's model row before scaling, and the sink slot of unknown categories
        last: numbers or their fill (and missing indicators), one-hot categories."""
        z = self._template.copy()
        for name, col, fill, indicator in self._numeric:
            value = record.get(name)
            if value is None or value != value:
                z[col] = fill
                if indicator >= 0:
                    z[indicator] = 1.0
            else:
                z[col] = float(value)
        for name, lookup in self._categories:
            z[lookup.get(record.get(name), self.width)] = 1.0
        return z

    def row(self, record: Record) -> Matrix:
        """The model matrix of one record, with the least per-call work.

        Args:
            record: A validated record.

        Returns:
            A ``(1, width)`` float64 matrix, equal to ``matrix([record])``.
        """
        sink = self.width
        x = np.array(self._unscaled(record)[:sink], dtype=np.float64)
        out: Matrix = ((x - self._shift_a) / self._scale_a).reshape(1, sink)
        return out

    def values(self, record: Record) -> list[float]:
        """The model row of one record in Python floats: :meth:`row`'s values, bit for bit
        (the same IEEE operations, element by element), without an array.

        Args:
            record: A validated record.
        """
        z = self._unscaled(record)
        # z ends with the sink slot, which has no scaling: zip stops before it
        return [(v - shift) / scale for v, (shift, scale) in zip(z, self._scaling, strict=False)]
