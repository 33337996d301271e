"""Seed data spread over several files, joined on keys written differently by each system."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tabops.config import Settings
from tabops.data.datasets import load_source
from tabops.errors import DataValidationError
from tabops.spec.files import load_usecase, parse_spec
from tabops.training.fit import fit_usecase
from tests.conftest import REPO, _shared_data, require

FIXTURES = REPO / "tests" / "fixtures" / "usecases"


def _settings(tmp_path: Path, usecases: Path, name: str, folder: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", usecases_dir=usecases, data_dirs={name: folder})


def _small(tmp_path: Path, **join: Any) -> tuple[Settings, Any]:
    (tmp_path / "people.csv").write_text("id,age\n1,30\n2,41\n3,52\n4,23\n5,35\n")
    (tmp_path / "eval.csv").write_text("eval_id;score\nE_1;3\nE_2;4\nE_3;1\nE_4;2\nE_9;2\n")
    (tmp_path / "survey.csv").write_text(
        "code,left\n000001,yes\n000002,no\n000003,no\n000004,yes\n000005,no\n"
    )
    raw = {
        "name": "staff",
        "title": "Staff",
        "task": "binary",
        "target": {"name": "left", "classes": ["no", "yes"], "positive": "yes"},
        "entity_id": {"name": "id", "type": "integer"},
        "features": [
            {"name": "age", "type": "integer", "min": 16, "max": 80},
            {"name": "score", "type": "integer", "min": 1, "max": 4, "required": False},
        ],
        "data": {
            "files": ["people.csv"],
            "key": "id",
            "join": [
                {
                    "file": "eval.csv",
                    "key": "eval_id",
                    "separator": ";",
                    "transform": {"strip_prefix": "E_"},
                    **join,
                },
                {"file": "survey.csv", "key": "code", "transform": {"strip_leading_zeros": True}},
            ],
        },
    }
    usecases = tmp_path / "usecases"
    (usecases / "staff").mkdir(parents=True)
    (usecases / "staff" / "usecase.yaml").write_text(yaml.safe_dump(raw))
    return _settings(tmp_path, usecases, "staff", tmp_path), load_usecase(usecases, "staff")


def test_files_are_joined_on_transformed_keys_and_unmatched_keys_reported(
    tmp_path: Path,
) -> None:
    settings, spec = _small(tmp_path)
    source = load_source(spec, settings)
    assert list(source.frame["id"]) == [1, 2, 3, 4]
    assert list(source.frame["score"]) == [3, 4, 1, 2]
    assert list(source.frame["left"]) == ["yes", "no", "no", "yes"]
    assert source.notes[0] == (
        "eval.csv: 4 of 5 rows matched on 'id'; 1 without a match left out ('5'); "
        "1 key(s) of eval.csv match no row ('9')"
    )
    assert source.notes[1] == (
        "survey.csv: 4 of 4 rows matched on 'id'; 1 key(s) of survey.csv match no row ('5')"
    )


def test_an_optional_join_keeps_unmatched_rows(tmp_path: Path) -> None:
    settings, spec = _small(tmp_path, required=False)
    source = load_source(spec, settings)
    assert list(source.frame["id"]) == [1, 2, 3, 4, 5]
    assert source.frame["score"].isna().tolist() == [False] * 4 + [True]
    assert "1 without a match kept with its columns empty" in source.notes[0]


def test_a_repeated_key_in_a_joined_file_is_an_error(tmp_path: Path) -> None:
    settings, spec = _small(tmp_path)
    (tmp_path / "survey.csv").write_text("code,left\n01,yes\n1,no\n2,no\n")
    with pytest.raises(DataValidationError, match=r"survey.csv: key 'code' repeats 1 value"):
        load_source(spec, settings)


def test_join_needs_a_key() -> None:
    with pytest.raises(Exception, match="'join' needs 'key'"):
        parse_spec(
            {
                "name": "x",
                "title": "x",
                "task": "binary",
                "target": {"name": "t", "classes": ["a", "b"], "positive": "b"},
                "features": [{"name": "f", "type": "number"}],
                "data": {"files": ["a.csv"], "join": [{"file": "b.csv", "key": "k"}]},
            }
        )


@pytest.fixture(scope="module")
def hr_folder() -> Path:
    folder = _shared_data() / "hr-attrition-oc"
    require((folder / "extrait_sirh.csv").is_file(), f"HR extracts not found in {folder}")
    return folder


def test_hr_extracts_join_into_one_row_per_employee(tmp_path: Path, hr_folder: Path) -> None:
    settings = _settings(tmp_path, FIXTURES, "hr_attrition", hr_folder)
    spec = load_usecase(FIXTURES, "hr_attrition")
    source = load_source(spec, settings)
    assert len(source.frame) == 1470
    assert source.frame["left"].value_counts().to_dict() == {"Non": 1233, "Oui": 237}
    assert source.frame["id_employee"].is_unique
    assert source.notes == [
        "extrait_eval.csv: 1470 of 1470 rows matched on 'id_employee'",
        "extrait_sondage.csv: 1470 of 1470 rows matched on 'id_employee'",
    ]


@pytest.mark.slow
def test_hr_attrition_trains_from_the_joined_rows(tmp_path: Path, hr_folder: Path) -> None:
    from tabops.data.datasets import training_dtypes

    settings = _settings(tmp_path, FIXTURES, "hr_attrition", hr_folder)
    spec = load_usecase(FIXTURES, "hr_attrition")
    typed = load_source(spec, settings).frame
    frame = training_dtypes(spec, typed)
    frame["left"] = typed["left"].astype(str)
    trained = fit_usecase(spec, frame)
    assert trained.holdout_metrics["roc_auc"] >= 0.75
    assert trained.holdout_metrics["roc_auc"] > trained.baseline_metrics["roc_auc"] + 0.2
    assert trained.warnings == []


def test_seed_reports_the_join_of_the_hr_extracts(tmp_path: Path, hr_folder: Path) -> None:
    from typer.testing import CliRunner

    from tabops.cli import app

    env = {
        "TABOPS_VAR_DIR": str(tmp_path / "var"),
        "TABOPS_USECASES_DIR": str(FIXTURES),
        "TABOPS_DATA_DIRS__HR_ATTRITION": str(hr_folder),
    }
    result = CliRunner().invoke(app, ["seed", "hr_attrition"], env=env)
    assert result.exit_code == 0, result.output
    assert "hr_attrition: extrait_eval.csv: 1470 of 1470 rows matched on 'id_employee'" in (
        result.output
    )
    assert "seeded 1470 rows into training_hr_attrition" in result.output
