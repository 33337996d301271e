"""Explain predictions of a fitted pipeline in the spec's features.

:class:`Explainer` maps validated records to the model matrix (the compiled
:class:`~tabops.scoring.compiled.preprocess.Preprocessor` when it reproduces the
ColumnTransformer, the ColumnTransformer itself otherwise), asks the family's exact method
for each column's contribution, folds the columns back into their features and writes the
largest as reasons. It is built once per model version, like the scorer, and checks when
it is built that its explanations add up to the model's raw output within 1e-6.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer

from tabops.errors import CompileError, ExplanationNotSupportedError, FieldIssue
from tabops.scoring.base import Matrix
from tabops.scoring.compiled.preprocess import Preprocessor
from tabops.scoring.explain.columns import column_owners, fold_matrix
from tabops.scoring.explain.explanation import Explanation
from tabops.scoring.explain.methods import ColumnMethod, method_for
from tabops.scoring.explain.reasons import ReasonWriter
from tabops.scoring.records import Record, api_records, records_to_frame, reference_records
from tabops.spec.schema import UseCase

if TYPE_CHECKING:
    from tabops.lifecycle.versions import LoadedModel

__all__ = ["ADDITIVITY_TOLERANCE", "Explainer", "load_explainer", "should_explain"]

ADDITIVITY_TOLERANCE = 1e-6
"""Largest |base + sum(contributions) - raw output| accepted on the background rows."""
_CHECK_ROWS = 48  # background rows the additivity check runs on, plus 16 with gaps
_TREE_CHECK_ROWS = 12  # and for TreeSHAP, plus 4 with gaps


def should_explain(spec: UseCase, requested: bool) -> bool:
    """Whether a prediction is explained, from the spec's ``explain`` and the request.

    Args:
        spec: The use case.
        requested: The request asked for explanations (``?explain=true``).

    Raises:
        ExplanationNotSupportedError: the request asks, and the spec says ``never``.
    """
    if spec.explain == "never":
        if requested:
            raise ExplanationNotSupportedError(
                f"use case '{spec.name}' gives no explanations",
                [FieldIssue("explain", "the use case's spec says explain: never")],
            )
        return False
    return spec.explain == "always" or requested


class Explainer:
    """Per-prediction explanations for one model version."""

    def __init__(
        self, spec: UseCase, pipeline: Any, background: pd.DataFrame, top_k: int = 3
    ) -> None:
        """Prepare the method of the pipeline's estimator and check it adds up.

        Args:
            spec: The use case the pipeline was trained for.
            pipeline: The fitted pipeline: a ColumnTransformer, then the estimator.
            background: Rows holding the feature columns, typed as training typed them
                (the model's reference sample): the linear baseline, the quartiles the
                reasons call low or high, and the rows of the additivity check.
            top_k: Reasons written per explanation.

        Raises:
            ExplanationNotSupportedError: the estimator has no exact method, the columns
                cannot be traced to features, or the contributions do not add up.
        """
        steps = [s for _, s in getattr(pipeline, "steps", [])]
        if len(steps) != 2 or not isinstance(steps[0], ColumnTransformer):
            raise ExplanationNotSupportedError(
                "expected a pipeline of a ColumnTransformer and an estimator"
            )
        self.spec, self.top_k = spec, top_k
        self._names = spec.feature_names
        self._transformer, model = steps[0], steps[1]
        self.columns = column_owners(spec, self._transformer)
        """The feature behind each model-matrix column."""
        self._fold = fold_matrix(spec, self.columns)
        rows = background[spec.feature_names]
        records = api_records(spec, rows)
        if not records:
            raise ExplanationNotSupportedError("no background rows to explain against")
        # reference_records appends copies with gaps: the checks cover missing values too
        plain, gaps = records[:_CHECK_ROWS], reference_records(spec, rows)[len(records) :][:16]
        self._preprocessor = self._compiled(plain + gaps)
        self.method: ColumnMethod = method_for(model, spec.positive_class, self.matrix(records))
        self._writer = ReasonWriter(spec, background)
        if self.method.method == "tree_shap":  # up to 0.15 s a row for a 300-tree forest
            plain, gaps = plain[:_TREE_CHECK_ROWS], gaps[:4]
        self.max_error = self._check(self.matrix(plain + gaps))
        """Largest additivity error measured on the background rows."""

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, top_k: int = 3) -> Explainer:
        """The explainer of a loaded model version (its reference sample as background).

        Raises:
            ExplanationNotSupportedError: as :class:`Explainer`.
        """
        return cls(loaded.spec, loaded.pipeline, loaded.reference, top_k=top_k)

    def _compiled(self, records: list[Record]) -> Preprocessor | None:
        """The compiled preprocessor, when it gives the ColumnTransformer's matrix."""
        try:
            compiled = Preprocessor(self.spec, self._transformer)
        except CompileError:
            return None
        expected = self._pipeline_matrix(records)
        same = np.allclose(compiled.matrix(records), expected, rtol=0, atol=1e-12)
        return compiled if same else None

    def _pipeline_matrix(self, records: Sequence[Record]) -> Matrix:
        frame = records_to_frame(self.spec, records)
        out: Matrix = np.asarray(self._transformer.transform(frame), dtype=np.float64)
        return out

    @property
    def path(self) -> str:
        """Where the model matrix comes from: ``compiled`` or ``pipeline``."""
        return "compiled" if self._preprocessor is not None else "pipeline"

    def matrix(self, records: Sequence[Record]) -> Matrix:
        """The model matrix of validated records, as the fitted ColumnTransformer gives it."""
        pre = self._preprocessor
        if pre is None:
            return self._pipeline_matrix(records)
        return pre.row(records[0]) if len(records) == 1 else pre.matrix(records)

    def _check(self, x: Matrix) -> float:
        method = self.method
        total = method.base[None, :] + method.columns(x).sum(axis=1)
        error = float(np.max(np.abs(total - method.raw(x))))
        if not error <= ADDITIVITY_TOLERANCE:
            raise ExplanationNotSupportedError(
                f"{method.method} contributions miss the model's output by {error:.3g} "
                f"(more than {ADDITIVITY_TOLERANCE:g}) on the reference rows"
            )
        return error

    def contributions(
        self, x: Matrix, classes: Sequence[str] | None = None
    ) -> tuple[np.ndarray, Matrix, list[str]]:
        """Per-feature contributions of a model matrix.

        Args:
            x: ``(n, w)`` model matrix (:meth:`matrix`).
            classes: Per row, the class to explain when the model has several outputs
                (multiclass); default: each row's highest-scoring class. Binary tasks
                always explain the positive class.

        Returns:
            Base values ``(n,)``, contributions ``(n, features)`` in spec order, and the
            class explained per row.

        Raises:
            ExplanationNotSupportedError: a requested class the model does not score.
        """
        method, n = self.method, x.shape[0]
        columns = method.columns(x)  # (n, w, k)
        outputs = method.outputs
        if len(outputs) == 1:
            folded: Matrix = columns[:, :, 0] @ self._fold
            return np.repeat(method.base, n), folded, [outputs[0]] * n
        if classes is not None:
            unknown = sorted(set(classes) - set(outputs))
            if unknown or len(classes) != n:
                raise ExplanationNotSupportedError(f"cannot explain class(es) {unknown}")
            chosen = np.asarray([outputs.index(c) for c in classes], dtype=np.intp)
        else:
            chosen = np.argmax(method.base[None, :] + columns.sum(axis=1), axis=1)
        picked = columns[np.arange(n), :, chosen]  # (n, w)
        folded = picked @ self._fold
        return method.base[chosen], folded, [outputs[i] for i in chosen]

    def explain(
        self,
        records: Sequence[Record],
        classes: Sequence[str] | None = None,
        top_k: int | None = None,
    ) -> list[Explanation]:
        """Explain validated records.

        Args:
            records: Validated records (API field names, None for missing).
            classes: As :meth:`contributions` (multiclass: the labels served, say).
            top_k: Reasons per explanation (default: the explainer's ``top_k``).

        Returns:
            One explanation per record.
        """
        if not records:
            return []
        base, folded, explained = self.contributions(self.matrix(records), classes)
        k = self.top_k if top_k is None else top_k
        names, method, scale = self._names, self.method.method, self.method.scale
        # rank the whole batch at once; stable, so ties keep the spec's order
        order = np.argsort(-np.abs(folded), axis=1, kind="stable")[:, :k].tolist()
        sentences = self._writer.sentences
        out = []
        for record, b, row, top, cls in zip(
            records, base.tolist(), folded.tolist(), order, explained, strict=True
        ):
            ranked = [(names[j], row[j]) for j in top]
            out.append(
                Explanation(
                    method=method,
                    scale=scale,
                    output_class=cls,
                    base_value=b,
                    contributions=dict(zip(names, row, strict=True)),
                    reasons=sentences(record, ranked, cls, scale),
                )
            )
        return out


def load_explainer(loaded: LoadedModel) -> tuple[Explainer | None, str]:
    """The explainer of a loaded version, or why there is none; never raises.

    Returns:
        The explainer (None when the family has no exact method, or a check failed) and a
        one-line reason, for the log line that names the scoring path.
    """
    try:
        explainer = Explainer.from_loaded(loaded)
    except Exception as exc:  # an explainer that cannot be built never stops serving
        why = str(exc) if isinstance(exc, ExplanationNotSupportedError) else repr(exc)
        return None, f"no explanations: {why}"
    method = explainer.method
    return explainer, (
        f"explanations: {method.method} on the {method.scale} scale, {explainer.path} matrix, "
        f"additivity error {explainer.max_error:.1e}"
    )
