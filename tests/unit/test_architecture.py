"""The package's shape: no import cycle among tabops modules (function-local imports
count), and prediction routes that are transport over the data plane only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "tabops"

PREDICTION_ROUTES = ("predict", "feedback", "v2")
"""Route modules (``api/routes/<name>.py``) of REST predict, predict-by-id, feedback and V2."""

BEHIND_THE_DATA_PLANE = ("tabops.store", "tabops.scoring", "tabops.training", "tabops.lifecycle")

MAX_LINES = 450
"""The soft limit is ~400 lines a module; this is where a module must be split."""


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every tabops module ``module`` imports, at module level or inside a function,
    TYPE_CHECKING blocks included (an annotation is an arrow too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            for alias in node.names:  # `from tabops.store import audit` imports a module
                found.add(f"{name}.{alias.name}" if f"{name}.{alias.name}" in known else name)
    return {m for m in found if m in known and m != module}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: _imports(m, p, known) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_local_imports() -> None:
    graph = import_graph()
    # cli/models.py imports the trainer inside its command, to keep `tabops --help` fast
    assert "tabops.lifecycle.train" in graph["tabops.cli.models"]


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("route", PREDICTION_ROUTES)
def test_prediction_routes_are_transport_over_the_data_plane(route: str) -> None:
    module = f"tabops.api.routes.{route}"
    graph = import_graph()
    if module not in graph:
        pytest.fail(f"{module} does not exist")
    behind = sorted(
        m
        for m in graph[module]
        if any(m == p or m.startswith(p + ".") for p in BEHIND_THE_DATA_PLANE)
    )
    assert behind == [], f"{module} reaches past the data plane: {behind}"


def test_no_module_is_too_long() -> None:
    long = {
        m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
