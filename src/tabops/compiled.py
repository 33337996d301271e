"""Compiled scoring: the fitted pipeline turned into numpy at load time.

A pipeline spends ~2.9 ms of a ~3.2 ms single-row prediction in its ColumnTransformer.
:class:`CompiledScorer` reads the fitted parameters once and maps validated records
straight to the estimator's float64 matrix, then evaluates logistic regression as a
matrix product and tree ensembles as a vectorised walk over their node arrays.
:func:`compile_scorer` serves it only after checking it against the pipeline on the
model's reference sample, and falls back to :class:`~tabops.scoring.PipelineScorer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tabops.errors import TabopsError
from tabops.scoring import Decision, PipelineScorer, Scorer, Scores
from tabops.spec import UseCase

__all__ = [
    "api_records",
    "PARITY_TOLERANCE",
    "CompileError",
    "CompiledScorer",
    "Parity",
    "Preprocessor",
    "check_parity",
    "compile_scorer",
    "reference_records",
]

PARITY_TOLERANCE = 1e-6
"""Largest accepted difference between compiled and pipeline probabilities."""

Matrix = npt.NDArray[np.float64]
Record = Mapping[str, Any]
Evaluate = Callable[[Matrix], Matrix]
_GAP_ROWS = 50  # reference rows repeated with gaps, per optional feature
_SINGLE_ROWS = 256  # records scored one by one in the parity check
# Batches up to this size walk the trees in numpy; larger ones call the fitted estimator,
# whose compiled loops win once its per-call overhead (joblib per tree for a forest,
# OpenMP per predictor for boosting) is spread over enough rows: on 2 cores both cost the
# same per row near 128 rows (forest, 300 trees) and 100 rows (boosting, 100 trees).
_WALK_ROWS = 100


class CompileError(TabopsError):
    """A fitted pipeline holds a step the compiled scorer cannot reproduce."""

    code = "compile_error"


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
            kinds = {spec.feature(c).type == "category" for c in columns}
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

    def row(self, record: Record) -> Matrix:
        """The model matrix of one record, with the least per-call work.

        Args:
            record: A validated record.

        Returns:
            A ``(1, width)`` float64 matrix, equal to ``matrix([record])``.
        """
        z = self._template.copy()
        for name, col, fill, indicator in self._numeric:
            value = record.get(name)
            if value is None or value != value:
                z[col] = fill
                if indicator >= 0:
                    z[indicator] = 1.0
            else:
                z[col] = value
        sink = self.width
        for name, lookup in self._categories:
            z[lookup.get(record.get(name), sink)] = 1.0
        x = np.array(z[:sink], dtype=np.float64)
        out: Matrix = ((x - self._shift_a) / self._scale_a).reshape(1, sink)
        return out


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


def _forest(model: RandomForestClassifier) -> Evaluate:
    if model.n_outputs_ != 1:
        raise CompileError("multi-output forests are not supported")
    trees = [
        # tree_.value holds class fractions, which DecisionTreeClassifier returns as is
        (t.children_left, t.children_right, t.feature, t.threshold, t.children_left == -1)
        + (t.value[:, 0, :], t.max_depth)
        for t in (e.tree_ for e in model.estimators_)
    ]
    walk, count = _Trees(trees, float32=True), len(trees)
    return lambda x: walk.totals(x) / count


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


class CompiledScorer:
    """Scores records with numpy: a :class:`Preprocessor`, then the estimator's math.

    One record goes through :meth:`Preprocessor.row`. Tree ensembles walk their trees in
    numpy up to ``small_limit`` records and call the fitted estimator on the compiled
    matrix (skipping only the ColumnTransformer) beyond.
    """

    def __init__(self, spec: UseCase, pipeline: Any, decision: Decision, version: str) -> None:
        """Compile a fitted :func:`tabops.training.build_pipeline` pipeline.

        Args:
            spec: The use case the pipeline was trained for.
            pipeline: The fitted pipeline: a ColumnTransformer, then the estimator.
            decision: The decision policy applied to the probabilities.
            version: The model version.

        Raises:
            CompileError: a step or estimator that cannot be compiled.
        """
        steps = [s for _, s in getattr(pipeline, "steps", [])]
        if len(steps) != 2 or not isinstance(steps[0], ColumnTransformer):
            raise CompileError("expected a pipeline of a ColumnTransformer and an estimator")
        self.spec, self.decision, self._version = spec, decision, version
        self.preprocessor = Preprocessor(spec, steps[0])
        model = steps[1]
        if self.preprocessor.width != getattr(model, "n_features_in_", -1):
            raise CompileError("the estimator expects a different number of columns")
        if isinstance(model, LogisticRegression):
            self.path, self.small_limit = "compiled-numpy", 1 << 62
            self._small = self._large = _linear(model)
        elif isinstance(model, RandomForestClassifier | HistGradientBoostingClassifier):
            self.path, self.small_limit = "compiled-trees", _WALK_ROWS
            forest = isinstance(model, RandomForestClassifier)
            self._small = _forest(model) if forest else _boosting(model)
            self._large = model.predict_proba
        else:
            raise CompileError(f"unsupported estimator {type(model).__name__}")
        model_classes = [str(c) for c in model.classes_]
        if sorted(model_classes) != sorted(decision.classes):
            raise CompileError("the estimator's classes differ from the decision's")
        # the model orders columns by its own classes_; the response by the decision's
        order = [model_classes.index(c) for c in decision.classes]
        self._order = None if order == sorted(order) else np.asarray(order, dtype=np.intp)

    @property
    def version(self) -> str:
        return self._version

    def score(self, records: Sequence[Record]) -> Scores:
        """Score records already validated against the spec.

        Args:
            records: Validated records (API field names, None for missing).

        Returns:
            Labels and probabilities, as :class:`~tabops.scoring.PipelineScorer` gives them.
        """
        n = len(records)
        x = self.preprocessor.row(records[0]) if n == 1 else self.preprocessor.matrix(records)
        proba = (self._small if n <= self.small_limit else self._large)(x)
        if self._order is not None:
            proba = proba[:, self._order]
        return Scores(
            labels=[str(label) for label in self.decision.labels(proba)],
            probabilities=proba,
            classes=self.decision.classes,
            threshold=self.decision.threshold,
        )


def api_records(spec: UseCase, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a typed frame as the API passes records: numbers float, integers int,
    booleans bool, categories str, missing values None."""
    cast: dict[str, Callable[[Any], Any]] = {
        "number": float,
        "integer": lambda v: int(round(float(v))),
        "boolean": bool,
        "category": str,
    }
    columns = []
    for feature in spec.features:
        col, to = frame[feature.name], cast[feature.type]
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


