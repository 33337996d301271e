"""Evaluators of fitted estimators in numpy: linear models, trees, forests, gradient boosting.

Each ``compile_*`` function turns one fitted estimator into an :class:`Evaluator`; the
model-family registry (:mod:`tabops.training.estimators`) says which one a family uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import mul
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from tabops.errors import CompileError

__all__ = [
    "Evaluate",
    "Evaluator",
    "compile_boosting",
    "compile_forest",
    "compile_linear",
    "compile_tree",
]

# scoring.base.Matrix; not imported, so that the family registry (which the spec reads)
# depends on no module that reads the spec
Matrix = npt.NDArray[np.float64]
Evaluate = Callable[[Matrix], Matrix]
"""The model's class probabilities, in its ``classes_`` order, of a compiled matrix."""
EvaluateOne = Callable[[list[float]], list[float]]
"""The same for one record's compiled row, in Python floats (no array for one row)."""

# Batches up to this size walk the trees in numpy; larger ones call the fitted estimator,
# whose compiled loops win once its per-call overhead (joblib per tree for a forest,
# OpenMP per predictor for boosting) is spread over enough rows: on 2 cores both cost the
# same per row near 128 rows (forest, 300 trees) and 100 rows (boosting, 100 trees).
WALK_ROWS = 100


@dataclass(frozen=True)
class Evaluator:
    """A fitted estimator compiled: how batches up to and beyond ``small_limit`` are scored."""

    path: str
    """The scoring path reported (``compiled-numpy``, ``compiled-trees``)."""
    small: Evaluate
    large: Evaluate
    small_limit: int
    one: EvaluateOne | None = None
    """One record without numpy, where the family has it: for a row of a few dozen
    values, numpy's per-call overhead is most of the work."""


def _softmax(scores: Matrix) -> Matrix:
    # sklearn.utils.extmath.softmax's operations, in its order
    scores = scores - scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores


def _binary(p: Matrix) -> Matrix:
    return np.stack([1 - p, p], axis=1)


def _linear(model: LogisticRegression) -> Evaluate:
    """``LogisticRegression.predict_proba`` of sklearn 1.9: sigmoid, or softmax (3+ classes)."""
    coef_t = np.asarray(model.coef_, dtype=np.float64).T
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    if len(model.classes_) == 2 and coef_t.shape[1] == 1:
        return lambda x: _binary(expit((x @ coef_t + intercept)[:, 0]))
    if coef_t.shape[1] != len(model.classes_):
        raise CompileError("logistic regression coefficients do not match its classes")
    return lambda x: _softmax(x @ coef_t + intercept)


def _linear_one(model: LogisticRegression) -> EvaluateOne | None:
    """Binary logistic regression of one row in Python floats: the same products and
    sigmoid as :func:`_linear`, summed in order (numpy's dot may group the sum otherwise:
    the probabilities can differ in the last bits, far inside the parity tolerance)."""
    if len(model.classes_) != 2 or np.shape(model.coef_)[0] != 1:
        return None
    coef = [float(c) for c in np.asarray(model.coef_, dtype=np.float64)[0]]
    intercept = float(np.asarray(model.intercept_, dtype=np.float64)[0])

    def one(x: list[float]) -> list[float]:
        z = sum(map(mul, x, coef)) + intercept
        if z >= 0:  # expit without overflow either way
            p = 1.0 / (1.0 + math.exp(-z))
        else:
            e = math.exp(z)
            p = e / (1.0 + e)
        return [1.0 - p, p]

    return one


def compile_linear(model: LogisticRegression) -> Evaluator:
    """Logistic regression as one matrix product, whatever the batch size."""
    linear = _linear(model)
    return Evaluator("compiled-numpy", linear, linear, 1 << 62, _linear_one(model))


