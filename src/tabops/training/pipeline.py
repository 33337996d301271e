"""The scikit-learn pipeline a spec describes: per-feature preprocessing, then the estimator."""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tabops.spec.features import kind_of
from tabops.spec.schema import UseCase
from tabops.training.estimators import build_estimator

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
        SpecError: the model family is unknown, or a hyperparameter is unknown or invalid
            for it.
    """
    numeric = [f for f in spec.features if kind_of(f).pipeline == "numeric"]
    optional_numeric = [f.name for f in numeric if not f.required]
    required_numeric = [f.name for f in numeric if f.required]
    categories = [f for f in spec.features if kind_of(f).pipeline == "category"]
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
    model = build_estimator(spec.model.family, spec.training.seed, merged, spec.name)
    return Pipeline([("preprocess", preprocess), ("model", model)])
