"""The parity check a compiled scorer must pass, and the choice of scorer for a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tabops.errors import CompileError
from tabops.scoring.base import Decision, PipelineScorer, Scorer
from tabops.scoring.compiled.scorer import CompiledScorer
from tabops.scoring.records import Record, reference_records
from tabops.spec.schema import UseCase

PARITY_TOLERANCE = 1e-6
"""Largest accepted difference between compiled and pipeline probabilities."""


_SINGLE_ROWS = 256  # records scored one by one in the parity check


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
    is a :class:`~tabops.scoring.base.PipelineScorer`.

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
