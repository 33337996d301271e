"""The CLI through typer's runner: init -> seed -> train -> usecases, and user errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from tabops.cli import app
from tests.conftest import USECASES

pytestmark = pytest.mark.slow
runner = CliRunner()


def _env(tmp_path: Path, usecases: Path = USECASES) -> dict[str, str]:
    return {"TABOPS_VAR_DIR": str(tmp_path / "var"), "TABOPS_USECASES_DIR": str(usecases)}


def _leaves(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [(path, command)]
    return [leaf for name, sub in subcommands.items() for leaf in _leaves(sub, [*path, name])]


def test_every_command_has_help_with_an_example() -> None:
    leaves = _leaves(get_command(app), [])
    assert len(leaves) >= 9
    for path, command in leaves:
        assert command.help and "Example:" in command.help, path
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path


def test_own_csv_to_trained_model(tmp_path: Path) -> None:
    """A new user's path: init from their CSV, seed, train, list."""
    source = tmp_path / "flowers.csv"
    lines = ["Sepal L,Sepal W,kind"]
    for i in range(60):
        kind = "a" if i % 2 else "b"
        lines.append(
            f"{4 + (i % 7) * 0.3 + (1.5 if kind == 'a' else 0):.1f},{3 + (i % 5) * 0.1:.1f},{kind}"
        )
    source.write_text("\n".join(lines) + "\n")
    usecases = tmp_path / "usecases"
    env = _env(tmp_path, usecases)
    result = runner.invoke(
        app, ["init", "flowers", "--csv", str(source), "--target", "kind"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "positive class guessed" in result.output
    result = runner.invoke(app, ["seed", "flowers"], env=env)
    assert result.exit_code == 0, result.output
    assert "seeded 60 rows" in result.output
    result = runner.invoke(app, ["seed", "flowers"], env=env)
    assert "already seeded (60 rows)" in result.output
    result = runner.invoke(app, ["train", "flowers"], env=env)
    assert result.exit_code == 0, result.output
    assert "version 1" in result.output and "champion" in result.output
    result = runner.invoke(app, ["train", "--all", "--only-missing"], env=env)
    assert "has a champion; skipped" in result.output
    result = runner.invoke(app, ["usecases"], env=env)
    assert "flowers" in result.output and "v1" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seed", "nope"], "unknown use case 'nope'"),
        (["train", "iris"], "no training data for 'iris'"),
        (["seed", "iris", "--all"], "give a use case NAME or --all"),
        (["init", "x", "--csv", "/no/such.csv", "--target", "y"], "no such file"),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, args, env=_env(tmp_path))
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_seed_all_carries_on_without_school_data(tmp_path: Path) -> None:
    env = _env(tmp_path) | {"TABOPS_DATA_DIRS__SCHOOL": str(tmp_path / "absent")}
    result = runner.invoke(app, ["seed", "--all"], env=env)
    assert result.exit_code == 0, result.output
    assert "skipped school" in result.output and "archive.ics.uci.edu" in result.output
    assert "seeded 4454 rows into training_credit" in result.output
    single = runner.invoke(app, ["seed", "school"], env=env)
    assert single.exit_code == 1 and "TABOPS_DATA_DIRS__SCHOOL" in single.output
