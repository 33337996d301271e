"""Scoring: turn validated records into labels and class probabilities.

Routes score through a :class:`Scorer`, never through the pipeline directly, so that a
compiled fast path can replace :class:`PipelineScorer` without touching the API.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tabops.scoring.records import records_to_frame
from tabops.spec.schema import UseCase

Matrix = npt.NDArray[np.float64]

__all__ = ["Decision", "PipelineScorer", "Scorer", "Scores", "records_to_frame"]


@dataclass(frozen=True)
class Decision:
    """The decision policy of a trained model: from probabilities to a label.

    Binary: the positive class when its probability is at least ``threshold``.
    Multiclass: the most probable class.
    """

    classes: tuple[str, ...]
    positive: str | None = None
    threshold: float | None = None

    @property
    def positive_index(self) -> int | None:
        return None if self.positive is None else self.classes.index(self.positive)

    def labels(self, proba: np.ndarray) -> np.ndarray:
        """Labels for an ``(n, len(classes))`` probability matrix, columns in ``classes`` order."""
        names = np.asarray(self.classes, dtype=object)
        index = self.positive_index
        if index is None or self.threshold is None:
            chosen = np.argmax(proba, axis=1)
        else:
            chosen = np.where(proba[:, index] >= self.threshold, index, 1 - index)
        labels: np.ndarray = names[chosen]
        return labels

    def label_of(self, row: Sequence[float]) -> str:
        """:meth:`labels` of one row of probabilities (a list, columns in ``classes``
        order): the same choice, ties to the first class as ``argmax`` breaks them."""
        index = self.positive_index
        if index is None or self.threshold is None:
            chosen = max(range(len(row)), key=row.__getitem__)
        else:
            chosen = index if row[index] >= self.threshold else 1 - index
        return str(self.classes[chosen])

    def as_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "positive": self.positive,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            classes=tuple(data["classes"]),
            positive=data.get("positive"),
            threshold=data.get("threshold"),
        )


@dataclass(frozen=True)
class Scores:
    """The outcome of scoring n records."""

    labels: list[str]
    probabilities: np.ndarray
    """``(n, k)``, columns in ``classes`` order."""
    classes: tuple[str, ...]
    threshold: float | None
    _column: tuple[int | None, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def positive_scores(self, positive_index: int | None) -> np.ndarray:
        """The score of each record: the positive class's probability (binary), or the top
        class's (multiclass, ``positive_index`` None). What the audit rows store, the
        score histogram counts and drift compares.

        Computed once: the audit trail, the metrics and monitoring ask for the same column
        of the same call.
        """
        cached = self._column
        if cached is not None and cached[0] == positive_index:
            return cached[1]
        proba = self.probabilities
        column: np.ndarray = (
            proba[:, positive_index] if positive_index is not None else proba.max(axis=1)
        )
        object.__setattr__(self, "_column", (positive_index, column))  # frozen: a memo only
        return column

    def probability_dicts(self) -> list[dict[str, float]]:
        classes = self.classes
        if len(self.probabilities) == 1:  # np.round's own steps (scale, rint, unscale)
            row = self.probabilities[0].tolist()
            return [{c: _round6(p) for c, p in zip(classes, row, strict=True)}]
        rows: list[list[float]] = np.round(self.probabilities, 6).tolist()
        return [dict(zip(classes, row, strict=True)) for row in rows]


class Scorer(Protocol):
    """Anything that scores validated records for one model version."""

    @property
    def version(self) -> str: ...

    @property
    def path(self) -> str:
        """Which implementation answers (``pipeline`` or a faster path)."""
        ...

    def score(self, records: Sequence[Mapping[str, Any]]) -> Scores: ...


class PipelineScorer:
    """Scores with the fitted scikit-learn pipeline: the reference implementation."""

    path = "pipeline"

    def __init__(self, spec: UseCase, pipeline: Any, decision: Decision, version: str) -> None:
        self.spec = spec
        self.pipeline = pipeline
        self.decision = decision
        self._version = version
        model_classes = [str(c) for c in pipeline.classes_]
        # the pipeline orders columns by its own classes_; the response uses the spec's order
        self._order = [model_classes.index(c) for c in decision.classes]

    @property
    def version(self) -> str:
        return self._version

    def score(self, records: Sequence[Mapping[str, Any]]) -> Scores:
        """Score records already validated against the spec."""
        frame = records_to_frame(self.spec, records)
        proba = np.asarray(self.pipeline.predict_proba(frame), dtype=float)[:, self._order]
        labels = self.decision.labels(proba)
        return Scores(
            labels=[str(x) for x in labels],
            probabilities=proba,
            classes=self.decision.classes,
            threshold=self.decision.threshold,
        )


def _round6(p: float) -> float:
    """``np.round(p, 6)`` of one float, by numpy's steps: scale, round half to even,
    unscale (``round`` of a float is exact; the division is the same IEEE operation)."""
    return round(p * 1e6) / 1e6 if math.isfinite(p) else p
