"""The API's collaborators: opened in one lifespan, closed when start-up fails halfway, or
handed to ``create_app`` by the caller."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event

from tabops.api.app import create_app
from tabops.api.services import Services
from tabops.config import Settings
from tabops.errors import UseCaseNotFoundError
from tabops.lifecycle.train import TrainingOutcome
from tabops.serving.dataplane import CallInfo
from tabops.telemetry.metrics import Metrics
from tests.conftest import make_settings

Trained = tuple[Settings, dict[str, TrainingOutcome]]


def _audit_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("tabops-audit")]


def test_a_failed_start_closes_what_it_opened(tmp_path: Path) -> None:
    """An unknown default use case fails after the engine and the audit writer are open:
    both are closed before the error leaves, and no task is left running."""
    settings = make_settings(
        tmp_path / "var",
        api={"default_usecase": "nope"},
        audit={"spool_dir": tmp_path / "spool", "jsonl_path": tmp_path / "audit.jsonl"},
    )
    disposed: list[Engine] = []

    def on_dispose(engine: Engine) -> None:
        disposed.append(engine)

    async def start() -> list[asyncio.Task[object]]:
        with pytest.raises(UseCaseNotFoundError, match="default use case 'nope'"):
            async with Services.open(settings, Metrics(CollectorRegistry())):
                pytest.fail("started with an unknown default use case")
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    event.listen(Engine, "engine_disposed", on_dispose)
    try:
        left = asyncio.run(start())
    finally:
        event.remove(Engine, "engine_disposed", on_dispose)
    assert left == []  # the audit writer's task among them
    assert [str(e.url) for e in disposed] == [settings.database_url_resolved]
    assert _audit_threads() == []
    assert (tmp_path / "audit.jsonl").exists()  # the writer did start before the failure


def test_the_app_fails_to_start_the_same_way(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var", api={"default_usecase": "nope"})
    with pytest.raises(UseCaseNotFoundError), TestClient(create_app(settings)):
        pytest.fail("started with an unknown default use case")
    assert _audit_threads() == []


@pytest.mark.slow
def test_an_app_serves_the_services_it_is_given(trained: Trained, tmp_path: Path) -> None:
    """``create_app(settings, services)``: the caller opens and closes them; the app only
    serves them, and stops nothing of theirs when it stops."""
    base, _ = trained
    settings = base.model_copy(
        update={
            "db": base.db.model_copy(update={"url": f"sqlite:///{tmp_path / 'audit.db'}"}),
            "audit": base.audit.model_copy(update={"spool_dir": tmp_path / "spool"}),
            "api": base.api.model_copy(update={"usecases": ["iris"]}),
        }
    )

    async def scenario() -> None:
        async with Services.open(settings, Metrics(CollectorRegistry())) as services:
            app = create_app(settings, services)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    record = (await client.get("/usecases/iris")).json()["example"]
                    answer = await client.post("/usecases/iris/predict", json=record)
                    assert answer.status_code == 200
            assert services.writer is not None and services.writer.stats().written == 1
            # the app has stopped; its services still serve the data plane
            again = await services.dataplane.predict(
                "iris", orjson.dumps(record), CallInfo("/test", "test")
            )
            assert again.scores.labels == [answer.json()["label"]]
            assert services.writer.stats().written == 2

    asyncio.run(scenario())
