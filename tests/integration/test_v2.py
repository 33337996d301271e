"""The Open Inference Protocol (V2) endpoints, driven by Triton's own HTTP client against a
real server on a loopback port: its answers equal the REST API's on the same records, and
every V2 prediction is in the audit trail and the metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select
from tritonclient.utils import InferenceServerException

from tabops.api.app import create_app
from tabops.config import Settings
from tabops.lifecycle.train import TrainingOutcome
from tabops.store.db import create_db_engine
from tabops.store.schema import prediction_requests, predictions
from tests.conftest import ADMIN
from tests.serverproc import free_port

pytestmark = pytest.mark.slow

Trained = tuple[Settings, dict[str, TrainingOutcome]]
_NUMPY = {"BYTES": np.object_, "INT64": np.int64, "FP64": np.float64, "BOOL": np.bool_}


@pytest.fixture(scope="module")
def server(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The app served by uvicorn in a thread, auditing into a database of its own."""
    base, _ = trained
    var = tmp_path_factory.mktemp("v2")
    settings = base.model_copy(
        update={
            "db": base.db.model_copy(update={"url": f"sqlite:///{var / 'audit.db'}"}),
            "audit": base.audit.model_copy(update={"spool_dir": var / "spool"}),
            "api": base.api.model_copy(
                update={"usecases": ["credit", "iris"], "port": free_port(), "max_batch": 50}
            ),
        }
    )
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.api.port, log_level="warning"
    )
    uvi = uvicorn.Server(config)
    thread = threading.Thread(target=uvi.run, name="v2-test-server", daemon=True)
    thread.start()
    for _ in range(600):  # the lifespan loads every champion first
        if uvi.started or not thread.is_alive():
            break
        time.sleep(0.1)
    assert uvi.started, "the server did not start"
    try:
        yield settings
    finally:
        uvi.should_exit = True
        thread.join(timeout=60)


def _url(settings: Settings) -> str:
    return f"127.0.0.1:{settings.api.port}"


def _rest(settings: Settings, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(kwargs.pop("method", "GET"), f"http://{_url(settings)}{path}", **kwargs)


def _records(settings: Settings, name: str, n: int) -> list[dict[str, Any]]:
    """``n`` complete records near the use case's example (every feature given)."""
    detail = _rest(settings, f"/usecases/{name}").json()
    example = detail["example"]
    out = []
    for i in range(n):
        record = dict(example)
        for feature in detail["spec"]["features"]:
            value = record.get(feature["name"])
            if feature["type"] == "integer" and value is not None:
                record[feature["name"]] = value + i
            elif feature["type"] == "number" and value is not None:
                record[feature["name"]] = round(value * (1 + 0.05 * i), 3)
        out.append(record)
    assert all(v is not None for r in out for v in r.values()), "an example value is missing"
    return out


def _answers(settings: Settings, name: str, records: list[dict[str, Any]]) -> list[Any]:
    response = _rest(
        settings, f"/usecases/{name}/predict", method="POST", json={"records": records}
    )
    assert response.status_code == 200, response.text
    predictions_: list[Any] = response.json()["predictions"]
    return predictions_


def _stored(settings: Settings, ids: list[str]) -> dict[str, tuple[str, str]]:
    engine = create_db_engine(settings.database_url_resolved)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(predictions.c.id, predictions.c.label, prediction_requests.c.endpoint)
                .join(prediction_requests, prediction_requests.c.id == predictions.c.request_id)
                .where(predictions.c.id.in_(ids))
            ).all()
    finally:
        engine.dispose()
    return {r[0]: (r[1], r[2]) for r in rows}


def _predicted_total(settings: Settings, name: str) -> float:
    text = _rest(settings, "/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tabops_predictions_total{") and f'usecase="{name}"' in line
    )


def test_health_and_metadata_through_the_triton_client(server: Settings) -> None:
    client = triton.InferenceServerClient(url=_url(server))
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "tabops"
    assert client.is_model_ready("credit")
    meta = client.get_model_metadata("credit")
    detail = _rest(server, "/usecases/credit").json()
    assert [i["name"] for i in meta["inputs"]] == [f["name"] for f in detail["spec"]["features"]]
    kinds = {f["name"]: f["type"] for f in detail["spec"]["features"]}
    expected = {"category": "BYTES", "integer": "INT64", "number": "FP64", "boolean": "BOOL"}
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        k: expected[v] for k, v in kinds.items()
    }
    assert meta["parameters"]["classes"] == detail["spec"]["target"]["classes"]
    assert meta["versions"] == [detail["champion_version"]]
    version = detail["champion_version"]
    assert client.is_model_ready("credit", model_version=version)
    assert not client.is_model_ready("credit", model_version="999")
    with pytest.raises(InferenceServerException, match="unknown use case 'nope'"):
        client.get_model_metadata("nope")


