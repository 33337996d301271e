"""Print the CHANGELOG.md section of one release: the body of a GitHub release.

Used by .github/workflows/release.yml on a ``vX.Y.Z`` tag. It fails (exit 1) when the tag
is not the package's version (``tabops.__version__``) or when CHANGELOG.md has no dated
section for that version, so that a release is never cut with a wrong number or no notes.

    python scripts/release_notes.py v0.1.0 > notes.md
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$")


def package_version(root: Path = ROOT) -> str:
    """``__version__`` of src/tabops/__init__.py, read without importing the package."""
    tree = ast.parse((root / "src/tabops/__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, str)
            return value
    raise SystemExit("src/tabops/__init__.py sets no __version__")


def sections(text: str) -> dict[str, tuple[str | None, str]]:
    """Every ``## [version] - date`` section: version -> (date or None, body)."""
    found: dict[str, tuple[str | None, str]] = {}
    current: str | None = None
    date: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        match = HEADING.match(line)
        if match or (current is not None and line.startswith("[") and "]: " in line):
            if current is not None:
                found[current] = (date, "\n".join(body).strip())
            current, body = None, []
            if match:
                current, date = match.group("version"), match.group("date")
            continue
        if current is not None:
            body.append(line)
    if current is not None:
        found[current] = (date, "\n".join(body).strip())
    return found


def release_notes(tag: str, root: Path = ROOT) -> str:
    """The notes of the release ``tag`` (``vX.Y.Z``).

    Raises:
        SystemExit: the tag is not ``v`` + the package version, or has no dated section.
    """
    version = package_version(root)
    if tag != f"v{version}":
        raise SystemExit(f"tag {tag} is not the package version v{version}")
    entry = sections((root / "CHANGELOG.md").read_text(encoding="utf-8")).get(version)
    if entry is None or entry[0] is None:
        raise SystemExit(f"CHANGELOG.md has no dated section '## [{version}] - YYYY-MM-DD'")
    return entry[1]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/release_notes.py vX.Y.Z")
    print(release_notes(sys.argv[1]))
