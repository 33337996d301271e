"""Feature kinds: one owner per feature type for every rule that depends on the type."""

from __future__ import annotations

from typing import get_args

import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import BigInteger, Boolean, Float, String

from tabops.client.simulate import Shift, apply_shifts, parse_shift
from tabops.errors import InvalidRequestError
from tabops.spec.features import KINDS, kind_of
from tabops.spec.schema import Feature, FeatureType, UseCase


def test_every_feature_type_has_exactly_one_kind() -> None:
    assert sorted(KINDS) == sorted(get_args(FeatureType))
    assert all(kind.name == name for name, kind in KINDS.items())


def test_each_kind_says_how_it_is_stored_trained_and_compared() -> None:
    number = Feature(name="x", type="number")
    integer = Feature(name="n", type="integer", min=0.5, max=9.5)
    category = Feature(name="c", type="category", values=["a", "bbb"])
    boolean = Feature(name="b", type="boolean")
    assert isinstance(kind_of(number).sql_type(number), Float)
    assert isinstance(kind_of(integer).sql_type(integer), BigInteger)
    assert isinstance(kind_of(boolean).sql_type(boolean), Boolean)
    text = kind_of(category).sql_type(category)
    assert isinstance(text, String) and text.length == 3
    # booleans are trained as 0/1 numbers but drift as two categories
    assert [kind_of(f).pipeline for f in (number, integer, category, boolean)] == [
        "numeric",
        "numeric",
        "category",
        "numeric",
    ]
    assert [kind_of(f).drift for f in (number, integer, category, boolean)] == [
        "numeric",
        "numeric",
        "categorical",
        "categorical",
    ]
    # integers accept whole numbers within ceil(min) and floor(max), as the API does
    annotation, constraints = kind_of(integer).annotation(integer)
    adapter = TypeAdapter(annotation)
    assert constraints == {} and adapter.validate_python(9) == 9
    assert adapter.validate_python(9.0) == 9  # JSON has one number type
    for refused in (0, 10, 9.5):
        with pytest.raises(ValidationError):
            adapter.validate_python(refused)
    check = kind_of(integer).column_check(integer)
    assert check([1, 9]) and not check([0]) and not check([1.0])
    assert kind_of(number).from_json([1, 2.5]) == [1.0, 2.5]
    assert kind_of(integer).api_value(3.0) == 3 and kind_of(boolean).api_value(1.0) is True


def test_simulated_drift_values_and_changes_follow_the_kind() -> None:
    """`tabops simulate --drift FEATURE=...`: categories and booleans take a value of
    theirs, numbers an arithmetic change, and a shifted number keeps its type."""
    spec = UseCase.model_validate(
        {
            "name": "toy",
            "title": "Toy",
            "task": "binary",
            "target": {"name": "y", "classes": ["no", "yes"], "positive": "yes"},
            "features": [
                {"name": "n", "type": "integer", "min": 0, "max": 10},
                {"name": "x", "type": "number"},
                {"name": "c", "type": "category", "values": ["a", "b"]},
                {"name": "b", "type": "boolean"},
            ],
            "data": {"files": ["toy.csv"]},
        }
    )
    assert parse_shift(spec, "c=b") == Shift("c", "set", "b")
    assert parse_shift(spec, "b=TRUE") == Shift("b", "set", True)
    assert parse_shift(spec, "n=+2sd") == Shift("n", "sd", 2.0)
    assert parse_shift(spec, "x=*1.5") == Shift("x", "scale", 1.5)
    for wrong, reason in (("c=z", "c takes a, b"), ("b=maybe", "true, false or null")):
        with pytest.raises(InvalidRequestError, match=reason):
            parse_shift(spec, wrong)
    records = [{"n": 3, "x": 2.0, "c": "a", "b": False}]
    frame = pd.DataFrame({"n": [1, 5], "x": [1.0, 3.0]})
    apply_shifts(spec, frame, records, [parse_shift(spec, "n=+0.6"), parse_shift(spec, "x=*2")])
    assert records == [{"n": 4, "x": 4.0, "c": "a", "b": False}]
    assert type(records[0]["n"]) is int  # an integer stays an integer
