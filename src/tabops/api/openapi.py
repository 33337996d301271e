"""The OpenAPI document, with one predict path per served use case.

Predictions go through one route (``/usecases/{name}/predict``) whose body is validated
against the champion's spec at request time, so a new champion with a new spec needs no
new route. The docs still show each use case's real fields, bounds, allowed values and an
example record from its data: this module writes a path per use case from the models
derived from its spec.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel
from starlette.routing import BaseRoute

from tabops.api.deps import API_KEY_HEADER, BEARER, needs_key
from tabops.api.schemas import ErrorResponse, FeedbackItem
from tabops.serving.models import ModelSet, ServedModel
from tabops.serving.v2 import InferenceRequest

__all__ = ["install_openapi"]

_REF = "#/components/schemas/{model}"
_GENERIC = "/usecases/{name}/predict"
_ERRORS = {
    "400": "Malformed JSON, or not a JSON object",
    "404": "Unknown use case",
    "413": "Request body over the configured maximum (`TABOPS_API__MAX_BODY_BYTES`)",
    "422": "Invalid features: missing, unknown, wrong type, out of bounds, unknown category; "
    "or a batch over the configured maximum",
    "503": "No model loaded for this use case",
}


def _add_schema(components: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=_REF)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": _REF.format(model=model.__name__)}


def _predict_operation(
    template: dict[str, Any], served: ServedModel, components: dict[str, Any], max_batch: int
) -> dict[str, Any]:
    spec = served.spec
    record = _add_schema(components, served.record_model)
    prediction = _add_schema(components, served.prediction_model)
    batch_name = f"{served.record_model.__name__}Batch"
    components[batch_name] = {
        "title": batch_name,
        "type": "object",
        "properties": {
            "records": {"type": "array", "items": record, "minItems": 1, "maxItems": max_batch}
        },
        "required": ["records"],
        "additionalProperties": False,
    }
    batch_answer = _add_schema(components, served.batch_model)
    op = copy.deepcopy(template)
    # the use case is in the path: only the query parameters (explain) are left
    op["parameters"] = _query_parameters(op)
    op["operationId"] = f"predict_{spec.name}"
    op["summary"] = f"Predict {spec.target.name}: {spec.title}"
    positive = f" Positive class: `{spec.target.positive}`." if spec.target.positive else ""
    op["description"] = (
        f'{spec.description}\n\nSend one record, or `{{"records": [...]}}` with up to '
        f"{max_batch} records. Classes: {', '.join(f'`{c}`' for c in spec.target.classes)}."
        f"{positive} Model version {served.version}."
    )
    op["tags"] = [f"use case: {spec.name}"]
    op["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [record, {"$ref": _REF.format(model=batch_name)}]},
                "examples": {
                    "one record": {"value": served.example},
                    "batch": {"value": {"records": [served.example, served.example]}},
                },
            }
        },
    }
    error = {"$ref": _REF.format(model="ErrorResponse")}
    op["responses"] = {
        "200": {
            "description": "The prediction (or one per record, in order)",
            "content": {"application/json": {"schema": {"oneOf": [prediction, batch_answer]}}},
        },
        **{
            status: {"description": text, "content": {"application/json": {"schema": error}}}
            for status, text in _ERRORS.items()
        },
    }
    return op


_PUBLIC = frozenset({"/health", "/ready"})
_EDGE_ERRORS = {
    "401": "No API key, or an invalid or revoked one",
    "403": "The API key's role may not do this",
    "413": "Request body over the limit (`TABOPS_API__MAX_BODY_BYTES`)",
    "429": "Over the API key's rate limit: retry after `Retry-After` seconds",
    "503": "Overloaded, or a dependency unavailable: retry after `Retry-After` seconds",
    "504": "No answer within `TABOPS_API__REQUEST_TIMEOUT_S`",
}
_BY_KIND = {
    "400": "Malformed JSON or header (e.g. `X-Request-ID` over 128 characters)",
    "404": "Unknown use case, version, job, prediction or entity",
    "409": "Conflict: a training job is already running for this use case",
    "422": "Invalid parameters or body",
}


def _document_errors(schema: dict[str, Any]) -> None:
    """Document every status a route can answer besides its own, with the one envelope:
    the limits and authentication in front of every route, and the errors of its kind."""
    envelope = {
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}}
    }
    # the Open Inference Protocol answers errors as {"error": "..."}
    schema["components"]["schemas"]["InferenceError"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
        "title": "InferenceError",
    }
    v2_error = {
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="InferenceError")}}}
    }
    for path, operations in schema["paths"].items():
        v2 = path.startswith("/v2")
        error = v2_error if v2 else envelope
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            if v2 and (path.endswith("/ready") or path.endswith("/live")):
                # the protocol's probes answer with a status and no body
                responses["200"] = {"description": "Yes"}
                responses["400"] = {"description": "No"}
            statuses = dict(_EDGE_ERRORS)
            if path in _PUBLIC:
                statuses = {k: v for k, v in statuses.items() if k in ("413", "504")}
            statuses["422"] = _BY_KIND["422"]
            if "{" in path or path.endswith("/feedback"):  # feedback: unknown prediction
                statuses["404"] = _BY_KIND["404"]
            if method in ("post", "put", "patch"):
                statuses["400"] = _BY_KIND["400"]
            if path.endswith("/train"):
                statuses["409"] = _BY_KIND["409"]
            for status, text in statuses.items():
                if status not in responses:
                    responses[status] = {"description": text, **copy.deepcopy(error)}


_FEEDBACK = "/usecases/{name}/feedback"
_BY_ID = "/usecases/{name}/predict/{entity_id}"
_NO_NUL = "^[^\\x00]*$"


def _feedback_operation(
    template: dict[str, Any], served: ServedModel, components: dict[str, Any]
) -> dict[str, Any]:
    """The feedback operation of one use case: ``actual`` is one of its classes."""
    spec = served.spec
    item = f"{served.record_model.__name__.removesuffix('Record')}Feedback"
    components[item] = {
        "title": item,
        "type": "object",
        "properties": {
            "prediction_id": {"type": "string", "format": "uuid", "description": "From predict"},
            "actual": {"enum": list(spec.target.classes), "description": "What really happened"},
            "source": {
                "anyOf": [
                    {"type": "string", "maxLength": 255, "pattern": _NO_NUL},
                    {"type": "null"},
                ],
                "description": "Who or what observed it",
            },
        },
        "required": ["prediction_id", "actual"],
        "additionalProperties": False,
    }
    ref = {"$ref": _REF.format(model=item)}
    op = copy.deepcopy(template)
    op["parameters"] = [p for p in op.get("parameters", []) if p.get("name") != "name"]
    op["operationId"] = f"feedback_{spec.name}"
    op["tags"] = [f"use case: {spec.name}"]
    op["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [ref, {"type": "array", "items": ref, "minItems": 1}]}
            }
        },
    }
    return op


def _by_id_operation(template: dict[str, Any], served: ServedModel) -> dict[str, Any]:
    """Predict by entity id for one use case: the id's form is documented (api/edge.py)."""
    spec = served.spec
    assert spec.entity_id is not None
    integer = spec.entity_id.type == "integer"
    schema: dict[str, Any] = (
        {"type": "string", "pattern": "^-?[0-9]{1,18}$"}  # within 64 bits
        if integer
        else {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _NO_NUL}
    )
    op = copy.deepcopy(template)
    op["operationId"] = f"predict_by_id_{spec.name}"
    op["tags"] = [f"use case: {spec.name}"]
    op["parameters"] = [
        {
            "name": "entity_id",
            "in": "path",
            "required": True,
            "schema": schema,
            "description": f"The {spec.entity_id.name} of a row of the use case's table",
        },
        *_query_parameters(op),
    ]
    return op


