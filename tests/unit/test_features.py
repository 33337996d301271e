"""Feature kinds: one owner per feature type for every rule that depends on the type."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import BigInteger, Boolean, Float, String

from tabops.spec.features import KINDS, kind_of
from tabops.spec.schema import Feature, FeatureType


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
