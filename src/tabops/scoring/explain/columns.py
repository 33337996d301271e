"""Which spec feature each column of the model matrix comes from.

The fitted ColumnTransformer of :func:`tabops.training.pipeline.build_pipeline` turns a
number into one scaled column plus, for an optional number, a missing-value indicator, and
a category into one column per allowed value. An explanation in the spec's terms sums the
contributions of a feature's columns: :func:`fold_matrix` is that sum as a 0/1 matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from tabops.errors import ExplanationNotSupportedError
from tabops.scoring.base import Matrix
from tabops.spec.schema import UseCase

__all__ = ["column_owners", "fold_matrix"]


def _steps(step: Any) -> list[Any]:
    return [s for _, s in step.steps] if isinstance(step, Pipeline) else [step]


def _block_names(spec: UseCase, step: Any, columns: list[str]) -> tuple[list[str], list[str]]:
    """The output column names of one transformer block and the feature each comes from."""
    parts = _steps(step)
    if all(spec.feature(c).type == "category" for c in columns):
        encoder = parts[-1]
        if not isinstance(encoder, OneHotEncoder) or encoder.drop_idx_ is not None:
            raise ExplanationNotSupportedError("categories need a OneHotEncoder without drop")
        names, owners = [], []
        for column, values in zip(columns, encoder.categories_, strict=True):
            names += [f"{column}_{v}" for v in values.tolist()]
            owners += [column] * len(values)
        return names, owners
    if any(spec.feature(c).type == "category" for c in columns):
        raise ExplanationNotSupportedError("a transformer mixes categories and numbers")
    imputer = parts[0]
    if not isinstance(imputer, SimpleImputer):
        raise ExplanationNotSupportedError("numbers need a SimpleImputer first")
    flagged = [int(j) for j in imputer.indicator_.features_] if imputer.add_indicator else []
    names = list(columns) + [f"missingindicator_{columns[j]}" for j in flagged]
    return names, list(columns) + [columns[j] for j in flagged]


def column_owners(spec: UseCase, transformer: ColumnTransformer) -> list[str]:
    """The spec feature behind each output column of a fitted ColumnTransformer.

    Args:
        spec: The use case.
        transformer: The fitted ``preprocess`` step.

    Returns:
        One feature name per column of ``transformer.transform(...)``, in column order.

    Raises:
        ExplanationNotSupportedError: a layout whose columns cannot be traced to features.
    """
    names: list[str] = []
    owners: list[str] = []
    for block, step, columns in transformer.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        if isinstance(step, str) or not all(isinstance(c, str) for c in columns):
            raise ExplanationNotSupportedError(f"transformer '{block}' is not over named columns")
        prefix = f"{block}__" if transformer.verbose_feature_names_out is True else ""
        block_names, block_owners = _block_names(spec, step, list(columns))
        names += [prefix + n for n in block_names]
        owners += block_owners
    if names != [str(n) for n in transformer.get_feature_names_out()]:
        raise ExplanationNotSupportedError(
            "the model's columns cannot be traced back to the spec's features"
        )
    return owners


def fold_matrix(spec: UseCase, owners: list[str]) -> Matrix:
    """The ``(columns, features)`` 0/1 matrix that sums column contributions per feature.

    Args:
        spec: The use case (its feature order is the output's).
        owners: :func:`column_owners`.
    """
    index = {name: i for i, name in enumerate(spec.feature_names)}
    fold: npt.NDArray[np.float64] = np.zeros((len(owners), len(index)))
    fold[np.arange(len(owners)), [index[o] for o in owners]] = 1.0
    return fold
