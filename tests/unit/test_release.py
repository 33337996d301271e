"""A release is consistent: one version, a Keep-a-Changelog file, and a package that builds.

The build test runs `python -m build` (in its isolated environment, as CI does) and
`twine check --strict` on what it produced, then reads the wheel's metadata back.
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from scripts.release_notes import HEADING, package_version, release_notes, sections
from typer.testing import CliRunner

from tabops import __version__
from tabops.cli import app
from tests.conftest import REPO

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$")
CHANGELOG = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")


def _key(version: str) -> tuple[int, ...]:
    match = SEMVER.match(version)
    assert match, version
    return tuple(int(part) for part in match.groups())


def test_the_version_is_semver_and_read_from_one_place() -> None:
    assert SEMVER.match(__version__)
    assert package_version() == __version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "tabops.__version__"


def test_tabops_version_prints_the_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"tabops {__version__}\n"
    # the console script's way in, as a user types it
    done = subprocess.run(
        [sys.executable, "-m", "tabops", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"tabops {__version__}"


def test_the_changelog_keeps_a_changelog() -> None:
    headings = [HEADING.match(line) for line in CHANGELOG.splitlines() if line.startswith("## ")]
    assert all(headings), "every second-level heading is '## [version] - date'"
    names = [m.group("version") for m in headings if m]
    assert names[0] == "Unreleased"
    released = [m for m in headings[1:] if m]
    assert released and all(m.group("date") for m in released), "released sections are dated"
    versions = [m.group("version") for m in released]
    assert versions == sorted(versions, key=_key, reverse=True), "newest first"
    dates = [m.group("date") for m in released]
    assert dates == sorted(dates, reverse=True)
    # the code's version is the newest release: what comes after it is Unreleased
    assert versions[0] == __version__
    kinds = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    subheadings = {line[4:].strip() for line in CHANGELOG.splitlines() if line.startswith("### ")}
    assert subheadings <= kinds
    for name in names:  # every section has its comparison link at the bottom
        assert re.search(rf"^\[{re.escape(name)}\]: https://", CHANGELOG, re.MULTILINE), name


def test_release_notes_are_the_section_of_the_tagged_version() -> None:
    notes = release_notes(f"v{__version__}")
    assert notes == sections(CHANGELOG)[__version__][1]
    assert "### " in notes  # what changed, not only a date
    assert "## [" not in notes and "]: https://" not in notes
    with pytest.raises(SystemExit, match="not the package version"):
        release_notes("v99.0.0")


def test_the_project_metadata_is_complete() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0" and (REPO / project["license-files"][0]).is_file()
    assert project["authors"] and project["readme"] == "README.md"
    assert {"Homepage", "Repository", "Changelog", "Issues"} <= set(project["urls"])
    classifiers = project["classifiers"]
    assert "Typing :: Typed" in classifiers
    minimum = project["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {minimum}" in classifiers


@pytest.mark.slow
def test_the_package_builds_and_passes_twine_check(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    assert wheel.name == f"tabops-{__version__}-py3-none-any.whl"
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.message_from_bytes(
            archive.read(f"tabops-{__version__}.dist-info/METADATA")
        )
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert {"tabops/py.typed", f"tabops-{__version__}.dist-info/licenses/LICENSE"} <= names
    assert any(n.startswith("tabops/store/migrations/versions/") for n in names)
    assert not any(n.startswith(("tests/", "scripts/", "bench/")) for n in names)
    with tarfile.open(sdist) as archive:
        root = f"tabops-{__version__}"
        members = {Path(m).relative_to(root).as_posix() for m in archive.getnames() if m != root}
    assert {"pyproject.toml", "README.md", "LICENSE", "src/tabops/__init__.py"} <= members
