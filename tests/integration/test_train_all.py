"""`tabops train --all` trains every use case it can and reports the others in one line;
hyperparameters are checked before any data is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tabops.cli import app
from tabops.errors import SpecError
from tabops.spec.files import parse_spec
from tabops.training.pipeline import build_pipeline
from tests.factories import spec_dict, toy_frame

runner = CliRunner()


def _write(usecases: Path, name: str, rows: int, **changes: Any) -> None:
    folder = usecases / name
    folder.mkdir(parents=True)
    raw = spec_dict(name=name, training={"cv_folds": 3, "reference_size": 50}, **changes)
    (folder / "usecase.yaml").write_text(yaml.safe_dump(raw), "utf-8")
    toy_frame(rows).to_csv(folder / "toy.csv", index=False)


@pytest.mark.parametrize(
    ("value", "reason"), [(-1, "range (0.0, inf]"), ("high", "must be a float")]
)
def test_invalid_hyperparameter_values_are_refused_when_the_pipeline_is_built(
    value: object, reason: str
) -> None:
    spec = parse_spec(spec_dict(model={"family": "logistic_regression", "params": {"C": value}}))
    with pytest.raises(SpecError) as caught:
        build_pipeline(spec)
    assert caught.value.details[0].field == "model.params.C"
    assert reason in caught.value.details[0].reason


def test_train_names_the_bad_parameter_in_one_line(tmp_path: Path) -> None:
    usecases = tmp_path / "usecases"
    _write(usecases, "bad", 100, model={"family": "logistic_regression", "params": {"C": "high"}})
    env = {"TABOPS_VAR_DIR": str(tmp_path / "var"), "TABOPS_USECASES_DIR": str(usecases)}
    result = runner.invoke(app, ["train", "bad"], env=env)
    assert result.exit_code == 1
    assert "model.params.C" in result.output and "'high'" in result.output
    assert "Traceback" not in result.output and "no training data" not in result.output


@pytest.mark.slow
def test_train_all_trains_the_rest_and_fails_only_when_strict(tmp_path: Path) -> None:
    usecases = tmp_path / "usecases"
    _write(usecases, "good", 200)
    _write(usecases, "params", 200, model={"family": "logistic_regression", "params": {"C": -1}})
    _write(usecases, "tiny", 12)
    env = {"TABOPS_VAR_DIR": str(tmp_path / "var"), "TABOPS_USECASES_DIR": str(usecases)}
    seeded = runner.invoke(app, ["seed", "--all"], env=env)
    assert seeded.exit_code == 0, seeded.output
    result = runner.invoke(app, ["train", "--all"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("good: version 1") for line in lines), result.output
    failed = [line for line in lines if line.startswith("failed ")]
    assert [line.split(":")[0] for line in failed] == ["failed params", "failed tiny"]
    assert "model.params.C" in failed[0] and "too little data" in failed[1]
    assert "2 of 3 use case(s) did not train: params, tiny" in result.output
    assert "Traceback" not in result.output
    strict = runner.invoke(app, ["train", "--all", "--strict", "--only-missing"], env=env)
    assert strict.exit_code == 1
    assert "good: has a champion; skipped" in strict.output


@pytest.mark.slow
def test_train_warns_about_a_feature_that_gives_the_target_away(tmp_path: Path) -> None:
    import numpy as np

    usecases = tmp_path / "usecases"
    folder = usecases / "leaky"
    folder.mkdir(parents=True)
    raw = spec_dict(name="leaky", training={"cv_folds": 3, "reference_size": 50})
    raw["features"].append({"name": "closed", "type": "boolean"})
    (folder / "usecase.yaml").write_text(yaml.safe_dump(raw), "utf-8")
    rows = toy_frame(200)
    rows["closed"] = np.where(rows["outcome"] == "yes", "yes", "no")
    rows.to_csv(folder / "toy.csv", index=False)
    env = {"TABOPS_VAR_DIR": str(tmp_path / "var"), "TABOPS_USECASES_DIR": str(usecases)}
    assert runner.invoke(app, ["seed", "leaky"], env=env).exit_code == 0
    result = runner.invoke(app, ["train", "leaky"], env=env)
    assert result.exit_code == 0, result.output
    assert (
        "warning leaky: feature 'closed' alone predicts the target with ROC AUC 1.000"
        in result.output
    )
