"""Model families: the registry of what a spec's ``model.family`` may name.

Each :class:`ModelFamily` says which scikit-learn estimator the name builds (with tabops's
defaults and the spec's seed), which types its fitted pipeline holds that skops must be
told to trust when a model is loaded, and, optionally, how the serving fast path
compiles it to numpy. The spec's allowed names (:data:`FamilyName`), the API's training
override, training, the model registry and the compiled scorer all read this one table,
so adding a family is one entry here (plus its evaluator, when it has a fast path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema
from sklearn.base import clone
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from tabops.errors import FieldIssue, SpecError
from tabops.scoring.compiled.estimators import (
    Evaluator,
    compile_boosting,
    compile_forest,
    compile_linear,
    compile_tree,
)

__all__ = [
    "FAMILIES",
    "FamilyName",
    "ModelFamily",
    "build_estimator",
    "check_params",
    "family_of",
    "skops_trusted_types",
]


@dataclass(frozen=True)
class ModelFamily:
    """One model family: how to build it, trust it when loaded, and compile it."""

    name: str
    estimator: type[Any]
    """The scikit-learn class it builds; a fitted model is of this family if it is one."""
    build: Callable[[int], Any]
    """The unfitted estimator with tabops's defaults, given the spec's seed."""
    trusted_types: tuple[str, ...] = ()
    """Types its fitted pipeline holds beyond those skops trusts by default."""
    compile: Callable[[Any], Evaluator] | None = None
    """Its fast path (``scoring/compiled/estimators.py``); None: served by the pipeline."""


_FAMILIES = (
    ModelFamily(
        "logistic_regression",
        LogisticRegression,
        lambda seed: LogisticRegression(max_iter=2000),
        compile=compile_linear,
    ),
    ModelFamily(
        "random_forest",
        RandomForestClassifier,
        lambda seed: RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1),
        trusted_types=("sklearn.tree._tree.Tree",),
        compile=compile_forest,
    ),
    ModelFamily(
        "hist_gradient_boosting",
        HistGradientBoostingClassifier,
        lambda seed: HistGradientBoostingClassifier(random_state=seed),
        trusted_types=("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",),
        compile=compile_boosting,
    ),
    ModelFamily(
        "decision_tree",
        DecisionTreeClassifier,
        # leaves of at least 5 rows: a fully grown tree answers 0 or 1 and overfits
        lambda seed: DecisionTreeClassifier(min_samples_leaf=5, random_state=seed),
        trusted_types=("sklearn.tree._tree.Tree",),
        compile=compile_tree,
    ),
    ModelFamily(
        "extra_trees",
        ExtraTreesClassifier,
        lambda seed: ExtraTreesClassifier(n_estimators=300, random_state=seed, n_jobs=1),
        trusted_types=("sklearn.tree._tree.Tree",),
        compile=compile_forest,
    ),
)

FAMILIES: Mapping[str, ModelFamily] = MappingProxyType({f.name: f for f in _FAMILIES})
"""Every model family, by the name a spec gives it."""


def _known(name: str) -> str:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family '{name}'; one of {', '.join(FAMILIES)}")
    return name


FamilyName = Annotated[
    str,
    AfterValidator(_known),
    WithJsonSchema({"type": "string", "enum": list(FAMILIES)}),
]
"""A family name, as the spec and the API accept it: one of :data:`FAMILIES`."""


def build_estimator(family: str, seed: int, params: Mapping[str, Any], usecase: str) -> Any:
    """The unfitted estimator of a family, with hyperparameters set.

    Args:
        family: The family's name.
        seed: The spec's training seed.
        params: Hyperparameters overriding the family's defaults.
        usecase: The use case's name, for error messages.

    Raises:
        SpecError: the family is unknown, or a hyperparameter is unknown or invalid for it.
    """
    if family not in FAMILIES:
        raise SpecError(
            f"use case '{usecase}': unknown model family '{family}' (known: {', '.join(FAMILIES)})"
        )
    estimator = FAMILIES[family].build(seed)
    unknown = sorted(set(params) - set(estimator.get_params()))
    if unknown:
        raise SpecError(
            f"use case '{usecase}': model.params has unknown parameter(s) for {family}: "
            f"{', '.join(unknown)}"
        )
    check_params(estimator, params, family=family, usecase=usecase)
    try:
        return estimator.set_params(**params)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"use case '{usecase}': invalid model.params: {exc}") from None


def check_params(estimator: Any, params: Mapping[str, Any], *, family: str, usecase: str) -> None:
    """Check hyperparameter values against the estimator's own constraints now, rather
    than when ``fit`` raises minutes into a run (``C: -1``, ``C: high``).

    Args:
        estimator: The family's estimator with its default parameters.
        params: The parameters to check, each on its own.
        family: The family's name, for the message.
        usecase: The use case's name, for the message.

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
        raise SpecError(f"use case '{usecase}': invalid model.params for {family}", issues)


def family_of(model: Any) -> ModelFamily | None:
    """The family a fitted estimator belongs to (its most specific registered class)."""
    by_class = {f.estimator: f for f in FAMILIES.values()}
    return next((by_class[c] for c in type(model).__mro__ if c in by_class), None)


def skops_trusted_types() -> list[str]:
    """Every type a registered family's pipeline may hold that skops must be told to trust."""
    types = ["numpy.dtype"]  # the pipelines' numpy arrays, whatever the family
    for family in FAMILIES.values():
        types += [t for t in family.trusted_types if t not in types]
    return types
