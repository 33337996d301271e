"""Dependencies: the long-lived objects opened in the lifespan, reached from routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from tabops.config import Settings
from tabops.lifecycle.jobs import JobRunner
from tabops.lifecycle.registry import Registry
from tabops.serving.dataplane import Predictor
from tabops.serving.models import ModelSet

__all__ = [
    "EngineDep",
    "JobsDep",
    "MetricsSinkDep",
    "ModelsDep",
    "PredictorDep",
    "RegistryDep",
    "SettingsDep",
]


def _state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning the long-lived object the lifespan stored as ``app.state.<name>``.

    ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
    dependency on the hot path of every prediction.
    """

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"state_{name}"
    return dependency


async def _drift_sink(request: Request) -> Callable[[Any], None]:
    """Where drift reports go besides the response: the Prometheus gauges, if any."""
    metrics = getattr(request.app.state, "metrics", None)
    record: Callable[[Any], None] | None = getattr(metrics, "record_drift", None)
    return record if record is not None else (lambda _report: None)


SettingsDep = Annotated[Settings, Depends(_state("settings"))]
ModelsDep = Annotated[ModelSet, Depends(_state("models"))]
EngineDep = Annotated[Engine, Depends(_state("engine"))]
PredictorDep = Annotated[Predictor, Depends(_state("predictor"))]
RegistryDep = Annotated[Registry, Depends(_state("registry"))]
JobsDep = Annotated[JobRunner, Depends(_state("jobs"))]
MetricsSinkDep = Annotated[Callable[[Any], None], Depends(_drift_sink)]
