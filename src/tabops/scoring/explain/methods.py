"""Exact per-column contributions for each model family that has an exact method.

A method gives, for a model matrix ``x`` of shape ``(n, w)``, the contributions of each
column to each of its outputs, ``(n, w, k)``, and a base value per output, ``(k,)``, such
that ``base + columns(x).sum(axis=1)`` is the model's own raw output, ``raw(x)``.

- Logistic regression: ``coef * (x - mean)`` with ``mean`` the average model matrix of the
  background sample, and ``base = intercept + coef @ mean``. Exact by construction.
- Tree models: TreeSHAP (``shap.TreeExplainer``, path-dependent: no background, the base is
  the model's average output over its training data as the trees' node counts record it).
  Exact Shapley values of the tree ensemble's output.

Everything else raises :class:`~tabops.errors.ExplanationNotSupportedError`: tabops never
substitutes an approximation silently.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from tabops.errors import ExplanationNotSupportedError
from tabops.scoring.base import Matrix
from tabops.scoring.explain.explanation import Method, Scale

__all__ = ["ColumnMethod", "LinearMethod", "TreeMethod", "method_for"]

_BOOSTING = (HistGradientBoostingClassifier, GradientBoostingClassifier)
_AVERAGING = (
    RandomForestClassifier,
    ExtraTreesClassifier,
    DecisionTreeClassifier,
    ExtraTreeClassifier,
)


class ColumnMethod(Protocol):
    """Contributions of the model matrix's columns to each of the model's outputs."""

    method: Method
    scale: Scale
    outputs: tuple[str, ...]
    """The class each output scores."""
    base: npt.NDArray[np.float64]
    """``(k,)``: the base value of each output."""

    def columns(self, x: Matrix) -> npt.NDArray[np.float64]:
        """``(n, w, k)`` contributions of each column to each output."""
        ...

    def raw(self, x: Matrix) -> Matrix:
        """``(n, k)``: the fitted estimator's own output, computed by scikit-learn."""
        ...


def _binary_sign(classes: list[str], positive: str | None) -> tuple[float, str]:
    """scikit-learn scores ``classes_[1]`` in a binary task; the positive class may be
    ``classes_[0]``, whose log-odds are the opposite."""
    if positive is None or positive == classes[1]:
        return 1.0, classes[1]
    if positive != classes[0]:
        raise ExplanationNotSupportedError(f"the model has no class '{positive}'")
    return -1.0, classes[0]


class LinearMethod:
    """Logistic regression: each column's term of the decision function, against a baseline."""

    method: Method = "linear"

    def __init__(self, model: LogisticRegression, positive: str | None, background: Matrix):
        """Read the coefficients and the baseline.

        Args:
            model: The fitted estimator.
            positive: The positive class (binary tasks), else None.
            background: Model matrix of the rows whose average is the baseline.
        """
        classes = [str(c) for c in model.classes_]
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.asarray(model.intercept_, dtype=np.float64)
        self.scale: Scale
        self.outputs: tuple[str, ...]
        self._sign = 1.0
        if coef.shape[0] == 1:
            self._sign, target = _binary_sign(classes, positive)
            self.scale, self.outputs = "log_odds", (target,)
        elif coef.shape[0] == len(classes):
            self.scale, self.outputs = "class_logit", tuple(classes)
        else:
            raise ExplanationNotSupportedError("coefficients do not match the model's classes")
        self._model = model
        self.weights: Matrix = (self._sign * coef).T  # (w, k)
        self.mean: Matrix = np.asarray(background, dtype=np.float64).mean(axis=0)
        self.base = self._sign * intercept + self.mean @ self.weights

    def columns(self, x: Matrix) -> npt.NDArray[np.float64]:
        out: npt.NDArray[np.float64] = (x - self.mean)[:, :, None] * self.weights[None, :, :]
        return out

    def raw(self, x: Matrix) -> Matrix:
        scores = np.asarray(self._model.decision_function(x), dtype=np.float64)
        out: Matrix = self._sign * scores.reshape(x.shape[0], -1)
        return out


def _tree_explainer(model: Any) -> Any:
    # shap's plotting module warns about matplotlib deprecations when it is imported
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import shap
    try:
        return shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    except Exception as exc:  # shap refuses a tree model it cannot read exactly
        raise ExplanationNotSupportedError(
            f"TreeSHAP cannot read {type(model).__name__}: {exc}"
        ) from None


class TreeMethod:
    """Tree ensembles: TreeSHAP values of the ensemble's raw output.

    Gradient boosting explains its log-odds (binary) or its per-class raw score before the
    softmax; forests and single trees explain the probability they average.
    """

    method: Method = "tree_shap"

    def __init__(self, model: Any, positive: str | None) -> None:
        """Build shap's explainer for the fitted estimator.

        Args:
            model: A fitted scikit-learn tree model (see :func:`method_for`).
            positive: The positive class (binary tasks), else None.

        Raises:
            ExplanationNotSupportedError: shap cannot read the model.
        """
        classes = [str(c) for c in model.classes_]
        self._model, self._explainer = model, _tree_explainer(model)
        self._boosting = isinstance(model, _BOOSTING)
        expected = np.atleast_1d(np.asarray(self._explainer.expected_value, dtype=np.float64))
        self.scale: Scale
        self.outputs: tuple[str, ...]
        self._select: list[int] | None
        self._sign = 1.0
        if self._boosting and len(classes) == 2:
            self._sign, target = _binary_sign(classes, positive)
            self.scale, self.outputs, self._select = "log_odds", (target,), [0]
        elif self._boosting:
            self.scale, self.outputs, self._select = "class_logit", tuple(classes), None
        elif len(classes) == 2:
            _, target = _binary_sign(classes, positive)
            self.scale, self.outputs = "probability", (target,)
            self._select = [classes.index(target)]
        else:
            self.scale, self.outputs, self._select = "probability", tuple(classes), None
        if self._select is not None and expected.size > 1:
            expected = expected[self._select]
        if expected.size != len(self.outputs):
            raise ExplanationNotSupportedError("shap's base values do not match the classes")
        self.base = self._sign * expected

    def columns(self, x: Matrix) -> npt.NDArray[np.float64]:
        values = np.asarray(
            self._explainer.shap_values(x, check_additivity=False), dtype=np.float64
        )
        if values.ndim == 2:  # one output: binary gradient boosting
            values = values[:, :, None]
        if self._select is not None and values.shape[2] > 1:
            values = values[:, :, self._select]
        out: npt.NDArray[np.float64] = self._sign * values
        return out

    def raw(self, x: Matrix) -> Matrix:
        if self._boosting:
            scores = np.asarray(self._model.decision_function(x), dtype=np.float64)
            out: Matrix = self._sign * scores.reshape(x.shape[0], -1)
            return out
        proba = np.asarray(self._model.predict_proba(x), dtype=np.float64)
        return proba if self._select is None else proba[:, self._select]


def method_for(model: Any, positive: str | None, background: Matrix) -> ColumnMethod:
    """The exact method for a fitted estimator.

    Args:
        model: The pipeline's estimator.
        positive: The positive class (binary tasks), else None.
        background: Model matrix of the reference rows (the linear baseline).

    Raises:
        ExplanationNotSupportedError: the estimator has no exact method here.
    """
    if isinstance(model, LogisticRegression):
        return LinearMethod(model, positive, background)
    if isinstance(model, (*_BOOSTING, *_AVERAGING)):
        return TreeMethod(model, positive)
    raise ExplanationNotSupportedError(
        f"{type(model).__name__} has no exact explanation method (logistic regression and "
        "tree models have); tabops does not approximate one"
    )