@dataclass(frozen=True)
class Parity:
    """How a compiled scorer compares with the pipeline on the same records."""

    rows: int
    max_diff: float
    """Largest absolute probability difference over every route (NaN if any was NaN)."""
    label_mismatches: int

    @property
    def passed(self) -> bool:
        # a comparison, not a negation, so that a NaN difference fails
        return self.label_mismatches == 0 and bool(self.max_diff <= PARITY_TOLERANCE)


def check_parity(candidate: CompiledScorer, baseline: Scorer, records: list[Record]) -> Parity:
    """Compare a compiled scorer with the pipeline on every route it can take.

    Args:
        candidate: The compiled scorer.
        baseline: The reference scorer (the pipeline).
        records: Validated records, e.g. from :func:`reference_records`.

    Returns:
        The largest probability difference and the number of differing labels.
    """
    expected = baseline.score(records)
    want = np.asarray(expected.labels, dtype=object)
    n = len(records)
    # one record at a time (a spread sample), small batches, then one large batch
    routes = [(1, np.arange(0, n, max(1, n // _SINGLE_ROWS)))]
    routes += [(size, np.arange(n)) for size in sorted({min(candidate.small_limit, n), n})]
    worst, mismatches = 0.0, 0
    for size, index in routes:
        chunks = [index[i : i + size] for i in range(0, len(index), size)]
        scored = [candidate.score([records[j] for j in chunk]) for chunk in chunks]
        diff = np.abs(np.vstack([s.probabilities for s in scored]) - expected.probabilities[index])
        worst = float(np.nan) if np.isnan(diff).any() else max(worst, float(diff.max()))
        labels = np.asarray([label for s in scored for label in s.labels], dtype=object)
        mismatches += int((labels != want[index]).sum())
    return Parity(rows=n, max_diff=worst, label_mismatches=mismatches)


def compile_scorer(
    spec: UseCase, pipeline: Any, decision: Decision, version: str, reference: pd.DataFrame
) -> tuple[Scorer, str]:
    """The fastest scorer that reproduces the pipeline, and why it was chosen.

    Never raises: when the pipeline cannot be compiled, or the compiled path differs from
    it on the reference sample (a label, or a probability by more than 1e-6), the answer
    is a :class:`~tabops.scoring.PipelineScorer`.

    Args:
        spec: The use case the model was trained with.
        pipeline: The fitted pipeline.
        decision: The decision policy.
        version: The model version.
        reference: The model's reference sample (feature columns as training typed them).

    Returns:
        The scorer to serve with, and a one-line reason naming the path chosen.
    """
    baseline = PipelineScorer(spec, pipeline, decision, version)
    # any surprise below means the fast path is not trusted, never that serving stops
    try:
        candidate = CompiledScorer(spec, pipeline, decision, version)
    except Exception as exc:
        why = str(exc) if isinstance(exc, CompileError) else f"{type(exc).__name__}: {exc}"
        return baseline, f"pipeline: cannot compile: {why}"
    try:
        records = reference_records(spec, reference)
        if not records:
            return baseline, "pipeline: no reference rows to check parity on"
        parity = check_parity(candidate, baseline, records)
    except Exception as exc:
        return baseline, f"pipeline: parity check could not run: {type(exc).__name__}: {exc}"
    if not parity.passed:
        return baseline, (
            f"pipeline: parity failed: max |Δp| {parity.max_diff:.3g}, "
            f"{parity.label_mismatches} label(s) differ on {parity.rows} reference rows"
        )
    return candidate, (
        f"{candidate.path}: parity ok on {parity.rows} reference rows "
        f"(max |Δp| {parity.max_diff:.1e})"
    )
