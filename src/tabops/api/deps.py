"""Dependencies: the services opened in the lifespan, reached from routes by type.

Every dependency here is ``async``: FastAPI runs a plain ``def`` dependency in its thread
pool, a thread hop per dependency on the hot path of every prediction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyHeader, HTTPBearer
from sqlalchemy import Engine

from tabops.api.auth import ROLE_RANK, Caller
from tabops.api.edge import client_request_id, endpoint_template, header
from tabops.api.services import Services
from tabops.config import Settings
from tabops.errors import NotAuthenticatedError, PermissionDeniedError
from tabops.lifecycle.jobs import JobRunner
from tabops.lifecycle.registry import Registry
from tabops.serving.dataplane import CallInfo, DataPlane
from tabops.serving.models import ModelSet, ServedModel, UseCaseState

__all__ = [
    "API_KEY_HEADER",
    "BEARER",
    "CallDep",
    "CallerDep",
    "DataPlaneDep",
    "EngineDep",
    "JobsDep",
    "MetricsSinkDep",
    "ModelsDep",
    "PredictionCall",
    "PredictionDep",
    "prediction_call",
    "RegistryDep",
    "ServedDep",
    "ServicesDep",
    "SettingsDep",
    "UseCaseDep",
    "authorize",
    "needs_key",
    "require",
    "services_of",
]


def services_of(app: FastAPI) -> Services:
    """The services the lifespan opened for an app.

    Raises:
        RuntimeError: the lifespan has not started.
    """
    services = getattr(app.state, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError("the application's lifespan has not started")
    return services


async def _services(request: Request) -> Services:
    return services_of(request.app)


ServicesDep = Annotated[Services, Depends(_services)]


async def _settings(services: ServicesDep) -> Settings:
    return services.settings


async def _models(services: ServicesDep) -> ModelSet:
    return services.models


async def _engine(services: ServicesDep) -> Engine:
    return services.engine


async def _registry(services: ServicesDep) -> Registry:
    return services.registry


async def _jobs(services: ServicesDep) -> JobRunner:
    return services.jobs


async def _dataplane(request: Request) -> DataPlane:
    return services_of(request.app).dataplane  # one dependency on the prediction path


async def _usecase(name: str, request: Request) -> UseCaseState:
    """The use case named in the path.

    Raises:
        UseCaseNotFoundError: 404, not served by this process.
    """
    return services_of(request.app).models.state(name)


async def _served(name: str, request: Request) -> ServedModel:
    """The model answering for the use case named in the path.

    Raises:
        UseCaseNotFoundError: 404, not served by this process.
        ModelNotReadyError: 503, no champion loaded.
    """
    return services_of(request.app).models.served(name)


def _caller_of(request: Request) -> str | None:
    caller: Caller | None = getattr(request.state, "caller", None)  # set by require()
    return caller.name if caller is not None else None


async def _caller(request: Request) -> str | None:
    """The name of the authenticated caller, if any."""
    return _caller_of(request)


async def _key(request: Request) -> Caller | None:
    """The authenticated key (name and role), if any."""
    caller: Caller | None = getattr(request.state, "caller", None)  # set by require()
    return caller


def _call_info(request: Request, key: Caller | None) -> CallInfo:
    """Who calls which endpoint, for the audit trail: the key's name, else the address."""
    caller = key.name if key is not None else None
    if caller is None and request.client is not None:
        caller = request.client.host
    # every field bounded at the edge (api/edge.py): a 4xx here, never a poison record
    return CallInfo(endpoint_template(request), caller, client_request_id(request))


async def _call(request: Request) -> CallInfo:
    """Who calls which endpoint (see :func:`_call_info`)."""
    return _call_info(request, getattr(request.state, "caller", None))


async def _drift_sink(services: ServicesDep) -> Callable[[Any], None]:
    """Where drift reports go besides the response: the Prometheus gauges."""
    return services.metrics.record_drift


