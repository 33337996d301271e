"""The scikit-learn pipeline a spec describes: per-feature preprocessing, then the estimator."""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tabops.spec.schema import UseCase
from tabops.training.estimators import _estimator

MISSING_CATEGORY = "__missing__"


def build_pipeline(spec: UseCase, params: dict[str, Any] | None = None) -> Pipeline:
    """The preprocessing and model pipeline the spec describes.

    Numbers, integers and booleans: median imputation (with a missing-value indicator for
    optional features, since a gap can itself be informative) then standard scaling.
    Categories: missing values become their own level, then one-hot encoding over the
    spec's allowed values; a value outside them (never accepted by the API) is ignored.

    Args:
        spec: The use case.
        params: Hyperparameters overriding the spec's ``model.params``.

    Raises:
        SpecError: a hyperparameter is unknown or invalid for the model family.
    """
    numeric = [f.name for f in spec.features_of("number", "integer", "boolean")]
    optional_numeric = [
        f.name for f in spec.features_of("number", "integer", "boolean") if not f.required
    ]
    required_numeric = [n for n in numeric if n not in optional_numeric]
    categories = spec.features_of("category")
    transformers: list[tuple[str, Any, list[str]]] = []
    if required_numeric:
        transformers.append(
            (
                "num",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                required_numeric,
            )
        )
    if optional_numeric:
        transformers.append(
            (
                "num_optional",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                optional_numeric,
            )
        )
    if categories:
        encoder = OneHotEncoder(
            categories=[list(f.values or []) for f in categories],
            handle_unknown="ignore",
            sparse_output=False,
        )
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                        ("onehot", encoder),
                    ]
                ),
                [f.name for f in categories],
            )
        )
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)
    merged = {**spec.model.params, **(params or {})}
    return Pipeline([("preprocess", preprocess), ("model", _estimator(spec, merged))])
