"""Parity of the compiled scorer with the pipeline, for every bundled use case and every
model family, fitted on the bundled data."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tabops.data.datasets import read_source, training_dtypes
from tabops.scoring.base import Decision, PipelineScorer, Scorer
from tabops.scoring.compiled.scorer import CompiledScorer
from tabops.scoring.parity import check_parity, compile_scorer
from tabops.scoring.records import reference_records
from tabops.spec.files import list_usecases, load_usecase
from tabops.spec.schema import UseCase
from tabops.training.estimators import FAMILIES as MODEL_FAMILIES
from tabops.training.pipeline import build_pipeline
from tests.conftest import USECASES, make_settings

pytestmark = pytest.mark.slow

FAMILIES = list(MODEL_FAMILIES)  # every registered family
# fewer trees than the default 300 keep the file fast; the compiled walk is the same code
PARAMS: dict[str, dict[str, Any]] = {
    name: {"n_estimators": 50}
    for name, family in MODEL_FAMILIES.items()
    if "n_estimators" in family.build(0).get_params()
}
_frames: dict[str, tuple[pd.DataFrame, pd.Series]] = {}


def _data(
    name: str, spec: UseCase, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[pd.DataFrame, pd.Series]:
    """The use case's bundled data, typed for scikit-learn (read once per session)."""
    if name not in _frames:
        school = request.getfixturevalue("school_dir") if name == "school" else None
        frame = read_source(spec, make_settings(tmp_path / "var", school))
        _frames[name] = training_dtypes(spec, frame), frame[spec.target.name].astype(str)
    return _frames[name]


def _variant(spec: UseCase, family: str, params: dict[str, Any]) -> UseCase:
    model = spec.model.model_copy(update={"family": family, "params": params})
    return spec.model_copy(update={"model": model})


def _fit(spec: UseCase, X: pd.DataFrame, y: pd.Series) -> tuple[Any, Decision, pd.DataFrame]:
    """Fit like training does: the pipeline, a decision, a reference sample of the rows."""
    pipeline = build_pipeline(spec).fit(X, y)
    threshold = spec.decision.threshold if spec.task == "binary" else None
    decision = Decision(tuple(spec.target.classes), spec.positive_class, threshold)
    rows = X.assign(**{spec.target.name: y})
    size = min(spec.training.reference_size, len(rows))
    return pipeline, decision, rows.sample(n=size, random_state=spec.training.seed).sort_index()


@dataclass(frozen=True)
class Timing:
    """Scoring cost in microseconds per record: one per call, and in one batch."""

    single_us: float
    batch_us: float


def time_scorer(
    scorer: Scorer, records: Sequence[Mapping[str, Any]], batch_size: int = 1000, singles: int = 50
) -> Timing:
    """Time a scorer, best of 3 rounds: for the report only, never asserted (shared CI
    machines make timings noisy)."""
    ones = [[r] for r in records[:singles]]
    batch = [records[i % len(records)] for i in range(batch_size)]
    single, batched = float("inf"), float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for one in ones:
            scorer.score(one)
        single = min(single, (time.perf_counter() - start) / len(ones))
        start = time.perf_counter()
        scorer.score(batch)
        batched = min(batched, (time.perf_counter() - start) / batch_size)
    return Timing(single_us=single * 1e6, batch_us=batched * 1e6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", list_usecases(USECASES))
def test_compiled_path_passes_parity(
    name: str, family: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    base = load_usecase(USECASES, name)
    spec = _variant(base, family, PARAMS.get(family, {}))
    X, y = _data(name, base, tmp_path, request)
    pipeline, decision, reference = _fit(spec, X, y)
    scorer, reason = compile_scorer(spec, pipeline, decision, "1", reference)
    print(f"{name} {family}: {reason}")
    assert isinstance(scorer, CompiledScorer), reason
    # beyond the reference sample: every row of the data set, up to 2,000
    rows = X.sample(n=min(2000, len(X)), random_state=1)
    baseline = PipelineScorer(spec, pipeline, decision, "1")
    parity = check_parity(scorer, baseline, reference_records(spec, rows))
    assert parity.passed, parity


def test_timings_are_reported_for_credit(
    tmp_path: Path, request: pytest.FixtureRequest, record_property: Any
) -> None:
    """Timings go to the test report's properties (never asserted: shared machines);
    what is asserted is that the two timed paths agree on the timed records (parity)."""
    base = load_usecase(USECASES, "credit")
    X, y = _data("credit", base, tmp_path, request)
    for family in FAMILIES:  # default hyperparameters: 300 trees for the forest
        spec = _variant(base, family, {})
        pipeline, decision, reference = _fit(spec, X, y)
        scorer, reason = compile_scorer(spec, pipeline, decision, "1", reference)
        records = reference_records(spec, reference)
        pipeline_path = PipelineScorer(spec, pipeline, decision, "1")
        for path in (pipeline_path, scorer):
            timing = time_scorer(path, records, singles=20)
            record_property(
                f"credit {family} {path.path}",
                f"single {timing.single_us:.1f} us/row, batch of 1000 "
                f"{timing.batch_us:.2f} us/row ({reason})",
            )
        parity = check_parity(scorer, pipeline_path, records)
        assert parity.passed, parity
