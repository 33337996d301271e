"""The README's own-use-case walk-through, run as written on a new CSV: init prints the
notes the README shows, the README's spec loads, seed and train work, and a plain server
answers predictions with a created key, or without one when anonymous predictions are on."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tabops.api.app import create_app
from tabops.cli import app
from tabops.config import Settings
from tabops.spec.files import parse_spec
from tests.conftest import REPO

pytestmark = pytest.mark.slow
runner = CliRunner()
WALKTHROUGH = (
    (REPO / "README.md")
    .read_text("utf-8")
    .split("## Add your own use case", 1)[1]
    .split("### The spec, field by field", 1)[0]
)


def _loans_csv(path: Path) -> Path:
    rng = np.random.default_rng(5)
    lines = ["loan_id,age,income,housing,Has Card,defaulted"]
    for i in range(400):
        age = int(rng.integers(19, 75))
        income = "?" if rng.random() < 0.1 else f"{rng.normal(2500, 700):.2f}"
        housing = str(rng.choice(["own", "rent", "family"]))
        card = "yes" if rng.random() < 0.5 else "no"
        risk = -2.0 + 0.05 * (45 - age) + (housing == "rent") * 0.8
        defaulted = "yes" if rng.random() < 1 / (1 + np.exp(-risk)) else "no"
        lines.append(f"L{i:05d},{age},{income},{housing},{card},{defaulted}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_readme_walkthrough_is_true_for_a_new_csv(tmp_path: Path) -> None:
    source = _loans_csv(tmp_path / "loans.csv")
    usecases = tmp_path / "usecases"
    env = {"TABOPS_VAR_DIR": str(tmp_path / "var"), "TABOPS_USECASES_DIR": str(usecases)}

    init = runner.invoke(
        app, ["init", "loans", "--csv", str(source), "--target", "defaulted"], env=env
    )
    assert init.exit_code == 0, init.output
    printed = [line.strip() for line in init.output.splitlines() if "note:" in line]
    shown = re.search(r"```\nwrote usecases/loans/usecase.yaml\n(.*?)```", WALKTHROUGH, re.S)
    assert shown is not None
    assert printed == [line.strip() for line in shown.group(1).splitlines()]

    example = re.search(r"```yaml\n(name: loans\n.*?)```", WALKTHROUGH, re.S)
    assert example is not None
    parse_spec(yaml.safe_load(example.group(1)), "README")

    seeded = runner.invoke(app, ["seed", "loans"], env=env)
    assert seeded.exit_code == 0 and "seeded 400 rows" in seeded.output, seeded.output
    trained = runner.invoke(app, ["train", "loans"], env=env)
    assert trained.exit_code == 0 and "champion" in trained.output, trained.output

    record = {"age": 41, "income": None, "housing": "rent", "has_card": True}
    assert '"age": 41, "income": null, "housing": "rent", "has_card": true' in WALKTHROUGH
    assert "TABOPS_AUTH__ANONYMOUS_PREDICT=true .venv/bin/tabops serve" in WALKTHROUGH
    assert "tabops keys create me --role predict" in WALKTHROUGH
    created = runner.invoke(app, ["keys", "create", "me", "--role", "predict"], env=env)
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]

    plain = Settings(var_dir=tmp_path / "var", usecases_dir=usecases)
    with TestClient(create_app(plain)) as api:
        refused = api.post("/usecases/loans/predict", json=record)
        assert refused.status_code == 401
        assert refused.json()["error"]["message"].startswith("an API key is required")
        answered = api.post(
            "/usecases/loans/predict", json=record, headers={"Authorization": f"Bearer {key}"}
        )
        assert answered.status_code == 200, answered.text
        assert answered.json()["label"] in ("no", "yes")
    anonymous = plain.model_copy(
        update={"auth": plain.auth.model_copy(update={"anonymous_predict": True})}
    )
    with TestClient(create_app(anonymous)) as api:
        assert api.post("/usecases/loans/predict", json=record).status_code == 200
