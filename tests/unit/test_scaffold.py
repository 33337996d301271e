"""`tabops init`: a starter spec inferred from a CSV loads and can be trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from tabops.data.scaffold import infer_spec, write_starter_spec
from tabops.errors import SpecError
from tabops.spec.files import load_usecase


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "loans.csv"
    path.write_text(
        "Customer ID;Monthly Income;plan;Has Card;records;defaulted\n"
        "A1;1200.5;basic;yes;3;no\n"
        "A2;;pro;no;0;yes\n"
        "A3;800;basic;yes;1;no\n"
        "A4;950.25;plus;no;2;no\n"
    )
    return path


def test_infers_types_bounds_values_id_and_renames(tmp_path: Path) -> None:
    spec, notes = infer_spec("loans", _csv(tmp_path), "defaulted")
    assert spec["task"] == "binary"
    assert spec["target"] == {"name": "defaulted", "classes": ["no", "yes"], "positive": "yes"}
    assert spec["entity_id"] == {"name": "customer_id", "type": "string", "column": "Customer ID"}
    features = {f["name"]: f for f in spec["features"]}
    income = features["monthly_income"]
    assert income["type"] == "number" and income["required"] is False
    # observed 800..1200.5, widened by half the range each side, rounded outwards
    assert (income["min"], income["max"]) == (599.0, 1401.0)
    assert income["column"] == "Monthly Income"
    assert features["plan"]["values"] == ["basic", "plus", "pro"]
    assert features["has_card"]["type"] == "boolean"
    assert features["records_value"]["type"] == "integer"  # 'records' is reserved
    assert spec["data"]["separator"] == ";"
    assert any("positive class guessed" in n for n in notes)


def test_written_spec_loads(tmp_path: Path) -> None:
    usecases = tmp_path / "usecases"
    path, _ = write_starter_spec(usecases, "loans", _csv(tmp_path), "defaulted")
    spec = load_usecase(usecases, "loans")
    assert spec.data.dir == str(tmp_path.resolve())
    assert path.read_text().startswith("# Starter spec")
    with pytest.raises(SpecError, match="already exists"):
        write_starter_spec(usecases, "loans", _csv(tmp_path), "defaulted")


def test_unknown_target_lists_columns(tmp_path: Path) -> None:
    with pytest.raises(
        SpecError, match=r"target column .nope. is not in .* \(columns: Customer ID"
    ):
        infer_spec("loans", _csv(tmp_path), "nope")
