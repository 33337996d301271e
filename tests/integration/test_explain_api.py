"""Explanations over the API: `?explain=true` (single, batch, by id), the V2 `explain`
parameter, the spec's `explain` option, the audit round trip (SQLite and PostgreSQL) and
the global view of the recorded explanations."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from tabops.api.app import create_app
from tabops.api.deps import services_of
from tabops.config import Settings
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import TrainingOutcome
from tabops.lifecycle.versions import LoadedModel
from tabops.scoring.explain import Explainer, global_view
from tabops.scoring.records import reference_records
from tests.conftest import ADMIN

pytestmark = pytest.mark.slow

Trained = tuple[Settings, dict[str, TrainingOutcome]]

EXPLANATION_FIELDS = {"method", "scale", "class", "base_value", "value", "contributions", "reasons"}
"""The fields of an explanation, in an answer and in the OpenAPI document alike."""


@pytest.fixture(scope="module")
def client(trained: Trained) -> Iterator[TestClient]:
    with TestClient(create_app(trained[0])) as c:
        yield c


@pytest.fixture(scope="module")
def credit(trained: Trained) -> LoadedModel:
    return Registry(trained[0]).load("credit")


def _records(loaded: LoadedModel, n: int) -> list[dict[str, Any]]:
    """Reference rows, then rows with gaps, as the API takes them."""
    every = reference_records(loaded.spec, loaded.reference)
    size = len(loaded.reference)
    return every[: n - n // 2] + every[size:][: n // 2]


def _expected(loaded: LoadedModel, records: list[dict[str, Any]], labels: list[str]) -> list[Any]:
    """What an explainer built in this process says of the same version."""
    explained = Explainer.from_loaded(loaded).explain(records, classes=labels)
    # through JSON, as the API answers: a float survives the round trip exactly
    out: list[Any] = orjson.loads(orjson.dumps([e.as_dict() for e in explained]))
    return out


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


def _install(client: TestClient, name: str, loaded: LoadedModel) -> None:
    models = services_of(client.app).models  # type: ignore[arg-type]
    client.portal.call(models.install, name, loaded)  # type: ignore[union-attr]


def test_single_and_batch_explanations_are_the_explainers(
    client: TestClient, credit: LoadedModel
) -> None:
    records = _records(credit, 6)
    one = client.post("/usecases/credit/predict?explain=true", json=records[0])
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model_version"] == credit.version
    assert body["explanation"] == _expected(credit, records[:1], [body["label"]])[0]
    assert body["explanation"]["scale"] == "log_odds" and body["explanation"]["class"] == "bad"
    assert len(body["explanation"]["reasons"]) == 3

    batch = client.post("/usecases/credit/predict?explain=true", json={"records": records})
    assert batch.status_code == 200, batch.text
    answers = batch.json()["predictions"]
    got = [p["explanation"] for p in answers]
    assert got == _expected(credit, records, [p["label"] for p in answers])
    for e in got:  # additive, in the spec's features
        assert list(e["contributions"]) == credit.spec.feature_names
        assert e["value"] == pytest.approx(e["base_value"] + sum(e["contributions"].values()))

    plain = client.post("/usecases/credit/predict", json={"records": records})
    assert all("explanation" not in p for p in plain.json()["predictions"])
    assert [p["probabilities"] for p in plain.json()["predictions"]] == [
        p["probabilities"] for p in answers
    ]


def test_predict_by_id_explains(client: TestClient, credit: LoadedModel) -> None:
    response = client.post("/usecases/credit/predict/1?explain=true")
    assert response.status_code == 200, response.text
    explanation = response.json()["explanation"]
    assert set(explanation) == EXPLANATION_FIELDS
    stored = client.get(
        f"/usecases/credit/predictions/{response.json()['prediction_id']}", headers=ADMIN
    )
    assert stored.json()["explanation"] == explanation


def test_v2_explanation_output_is_the_explainers(client: TestClient, trained: Trained) -> None:
    iris = Registry(trained[0]).load("iris")
    records = _records(iris, 4)[:2] + _records(iris, 4)[:2]
    records = [r for r in records if None not in r.values()]
    names = iris.spec.feature_names
    rows = [[r[n] for n in names] for r in records]
    body = {
        "parameters": {"explain": True},
        "inputs": [
            {"name": "x", "shape": [len(rows), len(names)], "datatype": "FP64", "data": rows}
        ],
    }
    response = client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert set(outputs) == {"label", "probabilities", "explanation"}
    tensor = outputs["explanation"]
    assert tensor["datatype"] == "BYTES" and tensor["shape"] == [len(rows)]
    got = [orjson.loads(text) for text in tensor["data"]]
    labels = outputs["label"]["data"]
    assert got == _expected(iris, records, labels)
    assert [e["class"] for e in got] == labels  # multiclass: the label served is explained
    assert {e["scale"] for e in got} == {"class_logit"}

    # audited as returned
    ids = response.json()["parameters"]["prediction_ids"]
    stored = client.get(f"/usecases/iris/predictions/{ids[0]}", headers=ADMIN).json()
    assert stored["explanation"] == got[0]

    # the explanation is recorded, so it is returned even when outputs names others
    named = client.post("/v2/models/iris/infer", json={**body, "outputs": [{"name": "label"}]})
    assert [o["name"] for o in named.json()["outputs"]] == ["label", "explanation"]

    # not asked: no explanation output, NULL in the audit row
    del body["parameters"]
    plain = client.post("/v2/models/iris/infer", json=body).json()
    assert {o["name"] for o in plain["outputs"]} == {"label", "probabilities"}
    pid = plain["parameters"]["prediction_ids"][0]
    assert (
        client.get(f"/usecases/iris/predictions/{pid}", headers=ADMIN).json()["explanation"] is None
    )
    bad = client.post("/v2/models/iris/infer", json={**body, "parameters": {"explain": "yes"}})
    assert bad.status_code == 400 and "explain" in bad.json()["error"]


def test_spec_option_always_and_never(client: TestClient, credit: LoadedModel) -> None:
    record = _records(credit, 1)[0]
    try:
        _install(client, "credit", _with_spec(credit, explain="always"))
        answer = client.post("/usecases/credit/predict", json=record)
        assert answer.status_code == 200, answer.text
        assert (
            answer.json()["explanation"] == _expected(credit, [record], [answer.json()["label"]])[0]
        )

        _install(client, "credit", _with_spec(credit, explain="never"))
        assert client.get("/usecases/credit").json()["explainable"] is False
        error = _error(
            client.post("/usecases/credit/predict?explain=true", json=record),
            422,
            "explanation_not_supported",
        )
        assert error["details"][0]["field"] == "explain"
        plain = client.post("/usecases/credit/predict", json=record)
        assert plain.status_code == 200 and "explanation" not in plain.json()
    finally:
        _install(client, "credit", credit)
    assert client.get("/usecases/credit").json()["explainable"] is True


def test_a_family_without_an_exact_method_is_refused(
    client: TestClient, credit: LoadedModel
) -> None:
    transform = credit.pipeline[:-1]
    frame = credit.reference[credit.spec.feature_names]
    y = credit.pipeline.predict(frame)
    knn = KNeighborsClassifier(n_neighbors=5).fit(transform.transform(frame), y)
    pipeline = Pipeline([*transform.steps, ("model", knn)])
    record = _records(credit, 1)[0]
    try:
        _install(client, "credit", dataclasses.replace(credit, pipeline=pipeline))
        detail = client.get("/usecases/credit").json()
        assert detail["explainable"] is False
        assert "no explanations" in detail["explanation_reason"]
        _error(
            client.post("/usecases/credit/predict?explain=true", json=record),
            422,
            "explanation_not_supported",
        )
        assert client.post("/usecases/credit/predict", json=record).status_code == 200
    finally:
        _install(client, "credit", credit)


def test_global_view_of_the_recorded_explanations(client: TestClient, credit: LoadedModel) -> None:
    records = _records(credit, 8)
    answers = client.post(
        "/usecases/credit/predict?explain=true", json={"records": records}
    ).json()["predictions"]
    client.post("/usecases/credit/predict", json={"records": records})  # not explained
    view = client.get("/usecases/credit/explanations?window=8")
    assert view.status_code == 200, view.text
    body = view.json()
    assert body["window"] == 8 and body["explanations"] == 8
    assert body["model_version"] == credit.version
    expected = global_view(
        [a["explanation"] for a in answers], credit.spec.feature_names, credit.importances
    ).as_dict()
    got = {f["feature"]: f for f in body["features"]}
    for f in expected["features"]:
        assert got[f["feature"]]["mean_abs_contribution"] == pytest.approx(
            f["mean_abs_contribution"], rel=1e-12
        )
        assert got[f["feature"]]["training_importance"] is not None
    assert body["shift"] == pytest.approx(expected["shift"])
    assert client.get("/usecases/credit/explanations?window=0").status_code == 422

    drift = client.get("/usecases/credit/drift?window=10").json()
    section = drift["explanations"]
    assert section["explanations"] >= 8 and 0 <= section["shift"] <= 1
    html = client.get("/usecases/credit/drift?window=10&format=html").text
    assert "live influence against training importance" in html


def _with_spec(loaded: LoadedModel, **changes: Any) -> LoadedModel:
    return dataclasses.replace(loaded, spec=loaded.spec.model_copy(update=changes))


@pytest.mark.integration
def test_explanations_round_trip_through_postgres(
    trained: Trained, credit: LoadedModel, postgres_url: str
) -> None:
    settings = trained[0]
    settings = settings.model_copy(
        update={"db": settings.db.model_copy(update={"url": postgres_url})}
    )
    records = _records(credit, 4)
    with TestClient(create_app(settings)) as client:
        answers = client.post(
            "/usecases/credit/predict?explain=true", json={"records": records}
        ).json()["predictions"]
        plain = client.post("/usecases/credit/predict", json=records[0]).json()
        for answer in answers:
            stored = client.get(
                f"/usecases/credit/predictions/{answer['prediction_id']}", headers=ADMIN
            ).json()
            assert stored["explanation"] == answer["explanation"]
        unexplained = client.get(
            f"/usecases/credit/predictions/{plain['prediction_id']}", headers=ADMIN
        ).json()
        assert unexplained["explanation"] is None
        assert client.get("/usecases/credit/explanations?window=4").json()["explanations"] == 4
    assert np.isfinite([a["explanation"]["value"] for a in answers]).all()


def test_openapi_documents_the_parameter_and_the_field(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/usecases/credit/predict", "/usecases/credit/predict/{entity_id}"):
        names = [p["name"] for p in schema["paths"][path]["post"]["parameters"]]
        assert "explain" in names, path
    components = schema["components"]["schemas"]
    explanation = components["CreditPrediction"]["properties"]["explanation"]
    assert {"$ref": "#/components/schemas/PredictionExplanation"} in explanation["anyOf"]
    fields = components["PredictionExplanation"]["properties"]
    assert set(fields) == EXPLANATION_FIELDS
    assert "explanation" not in components["CreditPrediction"].get("required", [])


def test_the_explain_parameter_is_read_as_a_boolean(
    client: TestClient, credit: LoadedModel
) -> None:
    """The served prediction routes read ``explain`` by FastAPI's own rules: its words for
    true and false, and a 422 naming the parameter for anything else."""
    record = _records(credit, 1)[0]
    for word, explained in (("yes", True), ("1", True), ("off", False), ("FALSE", False)):
        answer = client.post(f"/usecases/credit/predict?explain={word}", json=record)
        assert answer.status_code == 200, answer.text
        assert ("explanation" in answer.json()) is explained, word
    for path in ("/usecases/credit/predict", "/usecases/credit/predict/17"):
        error = _error(client.post(f"{path}?explain=maybe", json=record), 422, "invalid_request")
        assert [d["field"] for d in error["details"]] == ["query.explain"]
