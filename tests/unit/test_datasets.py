"""Row validation of seed data, the school data's loader, and target derivation."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tabops.data.datasets import data_files, from_source_columns, read_source, validate_frame
from tabops.errors import DataNotFoundError, DataValidationError
from tabops.spec.files import load_usecase, parse_spec
from tests.conftest import USECASES, make_settings
from tests.factories import spec_dict, toy_frame

SPEC = parse_spec(spec_dict())


def test_valid_rows_are_typed() -> None:
    typed = validate_frame(SPEC, toy_frame(50))
    assert str(typed["age"].dtype) == "Int64"
    assert str(typed["income"].dtype) == "float64"
    assert str(typed["active"].dtype) == "boolean"
    assert typed["plan"].map(type).eq(str).all()


def test_every_bad_cell_is_reported_with_row_column_reason() -> None:
    frame = toy_frame(10).astype(object)
    frame.loc[1, "age"] = 17
    frame.loc[2, "age"] = 30.5
    frame.loc[3, "plan"] = "gold"
    frame.loc[4, "active"] = "maybe"
    frame.loc[5, "income"] = "lots"
    frame.loc[6, "age"] = None
    frame.loc[7, "outcome"] = "perhaps"
    frame.loc[8, "customer"] = frame.loc[0, "customer"]
    with pytest.raises(DataValidationError) as info:
        validate_frame(SPEC, frame, first_row=2)
    found = {(d.row, d.field, d.reason) for d in info.value.details}
    assert found == {
        (3, "age", "'17' is below the minimum 18"),
        (4, "age", "'30.5' is not a whole number"),
        (5, "plan", "'gold' is not one of the allowed values"),
        (6, "active", "'maybe' is not a boolean (true/false, yes/no, 1/0)"),
        (7, "income", "'lots' is not a number"),
        (8, "age", "value is required"),
        (9, "outcome", "'perhaps' is not one of the allowed values"),
        (10, "customer", f"duplicate id '{frame.loc[0, 'customer']}'"),
    }


def test_missing_column_is_reported() -> None:
    with pytest.raises(DataValidationError) as info:
        validate_frame(SPEC, toy_frame(5).drop(columns=["plan"]))
    assert [(d.field, d.reason) for d in info.value.details] == [("plan", "column not found")]


def test_missing_school_data_says_where_to_get_and_put_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var", school=tmp_path / "nowhere")
    spec = load_usecase(USECASES, "school")
    with pytest.raises(DataNotFoundError) as info:
        data_files(spec, settings)
    message = str(info.value)
    assert "student-mat.csv" in message and "student-por.csv" in message
    assert "https://archive.ics.uci.edu/dataset/320/student+performance" in message
    assert str((tmp_path / "nowhere").resolve()) in message
    assert "TABOPS_DATA_DIRS__SCHOOL" in message


def test_school_target_is_derived_from_final_grade(school_dir: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var", school=school_dir)
    spec = load_usecase(USECASES, "school")
    frame = read_source(spec, settings)
    assert len(frame) == 1044
    assert list(frame.columns) == [*spec.feature_names, "outcome"]
    raw = pd.concat(
        [pd.read_csv(school_dir / f, sep=";") for f in ("student-mat.csv", "student-por.csv")],
        ignore_index=True,
    )
    expected = (raw["G3"] >= 10).map({True: "pass", False: "fail"})
    assert (frame["outcome"] == expected).all()
    assert round((frame["outcome"] == "pass").mean(), 2) == 0.78


def test_source_column_renames() -> None:
    spec = parse_spec(
        spec_dict(features=[{"name": "age", "type": "integer", "column": "Age (years)"}])
    )
    raw = pd.DataFrame({"Age (years)": ["30"], "outcome": ["yes"], "customer": ["a"]})
    assert list(from_source_columns(spec, raw, "here").columns) == ["customer", "age", "outcome"]


@pytest.mark.parametrize("name", ["attrition", "churn", "credit", "iris"])
def test_bundled_data_passes_its_spec(name: str, tmp_path: Path) -> None:
    expected_rows = {"attrition": 1470, "churn": 7043, "credit": 4454, "iris": 150}
    frame = read_source(load_usecase(USECASES, name), make_settings(tmp_path / "var"))
    assert len(frame) == expected_rows[name]
