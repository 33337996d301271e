"""Coalesced single-record calls: one scoring call per window, each caller its own row."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from tabops.scoring.base import PipelineScorer, Scorer, Scores
from tabops.scoring.coalesce import Coalescer
from tabops.scoring.compiled.scorer import CompiledScorer
from tests.unit.test_compiled import _api_records, _decision, _fitted, _spec


class Counting:
    """A real scorer that also counts its calls and the rows of each."""

    def __init__(self, inner: Scorer) -> None:
        self.inner = inner
        self.calls: list[int] = []

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def path(self) -> str:
        return self.inner.path

    def score(self, records: Sequence[Mapping[str, Any]]) -> Scores:
        self.calls.append(len(records))
        return self.inner.score(records)


def _scorers() -> tuple[list[dict[str, Any]], dict[str, Scorer]]:
    spec = _spec()
    pipeline, reference = _fitted(spec)
    records = _api_records(spec, reference)[:40]
    decision = _decision(spec)
    return records, {
        "compiled": CompiledScorer(spec, pipeline, decision, "1"),
        "pipeline": PipelineScorer(spec, pipeline, decision, "1"),
    }


RECORDS, SCORERS = _scorers()


async def _gather(
    coalescer: Coalescer, scorer: Scorer, records: list[dict[str, Any]]
) -> list[Scores]:
    return await asyncio.gather(*(coalescer.score(scorer, r) for r in records))


@pytest.mark.parametrize("path", sorted(SCORERS))
def test_concurrent_calls_share_one_scoring_call_and_get_their_own_row(path: str) -> None:
    scorer = Counting(SCORERS[path])
    coalescer = Coalescer(window_s=0.005)
    got = asyncio.run(_gather(coalescer, scorer, RECORDS))
    assert scorer.calls == [len(RECORDS)]
    for record, scores in zip(RECORDS, got, strict=True):
        alone = SCORERS[path].score([record])
        assert scores.labels == alone.labels
        np.testing.assert_allclose(scores.probabilities, alone.probabilities, rtol=0, atol=1e-12)


def test_a_full_window_closes_before_its_timer() -> None:
    scorer = Counting(SCORERS["compiled"])
    coalescer = Coalescer(window_s=10.0, max_rows=16)  # the timer would fail the test
    got = asyncio.run(asyncio.wait_for(_gather(coalescer, scorer, RECORDS[:32]), timeout=5))
    assert scorer.calls == [16, 16]
    assert len(got) == 32


def test_a_scoring_error_reaches_every_caller_of_the_window() -> None:
    scorer = SCORERS["compiled"]
    coalescer = Coalescer(window_s=0.002)

    async def run() -> list[Any]:
        broken = [{"age": "not a number"} for _ in range(3)]  # fails inside the scorer
        return await asyncio.gather(
            *(coalescer.score(scorer, r) for r in broken), return_exceptions=True
        )

    outcomes = asyncio.run(run())
    assert len(outcomes) == 3 and all(isinstance(o, Exception) for o in outcomes)