def test_columnar_tensors_answer_as_rest_does_and_are_audited(server: Settings) -> None:
    """One tensor per feature, sent as binary tensor data (the client's default)."""
    client = triton.InferenceServerClient(url=_url(server))
    meta = client.get_model_metadata("credit")
    records = _records(server, "credit", 6)
    rest = _answers(server, "credit", records)
    before = _predicted_total(server, "credit")
    inputs = []
    for tensor in meta["inputs"]:
        values = np.array([r[tensor["name"]] for r in records], dtype=_NUMPY[tensor["datatype"]])
        given = triton.InferInput(tensor["name"], list(values.shape), tensor["datatype"])
        given.set_data_from_numpy(values)
        inputs.append(given)
    result = client.infer("credit", inputs, request_id="v2-call-1")
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert labels == [r["label"] for r in rest]
    classes = meta["parameters"]["classes"]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (len(records), len(classes))
    assert probabilities.tolist() == [[r["probabilities"][c] for c in classes] for r in rest]
    response = result.get_response()
    assert response["id"] == "v2-call-1"
    assert response["model_version"] == rest[0]["model_version"]
    ids = response["parameters"]["prediction_ids"]
    assert len(set(ids)) == len(records)
    stored = _stored(server, ids)
    endpoint = "/v2/models/credit/infer"
    assert stored == {i: (label, endpoint) for i, label in zip(ids, labels, strict=True)}
    assert _predicted_total(server, "credit") == before + len(records)


def test_one_row_major_tensor_as_json(server: Settings) -> None:
    """A single [n, n_features] tensor in feature order; JSON data, named outputs."""
    client = triton.InferenceServerClient(url=_url(server))
    meta = client.get_model_metadata("iris")
    order = meta["parameters"]["feature_order"]
    records = _records(server, "iris", 4)
    rest = _answers(server, "iris", records)
    rows = np.array([[r[name] for name in order] for r in records], dtype=np.float64)
    given = triton.InferInput("input-0", list(rows.shape), "FP64")
    given.set_data_from_numpy(rows, binary_data=False)
    wanted = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    version = meta["versions"][0]
    result = client.infer("iris", [given], model_version=version, outputs=wanted)
    assert result.as_numpy("label") is None  # not asked for
    classes = meta["parameters"]["classes"]
    assert result.as_numpy("probabilities").tolist() == [
        [r["probabilities"][c] for c in classes] for r in rest
    ]
    ids = result.get_response()["parameters"]["prediction_ids"]
    endpoint = f"/v2/models/iris/versions/{version}/infer"
    assert {e for _, e in _stored(server, ids).values()} == {endpoint}


def test_bad_input_gets_the_protocol_error(server: Settings) -> None:
    records = _records(server, "credit", 1)
    meta = _rest(server, "/v2/models/credit").json()

    def tensors(**changes: Any) -> list[dict[str, Any]]:
        record = {**records[0], **changes}
        return [
            {
                "name": t["name"],
                "shape": [1],
                "datatype": t["datatype"],
                "data": [record[t["name"]]],
            }
            for t in meta["inputs"]
        ]

    def infer(body: Any, path: str = "/v2/models/credit/infer") -> dict[str, Any]:
        response = _rest(server, path, method="POST", json=body)
        assert response.status_code in (400, 404), response.text
        answer: dict[str, Any] = response.json()
        assert set(answer) == {"error"} and isinstance(answer["error"], str)
        return answer

    home = meta["inputs"][[t["datatype"] for t in meta["inputs"]].index("BYTES")]["name"]
    assert home in infer({"inputs": tensors(**{home: "castle"})})["error"]
    assert "extra" in infer({"inputs": [*tensors(), {**tensors()[0], "name": "extra"}]})["error"]
    short = tensors()
    short[0]["shape"] = [2]
    assert "do not fill shape" in infer({"inputs": short})["error"]
    assert "inputs" in infer({"outputs": []})["error"]
    assert "score" in infer({"inputs": tensors(), "outputs": [{"name": "score"}]})["error"]
    missing = infer({"inputs": tensors()}, "/v2/models/nope/infer")
    assert "nope" in missing["error"]
    other = infer({"inputs": tensors()}, "/v2/models/credit/versions/999/infer")
    assert "999" in other["error"]
    over = [{**t, "shape": [51], "data": t["data"] * 51} for t in tensors()]
    assert "over the limit" in infer({"inputs": over})["error"]


def test_v2_needs_the_predict_role(trained: Trained, tmp_path: Path) -> None:
    base, _ = trained
    settings = base.model_copy(
        update={
            "auth": base.auth.model_copy(update={"anonymous_predict": False}),
            "db": base.db.model_copy(update={"url": f"sqlite:///{tmp_path / 'audit.db'}"}),
            "api": base.api.model_copy(update={"usecases": ["iris"]}),
        }
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/v2/health/ready").status_code == 200  # probes need no key
        denied = client.get("/v2/models/iris")
        assert denied.status_code == 401 and set(denied.json()) == {"error"}
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1] * 4}]}
        assert client.post("/v2/models/iris/infer", json=body).status_code == 401
        assert client.post("/v2/models/iris/infer", json=body, headers=ADMIN).status_code == 200
