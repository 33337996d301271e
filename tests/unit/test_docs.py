"""The README stays true: every setting is documented, and the quick start is the two commands."""

from __future__ import annotations

from pydantic import BaseModel

from tabops.config import Settings
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def _variables(model: type[BaseModel], prefix: str) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _variables(annotation, f"{prefix}{name.upper()}__")
        elif name == "data_dirs":
            names.append(f"{prefix}DATA_DIRS__<NAME>")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_in_the_readme() -> None:
    missing = [v for v in _variables(Settings, "TABOPS_") if f"`{v}`" not in README]
    assert not missing


def test_quick_start_is_the_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [
        line.split("#")[0].strip() for line in quick.splitlines() if line.startswith("make ")
    ]
    assert commands == ["make run", "make test"]
