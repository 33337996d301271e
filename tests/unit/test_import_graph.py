"""The import graph of ``src/tabops``, read with ``ast`` (module-level and function-level
imports alike): no cycle, and the prediction routes are transport over the data plane."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PREDICTION_ROUTES = ("predict", "feedback", "v2")
"""REST predict and predict-by-id, feedback, and the Open Inference Protocol."""
BELOW_THE_DATA_PLANE = ("store", "scoring", "training", "lifecycle")


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "tabops").rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def _package(module: str) -> str:
    """``tabops.store.rows`` -> ``store`` (``tabops`` itself -> ``""``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_prediction_routes_reach_only_the_data_plane() -> None:
    """They import from ``api/`` and ``serving/dataplane`` only."""
    graph = _graph()
    for route in PREDICTION_ROUTES:
        name = f"tabops.api.routes.{route}"
        assert name in graph, name
        below = sorted(
            m for m in graph[name] if m.split(".")[1:2] in ([p] for p in BELOW_THE_DATA_PLANE)
        )
        assert below == [], f"{name} imports {below}"
        outside = sorted(
            m
            for m in graph[name]
            if not m.startswith("tabops.api.") and m != "tabops.serving.dataplane"
        )
        assert outside == [], f"{name} imports {outside}"
