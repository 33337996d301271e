"""The columnar batch check accepts exactly what the record model accepts, with the same
records, on every bundled use case; anything it is unsure of goes to the record model."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tabops.scoring.columnar import ColumnChecker
from tabops.spec.derive import record_model
from tabops.spec.files import list_usecases, load_usecase
from tabops.spec.schema import Feature, UseCase

USECASES = Path(__file__).resolve().parents[2] / "usecases"
SPECS = {name: load_usecase(USECASES, name) for name in list_usecases(USECASES)}


def _valid(feature: Feature) -> list[Any]:
    """Values the record model accepts for a feature, as a client would send them."""
    if feature.type == "category":
        return list(feature.values or [])
    if feature.type == "boolean":
        return [True, False]
    low = feature.min if feature.min is not None else -1e6
    high = feature.max if feature.max is not None else 1e6
    if feature.type == "integer":
        return sorted({math.ceil(low), math.floor(high), math.ceil((low + high) / 2)})
    return [low, high, (low + high) / 2, int(math.ceil(low))]  # an int is a valid number


def _invalid(feature: Feature) -> list[Any]:
    """Values that are refused, or only accepted after the record model's own coercion."""
    out: list[Any] = ["1", [], {}, 10**400, float("nan"), float("inf")]
    if feature.type != "boolean":
        out.append(True)
    if feature.type in ("number", "integer"):
        if feature.min is not None:
            out.append(feature.min - 1)
        if feature.max is not None:
            out.append(feature.max + 0.5)
    if feature.type == "integer":
        out.append(3.0)
    if feature.type == "category":
        out += ["not-a-value", 1]
    if feature.type == "boolean":
        out += [1, 0, "true"]
    if feature.required:
        out.append(None)
    return out


def _record(spec: UseCase) -> st.SearchStrategy[dict[str, Any]]:
    fields = {}
    for f in spec.features:
        good = st.sampled_from(_valid(f) + ([None] if not f.required else []))
        bad = st.sampled_from(_invalid(f))
        fields[f.name] = st.one_of(good, good, good, bad)
    base = st.fixed_dictionaries(fields)
    names = [f.name for f in spec.features]

    @st.composite
    def tweak(draw: st.DrawFn) -> dict[str, Any]:
        record = draw(base)
        if draw(st.integers(0, 9)) == 0:
            record.pop(draw(st.sampled_from(names)))
        if draw(st.integers(0, 19)) == 0:
            record["unknown_field"] = 1
        return record

    return tweak()


def _by_model(spec: UseCase, batch: list[Any]) -> list[dict[str, Any]] | None:
    model = record_model(spec)
    try:
        return [model.model_validate(r).model_dump() for r in batch]
    except ValidationError:
        return None


def _typed(records: list[dict[str, Any]]) -> list[dict[str, tuple[type, Any]]]:
    return [{k: (type(v), v) for k, v in r.items()} for r in records]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_valid_batches_take_the_columnar_path_with_the_models_records(name: str) -> None:
    spec = SPECS[name]
    values = {f.name: _valid(f) for f in spec.features}
    batch = [{k: v[i % len(v)] for k, v in values.items()} for i in range(40)]
    want = _by_model(spec, batch)
    got = ColumnChecker(spec).check(copy.deepcopy(batch))
    assert want is not None and got is not None
    assert _typed(got) == _typed(want)  # numbers sent as integers come back as floats


@pytest.mark.parametrize("name", sorted(SPECS))
def test_columnar_check_never_accepts_what_the_model_refuses(name: str) -> None:
    spec = SPECS[name]
    checker = ColumnChecker(spec)

    @settings(max_examples=150, deadline=None)
    @given(st.lists(_record(spec), min_size=1, max_size=6))
    def check(batch: list[dict[str, Any]]) -> None:
        want = _by_model(spec, batch)
        got = checker.check(copy.deepcopy(batch))
        if want is None:
            assert got is None
        elif got is not None:
            assert _typed(got) == _typed(want)

    check()


def test_records_that_are_not_objects_go_to_the_model() -> None:
    checker = ColumnChecker(SPECS["iris"])
    assert checker.check([1, "a", None]) is None
    assert checker.check([[("sepal_length", 1.0)]]) is None
