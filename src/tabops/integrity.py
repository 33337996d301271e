"""The integrity manifest of a model version: the sha256 of every file the server loads.

A version's model folder (``MLmodel``, ``model.skops``, ...) and its run's ``tabops/``
files (``spec.yaml``: bounds and ``pii`` flags; ``decision.json``: the threshold;
``reference.parquet``: the drift reference and the docs' example; figures) are all read
when it is served. The manifest is computed when the version is registered and stored as
a tag of the registry; at load, every file is hashed again and compared, and the version
is refused if any file was changed, added or removed. Editing ``decision.json`` to move a
threshold is refused the same as swapping the model file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = [
    "MANIFEST_TAG",
    "dump_manifest",
    "file_manifest",
    "load_manifest",
    "manifest_differences",
]

MANIFEST_TAG = "tabops.manifest"
"""Registry tag (on the model version) holding the manifest as JSON."""


def file_manifest(folders: dict[str, Path]) -> dict[str, str]:
    """``{"<prefix>/<relative path>": sha256}`` for every file under each folder."""
    out = {}
    for prefix, folder in folders.items():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = f"{prefix}/{path.relative_to(folder).as_posix()}"
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def dump_manifest(manifest: dict[str, str]) -> str:
    """The manifest as compact JSON, for a registry tag."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"))


def load_manifest(text: str) -> dict[str, str]:
    """Parse a manifest tag."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("the manifest tag is not a JSON object")
    return {str(k): str(v) for k, v in value.items()}


def manifest_differences(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """What differs between the registered manifest and the files found (empty: intact)."""
    out = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            out.append(f"{name} is missing")
        elif name not in expected:
            out.append(f"{name} was added")
        elif expected[name] != actual[name]:
            out.append(f"{name} was changed")
    return out
