"""Spec files: ``usecases/<name>/usecase.yaml`` parsed, validated, listed and written back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from tabops.errors import FieldIssue, SpecError, UseCaseNotFoundError
from tabops.spec.schema import _IDENTIFIER, UseCase

SPEC_FILENAME = "usecase.yaml"


def _loc_to_field(raw: Any, loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as ``features[3] (Age).max``, naming list items when possible."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            try:
                node = node[item]
                if isinstance(node, dict) and "name" in node:
                    label += f" ({node['name']})"
            except (IndexError, KeyError, TypeError):
                node = None
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def parse_spec(raw: Any, source: str = "<spec>") -> UseCase:
    """Validate a spec given as a mapping.

    Args:
        raw: The parsed YAML document.
        source: Where it came from, for error messages.

    Returns:
        The validated use case.

    Raises:
        SpecError: naming the source, the field and the reason of each problem.
    """
    if not isinstance(raw, dict):
        raise SpecError(
            f"invalid use-case spec {source}",
            [FieldIssue("(top level)", "must be a mapping of fields")],
        )
    try:
        return UseCase.model_validate(raw)
    except ValidationError as exc:
        details = []
        for err in exc.errors():
            field = _loc_to_field(raw, tuple(err["loc"]))
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                reason = "unknown field"
            details.append(FieldIssue(field, reason))
        raise SpecError(f"invalid use-case spec {source}", details) from None


def load_spec(path: Path) -> UseCase:
    """Read and validate a ``usecase.yaml`` file.

    Raises:
        SpecError: the file is missing, is not YAML, or is not a valid spec.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read use-case spec {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"invalid YAML in {path}{where}: {problem}") from None
    spec = parse_spec(raw, str(path))
    if spec.name != path.parent.name:
        raise SpecError(
            f"invalid use-case spec {path}",
            [FieldIssue("name", f"'{spec.name}' must match its folder name '{path.parent.name}'")],
        )
    return spec


def list_usecases(usecases_dir: Path) -> list[str]:
    """Names of the use cases found in a folder, sorted."""
    if not usecases_dir.is_dir():
        return []
    return sorted(p.parent.name for p in usecases_dir.glob(f"*/{SPEC_FILENAME}"))


def load_usecase(usecases_dir: Path, name: str) -> UseCase:
    """Load the spec of the use case ``name`` from ``usecases_dir``.

    Raises:
        UseCaseNotFoundError: there is no such use case.
        SpecError: its spec is invalid.
    """
    path = usecases_dir / name / SPEC_FILENAME
    if not _IDENTIFIER.match(name) or not path.is_file():
        known = ", ".join(list_usecases(usecases_dir)) or "none"
        raise UseCaseNotFoundError(f"unknown use case '{name}' (known: {known})")
    return load_spec(path)


def dump_spec(spec: UseCase) -> str:
    """The spec as YAML (what is logged with each model version)."""
    data = spec.model_dump(mode="json", exclude_defaults=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
