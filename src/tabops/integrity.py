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
import logging
from pathlib import Path

from tabops.errors import ModelIntegrityError

__all__ = [
    "artifact_sha256",
    "verify_manifest",
    "MANIFEST_TAG",
    "dump_manifest",
    "file_manifest",
    "load_manifest",
    "manifest_differences",
]

MANIFEST_TAG = "tabops.manifest"
"""Registry tag (on the model version) holding the manifest as JSON."""

log = logging.getLogger(__name__)


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


def artifact_sha256(folder: Path) -> str:
    """sha256 over every file of a model folder (relative paths and contents), sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def verify_manifest(registered: str | None, folders: dict[str, Path], what: str) -> None:
    """Refuse a version any of whose files differs from its registered manifest.

    Versions registered before manifests existed have none: only their model folder's
    hash (checked by the caller) covers them; they load with a warning.

    Args:
        registered: The manifest recorded at registration (:func:`dump_manifest`), if any.
        folders: The downloaded folders, by the name the manifest gives them.
        what: The version, for the message (``model 'credit' v3``).

    Raises:
        ModelIntegrityError: a file was changed, added or removed since registration.
    """
    if registered is None:
        log.warning(
            "%s has no integrity manifest (registered by an older tabops): only its model "
            "folder is verified; retrain it to cover spec.yaml and decision.json",
            what,
        )
        return
    differences = manifest_differences(load_manifest(registered), file_manifest(folders))
    if differences:
        raise ModelIntegrityError(
            f"{what}: artifact files differ from the registered manifest "
            f"({'; '.join(differences[:5])}); refusing to load it"
        )
