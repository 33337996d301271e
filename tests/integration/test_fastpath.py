"""The prediction routes served ahead of FastAPI's layers (api/fastpath.py) answer as the
rest of the app does: structured errors, a request id, counted by route template."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tabops.api.app import create_app
from tabops.api.fastpath import TabopsAPI
from tabops.config import Settings
from tabops.errors import UseCaseNotFoundError
from tabops.lifecycle.train import TrainingOutcome

pytestmark = pytest.mark.slow


async def _unexpected(_request: Request) -> Response:
    raise RuntimeError("a bug")


async def _known(_request: Request) -> Response:
    raise UseCaseNotFoundError("no use case 'x'")


@pytest.fixture(scope="module")
def client(trained: tuple[Settings, dict[str, TrainingOutcome]]) -> Iterator[TestClient]:
    app = create_app(trained[0])
    assert isinstance(app, TabopsAPI)
    # two more routes on the same path, served like the prediction routes
    app.fast_routes = [
        *app.fast_routes,
        Route("/fastpath-test/unexpected", _unexpected, methods=["POST"]),
        Route("/fastpath-test/known", _known, methods=["POST"]),
    ]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["x-request-id"]


def test_a_bug_is_a_structured_500_with_the_request_id(client: TestClient) -> None:
    response = client.post("/fastpath-test/unexpected", headers={"X-Request-ID": "bug-1"})
    _error(response, 500, "internal_error")
    assert response.headers["x-request-id"] == "bug-1"


def test_an_error_of_tabops_gets_its_handler(client: TestClient) -> None:
    _error(client.post("/fastpath-test/known"), 404, "usecase_not_found")


def test_prediction_errors_and_answers_are_the_apps(client: TestClient) -> None:
    example = client.get("/usecases/credit").json()["example"]
    answered = client.post("/usecases/credit/predict", json=example)
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-request-id"]
    _error(client.post("/usecases/nope/predict", json=example), 404, "usecase_not_found")
    _error(client.post("/usecases/credit/predict", content=b"{"), 400, "malformed_request")
    _error(
        client.post("/usecases/credit/predict?explain=maybe", json=example), 422, "invalid_request"
    )
    # not a POST: past the fast path, to the router, which knows the path
    assert client.get("/usecases/credit/predict").status_code == 405
    metrics = client.get("/metrics").text
    assert 'route="/usecases/{name}/predict"' in metrics
    assert 'route="/fastpath-test/unexpected"' in metrics
