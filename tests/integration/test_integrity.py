"""The integrity manifest covers every file a version loads: an edited ``decision.json``
(the threshold) or ``spec.yaml`` (bounds, ``pii`` flags) of a registered version is refused
at load, through the API and through an alias moved by hand, like a swapped model file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from tabops.api.app import create_app
from tabops.config import Settings
from tabops.errors import ModelIntegrityError
from tabops.integrity import MANIFEST_TAG
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import train_usecase
from tabops.spec.files import load_usecase
from tabops.store.db import create_db_engine
from tests.conftest import ADMIN, USECASES, make_settings, seed_and_train

pytestmark = pytest.mark.slow
RECORD = {"sepal_length": 5, "sepal_width": 3, "petal_length": 1, "petal_width": 0.2}


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    """iris v1 (the champion) and v2 (registered, not promoted)."""
    tmp = tmp_path_factory.mktemp("integrity")
    settings = make_settings(
        tmp / "var",
        db={"url": f"sqlite:///{tmp / 'db.sqlite'}"},
        api={"usecases": ["iris"]},
        lifecycle={"poll_interval_s": 0.5},
    )
    seed_and_train(settings, ["iris"])
    engine = create_db_engine(settings.database_url_resolved)
    second = train_usecase(load_usecase(USECASES, "iris"), engine, Registry(settings))
    engine.dispose()
    return settings, second.version


def _run_file(settings: Settings, version: str, name: str) -> Path:
    registry = Registry(settings)
    run_id = registry.version("iris", version).run_id
    root = registry.client.get_run(run_id).info.artifact_uri.removeprefix("file://")
    return Path(root) / "tabops" / name


def test_every_loaded_file_is_in_the_manifest(two_versions: tuple[Settings, str]) -> None:
    settings, version = two_versions
    manifest = json.loads(Registry(settings).version("iris", version).tags[MANIFEST_TAG])
    names = set(manifest)
    assert {"tabops/decision.json", "tabops/spec.yaml", "tabops/reference.parquet"} <= names
    assert any(n.startswith("model/") and n.endswith("model.skops") for n in names)
    assert Registry(settings).load("iris", version).version == version  # intact: loads


@pytest.mark.parametrize("name", ["decision.json", "spec.yaml"])
def test_an_edited_sidecar_is_refused_by_the_api_and_by_a_moved_alias(
    two_versions: tuple[Settings, str], name: str
) -> None:
    settings, version = two_versions
    path = _run_file(settings, version, name)
    original = path.read_bytes()
    if name == "decision.json":
        decision = json.loads(original)
        decision["threshold"] = 0.99
        path.write_text(json.dumps(decision))
    else:
        spec = yaml.safe_load(original)
        spec["features"][0]["max"] = 100_000.0
        path.write_text(yaml.safe_dump(spec))
    try:
        with pytest.raises(ModelIntegrityError, match=f"tabops/{name} was changed"):
            Registry(settings).load("iris", version)
        with TestClient(create_app(settings)) as client:
            refused = client.post(f"/usecases/iris/models/{version}/promote", headers=ADMIN)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "model_integrity"
            # moved by hand, as in the MLflow UI: refused, and v1 keeps serving
            MlflowClient(settings.tracking_uri).set_registered_model_alias(
                "iris", "champion", version
            )
            deadline = time.monotonic() + 30
            while "refused" not in (client.get("/usecases/iris").json().get("error") or ""):
                assert time.monotonic() < deadline, "the moved alias was not refused"
                time.sleep(0.2)
            detail = client.get("/usecases/iris").json()
            assert detail["champion_version"] == "1" and "manifest" in detail["error"]
            answer = client.post("/usecases/iris/predict", json=RECORD).json()
            assert answer["model_version"] == "1"
    finally:
        path.write_bytes(original)
        MlflowClient(settings.tracking_uri).set_registered_model_alias("iris", "champion", "1")
