"""Spec parsing: every bundled spec loads; each kind of invalid spec names file, field, reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tabops.errors import SpecError, UseCaseNotFoundError
from tabops.spec.files import dump_spec, list_usecases, load_spec, load_usecase, parse_spec
from tests.conftest import USECASES
from tests.factories import BASE_SPEC, spec_dict


def test_bundled_usecases_are_all_present() -> None:
    assert list_usecases(USECASES) == ["attrition", "churn", "credit", "iris", "school"]


@pytest.mark.parametrize("name", ["attrition", "churn", "credit", "iris", "school"])
def test_bundled_spec_loads_and_round_trips(name: str) -> None:
    spec = load_usecase(USECASES, name)
    assert spec.name == name
    assert spec.features
    assert parse_spec(yaml.safe_load(dump_spec(spec))) == spec


def _feature(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "type": "number", **fields}


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing task", {k: v for k, v in BASE_SPEC.items() if k != "task"}, "task", "Field required"),
    ("unknown field", spec_dict(colour="red"), "colour", "unknown field"),
    ("bad task", spec_dict(task="regression"), "task", "'binary' or 'multiclass'"),
    (
        "category without values",
        spec_dict(features=[{"name": "plan", "type": "category"}]),
        "features[0] (plan)",
        "needs a non-empty 'values'",
    ),
    (
        "min above max",
        spec_dict(features=[_feature(min=5, max=1)]),
        "features[0] (x)",
        "greater than max",
    ),
    (
        "values on a number",
        spec_dict(features=[_feature(values=["a"])]),
        "features[0] (x)",
        "only for category",
    ),
    (
        "bad feature type",
        spec_dict(features=[_feature(type="text")]),
        "features[0] (x).type",
        "'number'",
    ),
    (
        "bad identifier",
        spec_dict(features=[_feature(name="monthly income")]),
        "features[0] (monthly income).name",
        "pattern",
    ),
    (
        "reserved name",
        spec_dict(features=[_feature(name="records")]),
        "features[0] (records)",
        "reserved",
    ),
    (
        "duplicate features",
        spec_dict(features=[_feature(), _feature()]),
        "(top level)",
        "duplicate feature names: x",
    ),
    (
        "binary with three classes",
        spec_dict(target={"name": "y", "classes": ["a", "b", "c"], "positive": "a"}),
        "(top level)",
        "exactly 2 target classes",
    ),
    (
        "positive not a class",
        spec_dict(target={"name": "y", "classes": ["a", "b"], "positive": "z"}),
        "(top level)",
        "target.positive must be one of",
    ),
    ("unknown gate metric", spec_dict(gate={"metric": "r2"}), "gate.metric", "unknown metric 'r2'"),
    (
        "unknown model family",
        spec_dict(model={"family": "svm"}),
        "model.family",
        "logistic_regression",
    ),
    (
        "threshold out of range",
        spec_dict(decision={"threshold": 1.5}),
        "decision.threshold",
        "less than 1",
    ),
    ("no features", spec_dict(features=[]), "features", "at least 1 item"),
    ("not a mapping", [], "(top level)", "must be a mapping"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("case", "raw", "field", "reason"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_names_file_field_and_reason(
    tmp_path: Path, case: str, raw: dict[str, Any], field: str, reason: str
) -> None:
    path = tmp_path / "toy" / "usecase.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert any(d.field == field and reason in d.reason for d in info.value.details), message


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    path = tmp_path / "toy" / "usecase.yaml"
    path.parent.mkdir()
    path.write_text("name: toy\ntitle: [unclosed\n")
    with pytest.raises(SpecError, match=r"invalid YAML in .*usecase.yaml at line \d+"):
        load_spec(path)


def test_name_must_match_folder(tmp_path: Path) -> None:
    path = tmp_path / "other" / "usecase.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec_dict()))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.details[0].field == "name"


def test_unknown_usecase_lists_known_ones() -> None:
    with pytest.raises(UseCaseNotFoundError, match="known: attrition, churn, credit, iris, school"):
        load_usecase(USECASES, "nope")


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read use-case spec"):
        load_spec(tmp_path / "toy" / "usecase.yaml")
