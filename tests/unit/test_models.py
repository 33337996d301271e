"""API models derived from the spec: fields, bounds, allowed values, strictness, example."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tabops.spec.derive import prediction_model, record_model
from tabops.spec.files import parse_spec
from tabops.store.training_tables import training_table
from tests.factories import spec_dict

SPEC = parse_spec(spec_dict())
GOOD: dict[str, Any] = {"age": 40, "income": 2500.5, "plan": "plus", "active": True}
MODEL = record_model(SPEC)


def test_json_schema_shows_fields_bounds_values_and_example() -> None:
    model = record_model(SPEC, GOOD)
    schema = model.model_json_schema()
    props = schema["properties"]
    assert set(props) == {"age", "income", "plan", "active"}
    assert props["age"]["type"] == "integer"
    assert (props["age"]["minimum"], props["age"]["maximum"]) == (18, 100)
    assert "years" in props["age"]["description"]
    assert props["plan"]["enum"] == ["basic", "plus", "pro"]
    assert set(schema["required"]) == {"age", "plan", "active"}
    assert schema["additionalProperties"] is False
    assert schema["examples"] == [GOOD]


def test_valid_record_and_optional_gap() -> None:
    model = record_model(SPEC)
    assert model.model_validate(GOOD).model_dump() == GOOD
    gap = {k: v for k, v in GOOD.items() if k != "income"}
    assert model.model_validate(gap).model_dump()["income"] is None
    assert model.model_validate({**GOOD, "income": None}).model_dump()["income"] is None


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"age": 17}, "age", "greater_than_equal"),
        ({"age": 40.5}, "age", "int_type"),
        ({"age": "40"}, "age", "int_type"),
        ({"plan": "gold"}, "plan", "literal_error"),
        ({"active": 1}, "active", "bool_type"),
        ({"income": math.nan}, "income", "finite_number"),
        ({"income": math.inf}, "income", "finite_number"),
        ({"colour": "red"}, "colour", "extra_forbidden"),
        ({"plan": None}, "plan", "literal_error"),
    ],
)
def test_bad_values_are_refused(change: dict[str, Any], field: str, kind: str) -> None:
    with pytest.raises(ValidationError) as info:
        record_model(SPEC).model_validate({**GOOD, **change})
    errors = info.value.errors()
    assert [(e["loc"], e["type"]) for e in errors] == [((field,), kind)]


def test_prediction_model_lists_classes() -> None:
    schema = prediction_model(SPEC).model_json_schema()
    assert schema["properties"]["label"]["enum"] == ["no", "yes"]
    assert {"prediction_id", "probabilities", "threshold", "model_version"} <= set(
        schema["properties"]
    )


def test_training_table_columns_come_from_spec() -> None:
    table = training_table(SPEC)
    types = {c.name: type(c.type).__name__ for c in table.columns}
    assert types["customer"] == "String"
    assert types["age"] == "BigInteger"
    assert types["income"] == "Float"
    assert types["plan"] == "String"
    assert types["active"] == "Boolean"
    assert types["outcome"] == "String"
    assert table.c.income.nullable and not table.c.age.nullable
    assert table.c.customer.unique


@given(
    age=st.integers(18, 100),
    income=st.none() | st.floats(0, 1e9, allow_nan=False),
    plan=st.sampled_from(["basic", "plus", "pro"]),
    active=st.booleans(),
)
def test_valid_records_round_trip(age: int, income: float | None, plan: str, active: bool) -> None:
    record = {"age": age, "income": income, "plan": plan, "active": active}
    assert MODEL.model_validate(record).model_dump() == record
