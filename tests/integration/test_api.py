"""The API through the app factory (lifespan runs): listing, predictions, every bad input."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tabops.api.app import create_app
from tabops.api.deps import services_of
from tabops.config import Settings
from tabops.lifecycle.train import TrainingOutcome
from tabops.store.db import create_db_engine
from tabops.store.schema import predictions

pytestmark = pytest.mark.slow

Trained = tuple[Settings, dict[str, TrainingOutcome]]


@pytest.fixture(scope="module")
def client(trained: Trained) -> Iterator[TestClient]:
    settings, _ = trained
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"max_batch": 50})}
    )
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def example(client: TestClient) -> dict[str, Any]:
    record: dict[str, Any] = client.get("/usecases/credit").json()["example"]
    return record


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"
    assert set(ready.json()["usecases"].values()) == {"serving"}


def test_usecases_list_every_champion(client: TestClient, trained: Trained) -> None:
    listed = {u["name"]: u for u in client.get("/usecases").json()}
    assert sorted(listed) == sorted(trained[1])  # school too where its data is found
    assert {"attrition", "churn", "credit", "iris"} <= set(listed)
    for name, outcome in trained[1].items():
        assert listed[name]["champion_version"] == outcome.version
        assert listed[name]["scoring_path"] == "compiled-numpy"  # logistic regression, parity ok
        assert listed[name]["metrics"]["roc_auc"] == pytest.approx(
            outcome.holdout_metrics["roc_auc"]
        )


def test_usecase_detail(client: TestClient) -> None:
    detail = client.get("/usecases/credit").json()
    assert detail["spec"]["target"]["positive"] == "bad"
    assert 0 < detail["threshold"] < 1
    assert detail["cv_metrics"]["roc_auc_mean"] > 0.8
    assert "parity ok" in detail["scoring_reason"]
    _error(client.get("/usecases/nope"), 404, "usecase_not_found")


def test_predict_one_record(client: TestClient, example: dict[str, Any]) -> None:
    body = client.post("/usecases/credit/predict", json=example).json()
    assert body["label"] in ("bad", "good")
    assert set(body["probabilities"]) == {"bad", "good"}
    assert math.isclose(sum(body["probabilities"].values()), 1, abs_tol=1e-5)
    assert (body["probabilities"]["bad"] >= body["threshold"]) == (body["label"] == "bad")
    assert body["model_version"] == "1"
    assert len(body["prediction_id"]) == 36


def test_predict_batch_keeps_order(client: TestClient, example: dict[str, Any]) -> None:
    risky = {**example, "prior_records": True, "Income": None, "Assets": None, "Debt": None}
    one = client.post("/usecases/credit/predict", json=risky).json()
    batch = client.post(
        "/usecases/credit/predict", json={"records": [example, risky, example]}
    ).json()
    assert batch["model_version"] == "1"
    assert len(batch["predictions"]) == 3
    assert batch["predictions"][1]["probabilities"] == one["probabilities"]
    assert len({p["prediction_id"] for p in batch["predictions"]}) == 3


def test_multiclass_and_default_route(client: TestClient) -> None:
    flower = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}
    body = client.post("/usecases/iris/predict", json=flower).json()
    assert body["label"] == "virginica" and body["threshold"] is None
    default = client.post("/predict", json=client.get("/usecases/attrition").json()["example"])
    assert default.status_code == 200  # default: first use case by name


BAD_INPUTS: list[tuple[str, Any, int, str, str | None]] = [
    ("missing field", {"drop": "Age"}, 422, "invalid_features", "Age"),
    ("unknown field", {"set": {"colour": "red"}}, 422, "invalid_features", "colour"),
    ("wrong type", {"set": {"Age": "forty"}}, 422, "invalid_features", "Age"),
    ("out of bounds", {"set": {"Age": 150}}, 422, "invalid_features", "Age"),
    ("unknown category", {"set": {"Home": "castle"}}, 422, "invalid_features", "Home"),
    ("boolean as number", {"set": {"prior_records": 1}}, 422, "invalid_features", "prior_records"),
]


@pytest.mark.parametrize(
    ("case", "change", "status", "code", "field"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_record(
    client: TestClient,
    example: dict[str, Any],
    case: str,
    change: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    record = {k: v for k, v in example.items() if k != change.get("drop")}
    record.update(change.get("set", {}))
    error = _error(client.post("/usecases/credit/predict", json=record), status, code)
    assert [d["field"] for d in error["details"]] == [field]
    assert error["details"][0]["reason"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(client: TestClient, literal: bytes) -> None:
    body = (
        b'{"sepal_length": %s, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}'
        % literal
    )
    error = _error(client.post("/usecases/iris/predict", content=body), 422, "invalid_features")
    assert error["details"] == [
        {
            "field": "sepal_length",
            "reason": "must be a finite number (NaN and infinity are refused)",
        }
    ]


def test_batch_errors_name_the_record(client: TestClient, example: dict[str, Any]) -> None:
    error = _error(
        client.post("/usecases/credit/predict", json={"records": [example, {**example, "Age": 3}]}),
        422,
        "invalid_features",
    )
    assert error["details"][0]["field"] == "records[1].Age"


def test_empty_and_oversized_batches(client: TestClient, example: dict[str, Any]) -> None:
    _error(client.post("/usecases/credit/predict", json={"records": []}), 422, "empty_batch")
    error = _error(
        client.post("/usecases/credit/predict", json={"records": [example] * 51}),
        422,
        "batch_too_large",
    )
    assert "limit of 50" in error["message"]
    _error(client.post("/usecases/credit/predict", json={"records": "x"}), 422, "invalid_features")


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"'])
def test_malformed_bodies(client: TestClient, body: bytes) -> None:
    _error(client.post("/usecases/credit/predict", content=body), 400, "malformed_request")


def test_unknown_usecase_and_route(client: TestClient, example: dict[str, Any]) -> None:
    error = _error(client.post("/usecases/nope/predict", json=example), 404, "usecase_not_found")
    assert "credit" in error["message"]
    _error(client.get("/no/such/route"), 404, "not_found")
    _error(client.get("/usecases/credit/predict"), 405, "method_not_allowed")


def test_openapi_shows_real_fields_and_a_working_example(
    client: TestClient, trained: Trained
) -> None:
    doc = client.get("/openapi.json").json()
    for name in sorted(trained[1]):
        op = doc["paths"][f"/usecases/{name}/predict"]["post"]
        content = op["requestBody"]["content"]["application/json"]
        example = content["examples"]["one record"]["value"]
        # "Try it out" sends exactly this example
        assert client.post(f"/usecases/{name}/predict", json=example).status_code == 200
        batch = content["examples"]["batch"]["value"]
        assert client.post(f"/usecases/{name}/predict", json=batch).status_code == 200
    credit = doc["components"]["schemas"]["CreditRecord"]
    assert credit["properties"]["Home"]["anyOf"][0]["enum"][:2] == ["owner", "rent"]
    assert credit["properties"]["Age"]["minimum"] == 18
    assert credit["properties"]["Age"]["description"]
    assert "Age" in credit["required"] and "Income" not in credit["required"]
    assert doc["paths"]["/predict"]["post"]["operationId"] == "predict_default"
    assert client.get("/docs").status_code == 200


def test_coalesced_requests_each_get_their_own_answer_and_audit_row(
    trained: Trained, example: dict[str, Any], client: TestClient, tmp_path: Any
) -> None:
    """With coalescing on, concurrent single records share scoring calls, and each answer
    equals what the same record gets alone; every one is in the audit store."""
    settings, _ = trained
    settings = settings.model_copy(
        update={
            "db": settings.db.model_copy(update={"url": f"sqlite:///{tmp_path / 'audit.db'}"}),
            "api": settings.api.model_copy(update={"coalesce_us": 20_000}),
            "audit": settings.audit.model_copy(update={"spool_dir": tmp_path / "spool"}),
        }
    )
    records = [{**example, "Amount": 300 + 25 * i} for i in range(24)]
    alone = [client.post("/usecases/credit/predict", json=r).json() for r in records]
    with TestClient(create_app(settings)) as coalescing:
        with ThreadPoolExecutor(max_workers=len(records)) as pool:
            answers = list(
                pool.map(lambda r: coalescing.post("/usecases/credit/predict", json=r), records)
            )
        assert all(a.status_code == 200 for a in answers)
        got = [a.json() for a in answers]
        for mine, single in zip(got, alone, strict=True):
            assert (mine["label"], mine["probabilities"]) == (
                single["label"],
                single["probabilities"],
            )
        predictor = services_of(coalescing.app).dataplane  # type: ignore[arg-type]
        assert predictor.coalescer is not None
        assert predictor.coalescer.calls < len(records)  # some calls were shared
        audit = create_db_engine(settings.database_url_resolved)
        with audit.connect() as conn:
            stored = dict(conn.execute(select(predictions.c.id, predictions.c.label)).all())
        audit.dispose()
        assert {g["prediction_id"]: g["label"] for g in got}.items() <= stored.items()
