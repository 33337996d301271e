"""Model families: which scikit-learn estimator each spec family name builds."""

from __future__ import annotations

from typing import Any

from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from tabops.errors import FieldIssue, SpecError
from tabops.spec.schema import UseCase


def _estimator(spec: UseCase, params: dict[str, Any]) -> Any:
    seed = spec.training.seed
    family = spec.model.family
    estimator: Any
    if family == "logistic_regression":
        estimator = LogisticRegression(max_iter=2000)
    elif family == "random_forest":
        estimator = RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1)
    else:
        estimator = HistGradientBoostingClassifier(random_state=seed)
    unknown = sorted(set(params) - set(estimator.get_params()))
    if unknown:
        raise SpecError(
            f"use case '{spec.name}': model.params has unknown parameter(s) for {family}: "
            f"{', '.join(unknown)}"
        )
    check_params(spec, estimator, params)
    try:
        return estimator.set_params(**params)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"use case '{spec.name}': invalid model.params: {exc}") from None


def check_params(spec: UseCase, estimator: Any, params: dict[str, Any]) -> None:
    """Check hyperparameter values against the estimator's own constraints now, rather
    than when ``fit`` raises minutes into a run (``C: -1``, ``C: high``).

    Args:
        spec: The use case, for the message.
        estimator: The family's estimator with its default parameters.
        params: The parameters to check, each on its own.

    Raises:
        SpecError: one detail per invalid parameter, named ``model.params.<name>``.
    """
    from sklearn.utils._param_validation import InvalidParameterError

    issues = []
    for name in sorted(params):
        single = clone(estimator).set_params(**{name: params[name]})
        try:
            single._validate_params()
        except InvalidParameterError as exc:
            issues.append(FieldIssue(f"model.params.{name}", str(exc)))
    if issues:
        raise SpecError(
            f"use case '{spec.name}': invalid model.params for {spec.model.family}", issues
        )