class _Trees:
    """Every tree of an ensemble in flat node arrays. Leaves point to themselves, so a
    fixed number of steps (the deepest leaf's depth) lands every row on its leaf."""

    def __init__(self, trees: list[tuple[Any, ...]], float32: bool) -> None:
        # each tree: (left, right, feature, threshold, is_leaf, (nodes, k) value, depth)
        sizes = [len(t[4]) for t in trees]
        offsets = np.cumsum([0, *sizes[:-1]])
        leaf = np.concatenate([t[4] for t in trees]).astype(bool)
        index = np.arange(leaf.size)

        def children(i: int) -> npt.NDArray[np.intp]:
            linked = [t[i].astype(np.intp) + o for t, o in zip(trees, offsets, strict=True)]
            return np.where(leaf, index, np.concatenate(linked))

        self.roots = offsets.astype(np.intp)
        self.left, self.right = children(0), children(1)
        self.feature = np.where(leaf, 0, np.concatenate([t[2] for t in trees])).astype(np.intp)
        self.threshold = np.where(leaf, np.inf, np.concatenate([t[3] for t in trees]))
        self.value = np.concatenate([t[5] for t in trees]).astype(np.float64)
        self.depth = max(int(t[6]) for t in trees)
        self.float32 = float32  # forests compare float32(x) <= threshold; boosting float64

    def totals(self, x: Matrix) -> Matrix:
        """The sum over the trees of each row's leaf value: ``(n, k)``."""
        flat = (x.astype(np.float32) if self.float32 else x).ravel()
        start = (np.arange(x.shape[0], dtype=np.intp) * x.shape[1])[:, None]
        node = np.tile(self.roots, (x.shape[0], 1))
        for _ in range(self.depth):
            # float32 values against float64 thresholds compare in float64, as sklearn's C does
            go_left = flat.take(start + self.feature.take(node)) <= self.threshold.take(node)
            node = np.where(go_left, self.left.take(node), self.right.take(node))
        out: Matrix = self.value[node].sum(axis=1)
        return out


def _tree_arrays(t: Any) -> tuple[Any, ...]:
    """A fitted ``sklearn.tree._tree.Tree`` as :class:`_Trees` takes it."""
    # tree_.value holds class fractions, which DecisionTreeClassifier returns as is
    return (t.children_left, t.children_right, t.feature, t.threshold, t.children_left == -1) + (
        t.value[:, 0, :],
        t.max_depth,
    )


def _forest(model: RandomForestClassifier | ExtraTreesClassifier) -> Evaluate:
    if model.n_outputs_ != 1:
        raise CompileError("multi-output forests are not supported")
    trees = [_tree_arrays(e.tree_) for e in model.estimators_]
    walk, count = _Trees(trees, float32=True), len(trees)
    return lambda x: walk.totals(x) / count


def compile_tree(model: DecisionTreeClassifier) -> Evaluator:
    """One decision tree: walked in numpy for small batches, sklearn beyond."""
    if model.n_outputs_ != 1:
        raise CompileError("multi-output trees are not supported")
    walk = _Trees([_tree_arrays(model.tree_)], float32=True)

    def evaluate(x: Matrix) -> Matrix:
        p = walk.totals(x)
        out: Matrix = p / p.sum(axis=1, keepdims=True)  # predict_proba normalises fractions
        return out

    return Evaluator("compiled-trees", evaluate, model.predict_proba, WALK_ROWS)


def compile_forest(model: RandomForestClassifier | ExtraTreesClassifier) -> Evaluator:
    """A random forest or extra trees: trees walked in numpy for small batches, sklearn beyond."""
    return Evaluator("compiled-trees", _forest(model), model.predict_proba, WALK_ROWS)


def _boosting(model: HistGradientBoostingClassifier) -> Evaluate:
    if model.is_categorical_ is not None and bool(np.any(model.is_categorical_)):
        raise CompileError("native categorical splits are not supported")
    k = int(model.n_trees_per_iteration_)
    trees = []
    for iteration in model._predictors:
        for slot, predictor in enumerate(iteration):
            nodes = predictor.nodes
            value = np.zeros((len(nodes), k))
            value[:, slot] = nodes["value"]  # predictor k adds to raw score k
            trees.append(
                (nodes["left"], nodes["right"], nodes["feature_idx"], nodes["num_threshold"])
                + (nodes["is_leaf"], value, nodes["depth"].max())
            )
    walk = _Trees(trees, float32=False)
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(1, k)
    if k == 1:
        return lambda x: _binary(expit((walk.totals(x) + baseline)[:, 0]))
    return lambda x: _softmax(walk.totals(x) + baseline)


def compile_boosting(model: HistGradientBoostingClassifier) -> Evaluator:
    """Gradient boosting: its predictors walked in numpy for small batches, sklearn beyond."""
    return Evaluator("compiled-trees", _boosting(model), model.predict_proba, WALK_ROWS)
