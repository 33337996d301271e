"""`tabops explain` over a trained champion: one record, the global view, bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tabops.cli import app
from tabops.config import Settings
from tabops.lifecycle.train import TrainingOutcome
from tests.conftest import USECASES

pytestmark = pytest.mark.slow
runner = CliRunner()

Trained = tuple[Settings, dict[str, TrainingOutcome]]
RECORD = {
    "Seniority": 0,
    "Home": "other",
    "Time": 18,
    "Age": 21,
    "Marital": "single",
    "prior_records": True,
    "Job": "partime",
    "Expenses": 35,
    "Income": 50,
    "Assets": 0,
    "Debt": 0,
    "Amount": 400,
    "Price": 500,
}


def _env(settings: Settings) -> dict[str, str]:
    return {"TABOPS_VAR_DIR": str(settings.var_dir), "TABOPS_USECASES_DIR": str(USECASES)}


def test_explain_one_record_as_json_and_as_a_table(trained: Trained) -> None:
    settings, _ = trained
    args = ["explain", "credit", "--record", json.dumps(RECORD)]
    result = runner.invoke(app, [*args, "--json"], env=_env(settings))
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert (body["method"], body["scale"], body["class"]) == ("linear", "log_odds", "bad")
    assert list(body["contributions"]) == list(RECORD)
    assert body["value"] == pytest.approx(body["base_value"] + sum(body["contributions"].values()))
    assert body["reasons"] and all("the chance that Status is bad" in r for r in body["reasons"])
    table = runner.invoke(app, args, env=_env(settings))
    assert table.exit_code == 0, table.output
    assert "linear, log_odds of bad: base" in table.output
    assert body["reasons"][0] in table.output


def test_explain_global_view_beside_training_importances(trained: Trained) -> None:
    settings, _ = trained
    result = runner.invoke(app, ["explain", "iris", "--global", "--json"], env=_env(settings))
    assert result.exit_code == 0, result.output
    view = json.loads(result.output)
    assert view["scale"] == "class_logit" and view["explanations"] > 0
    assert {f["feature"] for f in view["features"]} == {
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    }
    assert all(f["training_importance"] is not None for f in view["features"])
    assert view["shift"] is None or 0.0 <= view["shift"] <= 1.0


def test_explain_refuses_an_invalid_record_with_its_field(trained: Trained) -> None:
    settings, _ = trained
    bad = json.dumps({**RECORD, "Age": 7})
    result = runner.invoke(app, ["explain", "credit", "--record", bad], env=_env(settings))
    assert result.exit_code == 1
    assert "invalid record" in result.output and "Age" in result.output
    result = runner.invoke(app, ["explain", "credit", "--record", "{"], env=_env(settings))
    assert result.exit_code == 1 and "not JSON" in result.output
