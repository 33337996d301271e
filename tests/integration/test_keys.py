"""Every route with no key, a bad key, a predict key and an admin key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tabops.api.app import create_app
from tabops.config import AuthSettings, Settings
from tabops.lifecycle.train import TrainingOutcome
from tabops.store.db import create_db_engine
from tabops.store.keys import create_key, revoke_key
from tabops.store.migrate import upgrade
from tests.conftest import ADMIN_KEY

pytestmark = pytest.mark.slow
Trained = tuple[Settings, dict[str, TrainingOutcome]]
FLOWER = {"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 5.1, "petal_width": 1.8}
V2_FLOWER = {
    "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.9, 3, 5.1, 1.8]}]
}

# (method, route template, concrete path, body, role needed: None = open)
ROUTES: list[tuple[str, str, str, object, str | None]] = [
    ("GET", "/health", "/health", None, None),
    ("GET", "/ready", "/ready", None, None),
    ("GET", "/usecases", "/usecases", None, "predict"),
    ("GET", "/usecases/{name}", "/usecases/iris", None, "predict"),
    ("POST", "/usecases/{name}/predict", "/usecases/iris/predict", FLOWER, "predict"),
    ("POST", "/predict", "/predict", None, "predict"),
    ("POST", "/usecases/{name}/predict/{entity_id}", "/usecases/credit/predict/1", None, "predict"),
    (
        "POST",
        "/usecases/{name}/feedback",
        "/usecases/iris/feedback",
        {"prediction_id": "x", "actual": "setosa"},
        "predict",
    ),
    ("GET", "/usecases/{name}/predictions", "/usecases/iris/predictions", None, "admin"),
    (
        "GET",
        "/usecases/{name}/predictions/{prediction_id}",
        "/usecases/iris/predictions/x",
        None,
        "admin",
    ),
    ("POST", "/usecases/{name}/train", "/usecases/iris/train", {"bogus": 1}, "admin"),
    ("GET", "/jobs/{job_id}", "/jobs/nope", None, "admin"),
    ("GET", "/jobs", "/jobs", None, "admin"),
    ("GET", "/usecases/{name}/models", "/usecases/iris/models", None, "admin"),
    (
        "POST",
        "/usecases/{name}/models/{version}/promote",
        "/usecases/iris/models/999/promote",
        None,
        "admin",
    ),
    (
        "DELETE",
        "/usecases/{name}/models/challenger",
        "/usecases/nope/models/challenger",
        None,
        "admin",
    ),
    ("GET", "/usecases/{name}/models/compare", "/usecases/iris/models/compare", None, "admin"),
    (
        "GET",
        "/usecases/{name}/models/{version}/card",
        "/usecases/iris/models/1/card",
        None,
        "admin",
    ),
    ("GET", "/usecases/{name}/drift", "/usecases/iris/drift", None, "predict"),
    ("GET", "/usecases/{name}/drift/history", "/usecases/iris/drift/history", None, "predict"),
    ("GET", "/usecases/{name}/explanations", "/usecases/iris/explanations", None, "predict"),
    ("GET", "/usecases/{name}/performance", "/usecases/iris/performance", None, "predict"),
    ("GET", "/usecases/{name}/summary", "/usecases/iris/summary", None, "predict"),
    ("GET", "/v2/health/live", "/v2/health/live", None, None),
    ("GET", "/v2/health/ready", "/v2/health/ready", None, None),
    ("GET", "/v2", "/v2", None, "predict"),
    ("GET", "/v2/models/{name}", "/v2/models/iris", None, "predict"),
    ("GET", "/v2/models/{name}/ready", "/v2/models/iris/ready", None, "predict"),
    (
        "GET",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/iris/versions/999",
        None,
        "predict",
    ),
    (
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/iris/versions/999/ready",
        None,
        "predict",
    ),
    ("POST", "/v2/models/{name}/infer", "/v2/models/iris/infer", V2_FLOWER, "predict"),
    (
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/models/iris/versions/999/infer",
        V2_FLOWER,
        "predict",
    ),
]
OPEN_EXTRA = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/metrics"}


@pytest.fixture(scope="module")
def keys(
    trained: Trained, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    base, _ = trained
    var = tmp_path_factory.mktemp("keys")
    settings = base.model_copy(
        update={
            "auth": AuthSettings(admin_key=ADMIN_KEY),
            "audit": base.audit.model_copy(update={"spool_dir": var / "spool"}),
        }
    )
    engine = create_db_engine(settings.database_url_resolved)
    upgrade(engine)
    predict = create_key(engine, f"predict-{var.name}", "predict")
    admin = create_key(engine, f"admin-{var.name}", "admin")
    revoked = create_key(engine, f"revoked-{var.name}", "admin")
    revoke_key(engine, f"revoked-{var.name}")
    app = create_app(settings)
    with TestClient(app) as client:
        client.app_routes = app.routes  # type: ignore[attr-defined]
        yield client, {"predict": predict, "admin": admin, "revoked": revoked}
    engine.dispose()


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    out: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):  # an included router (FastAPI >= 0.16x)
            out += _api_routes(route.original_router.routes)
    return out


def test_every_route_is_classified(keys: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = keys
    found = {
        (method, route.path)
        for route in _api_routes(client.app_routes)  # type: ignore[attr-defined]
        for method in route.methods
    }
    listed = {(m, t) for m, t, *_ in ROUTES}
    assert {(m, p) for m, p in found if p not in OPEN_EXTRA} == listed


@pytest.mark.parametrize(
    ("method", "template", "path", "body", "role"), ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES]
)
def test_route_access(
    keys: tuple[TestClient, dict[str, str]],
    method: str,
    template: str,
    path: str,
    body: object,
    role: str | None,
) -> None:
    client, made = keys

    def call(headers: dict[str, str]) -> int:
        return client.request(method, path, json=body, headers=headers).status_code

    bearer = lambda key: {"Authorization": f"Bearer {key}"}  # noqa: E731
    cases = {
        "none": call({}),
        "bad": call(bearer("tabops_00000000_notarealkeynotarealkey")),
        "garbage": call({"X-API-Key": "hello"}),
        "revoked": call(bearer(made["revoked"])),
        "predict": call(bearer(made["predict"])),
        "admin": call(bearer(made["admin"])),
        "admin-header": call({"X-API-Key": made["admin"]}),
        "operator-admin": call(bearer(ADMIN_KEY)),
    }
    if role is None:
        assert all(status not in (401, 403) for status in cases.values()), cases
        return
    for name in ("none", "bad", "garbage", "revoked"):
        assert cases[name] == 401, (name, cases)
    if role == "admin":
        assert cases["predict"] == 403, cases
    else:
        assert cases["predict"] not in (401, 403), cases
    for name in ("admin", "admin-header", "operator-admin"):
        assert cases[name] not in (401, 403), (name, cases)


def test_401_and_403_are_structured(keys: tuple[TestClient, dict[str, str]]) -> None:
    client, made = keys
    missing = client.get("/jobs")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "unauthorized"
    denied = client.get("/jobs", headers={"Authorization": f"Bearer {made['predict']}"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"


def test_anonymous_prediction_when_opened(trained: Trained, tmp_path: Path) -> None:
    base, _ = trained
    settings = base.model_copy(
        update={
            "auth": AuthSettings(anonymous_predict=True),
            "audit": base.audit.model_copy(update={"spool_dir": tmp_path / "spool"}),
        }
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/usecases/iris/predict", json=FLOWER).status_code == 200
        assert client.get("/jobs").status_code == 401  # training and audit never open
        bad = client.post("/usecases/iris/predict", json=FLOWER, headers={"X-API-Key": "wrong"})
        assert bad.status_code == 401  # a wrong key is refused even where anonymous is allowed


def test_a_key_is_read_as_fastapis_security_schemes_read_it(
    keys: tuple[TestClient, dict[str, str]],
) -> None:
    client, made = keys

    def predict(headers: dict[str, str]) -> int:
        return client.post("/usecases/iris/predict", json=FLOWER, headers=headers).status_code

    assert predict({"Authorization": f"bearer  {made['predict']} "}) == 200  # any case, spaces
    # not a bearer credential: the X-API-Key header is the key, as with HTTPBearer and
    # APIKeyHeader without auto_error
    assert predict({"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": made["predict"]}) == 200
    assert predict({"Authorization": "Bearer", "X-API-Key": made["predict"]}) == 200
    assert predict({"Authorization": "Basic dXNlcjpwYXNz"}) == 401
    # a bearer credential wins over the header
    assert predict({"Authorization": "Bearer wrong", "X-API-Key": made["predict"]}) == 401


OPEN_PATHS = {t for _, t, _, _, role in ROUTES if role is None}


def test_the_openapi_document_lists_the_key_schemes_where_a_key_is_needed(
    keys: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = keys
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "description": "`Authorization: Bearer <API key>`",
        "scheme": "bearer",
    }
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "description": "The API key",
        "in": "header",
        "name": "X-API-Key",
    }
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            expected = None if path in OPEN_PATHS else [{"HTTPBearer": []}, {"APIKeyHeader": []}]
            assert operation.get("security") == expected, (method, path)
    assert "/usecases/iris/predict" in doc["paths"] and "/v2/models/{name}/infer" in doc["paths"]