def _query_parameters(op: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in op.get("parameters", []) if p.get("in") == "query"]


def _keyed(dependant: Dependant) -> bool:
    """Whether a route's dependencies (its router's included) admit only callers with a key."""
    pending = list(dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is not None and needs_key(dependency.call):
            return True
        pending += dependency.dependencies
    return False


def _document_security(schema: dict[str, Any], routes: list[BaseRoute]) -> None:
    """List the two ways to present a key on every operation that needs one.

    The key is read by one dependency (:func:`tabops.api.deps.authorize`), not by FastAPI's
    security dependencies, which cost two more dependencies per request: the schemes are
    written here as FastAPI would have written them.
    """
    schemes = (BEARER, API_KEY_HEADER)
    keyed: list[RouteContext] = [
        route  # the routes of included routers, with their router's dependencies
        for route in iter_route_contexts(routes)
        if isinstance(route.original_route, APIRoute)
        and route.include_in_schema
        and _keyed(route.dependant)
    ]
    if not keyed:
        return
    schema.setdefault("components", {})["securitySchemes"] = {
        scheme.scheme_name: jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
        for scheme in schemes
    }
    for route in keyed:
        operations = schema["paths"].get(route.path_format or "", {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is not None:
                operation["security"] = [{scheme.scheme_name: []} for scheme in schemes]


def build_openapi(app: FastAPI, models: ModelSet, max_batch: int) -> dict[str, Any]:
    """The OpenAPI document for the use cases currently served."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _document_security(schema, app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _add_schema(components, ErrorResponse)
    for body in (FeedbackItem, InferenceRequest):  # bodies their routes read raw
        _add_schema(components, body)
    paths = schema["paths"]
    template = paths[_GENERIC]["post"]
    for name in sorted(models.states):
        served = models.states[name].served
        if served is not None:
            op = _predict_operation(template, served, components, max_batch)
            paths[f"/usecases/{name}/predict"] = {"post": op}
            if name == models.default and "/predict" in paths:
                default = copy.deepcopy(op)
                default["operationId"] = "predict_default"
                default["tags"] = ["predictions"]
                default["summary"] = f"Predict with the default use case ({name})"
                paths["/predict"] = {"post": default}
    feedback_template = paths.get(_FEEDBACK, {}).get("post")
    by_id_template = paths.get(_BY_ID, {}).get("post")
    for name in sorted(models.states):
        served = models.states[name].served
        if served is None:
            continue
        if feedback_template is not None:
            paths[f"/usecases/{name}/feedback"] = {
                "post": _feedback_operation(feedback_template, served, components)
            }
        if by_id_template is not None and served.spec.entity_id is not None:
            paths[f"/usecases/{name}/predict/{{entity_id}}"] = {
                "post": _by_id_operation(by_id_template, served)
            }
    # each served use case has its own typed operations above: the untyped templates would
    # only document bodies the server refuses
    for generic in (_GENERIC, _FEEDBACK, _BY_ID):
        paths.pop(generic, None)
    _document_errors(schema)
    return schema


def install_openapi(app: FastAPI, models: Callable[[], ModelSet | None], max_batch: int) -> None:
    """Make ``app.openapi()`` describe the models served now (rebuilt when they change).

    Args:
        app: The application.
        models: The model set being served (None before the lifespan started).
        max_batch: Most records per request.
    """
    cache: dict[Any, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        served = models() or ModelSet()  # before start-up: no use case yet
        key = tuple(sorted(served.versions().items(), key=lambda kv: kv[0]))
        if key not in cache:
            cache.clear()
            cache[key] = build_openapi(app, served, max_batch)
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]