SettingsDep = Annotated[Settings, Depends(_settings)]
ModelsDep = Annotated[ModelSet, Depends(_models)]
EngineDep = Annotated[Engine, Depends(_engine)]
RegistryDep = Annotated[Registry, Depends(_registry)]
JobsDep = Annotated[JobRunner, Depends(_jobs)]
DataPlaneDep = Annotated[DataPlane, Depends(_dataplane)]
UseCaseDep = Annotated[UseCaseState, Depends(_usecase)]
"""The use case named by the ``{name}`` path parameter, or 404."""
ServedDep = Annotated[ServedModel, Depends(_served)]
"""The champion answering for the ``{name}`` path parameter, or 404/503."""
CallerDep = Annotated[str | None, Depends(_caller)]
KeyDep = Annotated[Caller | None, Depends(_key)]
"""The authenticated key (name and role), or None for an anonymous caller."""
CallDep = Annotated[CallInfo, Depends(_call)]
MetricsSinkDep = Annotated[Callable[[Any], None], Depends(_drift_sink)]

BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")
"""The two ways to present a key, as the OpenAPI document names them
(:func:`tabops.api.openapi.build_openapi` lists them on every route that needs a key).
They are not dependencies: :func:`authorize` reads the same two headers itself, which
spares FastAPI solving two sub-dependencies on every call."""


def _presented_key(request: Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``, else of ``X-API-Key`` (the rules of
    FastAPI's :class:`HTTPBearer` and :class:`APIKeyHeader` without ``auto_error``)."""
    authorization = header(request, b"authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return credentials
    return header(request, b"x-api-key") or None


async def authorize(request: Request, role: str) -> Caller:
    """The caller of a request whose key has at least ``role``; it is kept for
    :data:`CallerDep`, :data:`KeyDep` and :data:`CallDep` (``request.state.caller``).

    Raises:
        NotAuthenticatedError: 401, no key or an invalid one.
        PermissionDeniedError: 403, the key's role is too low.
        AuthUnavailableError: 503, the key store cannot be read and the key is not known.
    """
    auth = services_of(request.app).auth
    key = _presented_key(request)
    if not key:
        if role == "predict" and auth.settings.anonymous_predict:
            caller = Caller("anonymous", "predict")
            request.scope.setdefault("state", {})["caller"] = caller  # request.state.caller
            return caller
        raise NotAuthenticatedError(
            "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`"
        )
    found = await auth.authenticate(key)
    if found is None:
        raise NotAuthenticatedError("invalid or revoked API key")
    if ROLE_RANK[found.role] < ROLE_RANK[role]:
        raise PermissionDeniedError(
            f"this needs an {role} key; '{found.name}' is a {found.role} key"
        )
    request.scope.setdefault("state", {})["caller"] = found
    return found


def needs_key(call: Callable[..., Any]) -> bool:
    """Whether a dependency admits only callers with a key (made by :func:`require`, or
    :data:`PredictionDep`): their routes list the security schemes in the OpenAPI document."""
    return getattr(call, "tabops_needs_key", False) is True


def require(role: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency admitting callers whose key has at least ``role`` (see
    :func:`authorize`); the caller is kept for :data:`CallerDep` and :data:`CallDep`.

    Raises (from the dependency):
        NotAuthenticatedError: 401, no key or an invalid one.
        PermissionDeniedError: 403, the key's role is too low.
    """
    if role not in ROLE_RANK:  # fails when the app is built, not on a request
        raise ValueError(f"unknown role {role!r}")

    async def dependency(request: Request) -> Caller:
        return await authorize(request, role)

    dependency.tabops_needs_key = True  # type: ignore[attr-defined]
    return dependency


@dataclass(frozen=True, slots=True)
class PredictionCall:
    """What a prediction route needs, solved as one dependency: the data plane, and who
    calls which endpoint."""

    dataplane: DataPlane
    call: CallInfo


async def prediction_call(request: Request) -> PredictionCall:
    """A predict-role caller's call (see :func:`authorize`), with the data plane.

    The hot path of every prediction: one dependency instead of four (the role check and
    its two security schemes, the data plane, the call), each of which FastAPI solved on
    every request.
    """
    caller = await authorize(request, "predict")
    dataplane = services_of(request.app).dataplane
    return PredictionCall(dataplane, _call_info(request, caller))


prediction_call.tabops_needs_key = True  # type: ignore[attr-defined]
PredictionDep = Annotated[PredictionCall, Depends(prediction_call)]
"""The data plane and the call of a prediction route; admits predict-role callers."""
