"""Dependencies: the long-lived objects opened in the lifespan, reached from routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from tabops.config import Settings
from tabops.lifecycle import JobRunner
from tabops.registry import Registry
from tabops.serving import ModelSet, Predictor

__all__ = [
    "EngineDep",
    "JobsDep",
    "MetricsSinkDep",
    "ModelsDep",
    "PredictorDep",
    "RegistryDep",
    "SettingsDep",
]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _models(request: Request) -> ModelSet:
    models: ModelSet = request.app.state.models
    return models


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _predictor(request: Request) -> Predictor:
    predictor: Predictor = request.app.state.predictor
    return predictor


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _jobs(request: Request) -> JobRunner:
    jobs: JobRunner = request.app.state.jobs
    return jobs


def _drift_sink(request: Request) -> Callable[[Any], None]:
    """Where drift reports go besides the response: the Prometheus gauges, if any."""
    metrics = getattr(request.app.state, "metrics", None)
    record: Callable[[Any], None] | None = getattr(metrics, "record_drift", None)
    return record if record is not None else (lambda _report: None)


SettingsDep = Annotated[Settings, Depends(_settings)]
ModelsDep = Annotated[ModelSet, Depends(_models)]
EngineDep = Annotated[Engine, Depends(_engine)]
PredictorDep = Annotated[Predictor, Depends(_predictor)]
RegistryDep = Annotated[Registry, Depends(_registry)]
JobsDep = Annotated[JobRunner, Depends(_jobs)]
MetricsSinkDep = Annotated[Callable[[Any], None], Depends(_drift_sink)]
