"""The OpenAPI document, with one predict path per served use case.

Predictions go through one route (``/usecases/{name}/predict``) whose body is validated
against the champion's spec at request time, so a new champion with a new spec needs no
new route. The docs still show each use case's real fields, bounds, allowed values and an
example record from its data: this module writes a path per use case from the models
derived from its spec.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from tabops.api.schemas import ErrorResponse, FeedbackItem
from tabops.serving import ModelSet, ServedModel

__all__ = ["install_openapi"]

_REF = "#/components/schemas/{model}"
_GENERIC = "/usecases/{name}/predict"
_ERRORS = {
    "400": "Malformed JSON, or not a JSON object",
    "404": "Unknown use case",
    "413": "Batch over the configured maximum",
    "422": "Invalid features: missing, unknown, wrong type, out of bounds, unknown category",
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
    batch_answer = f"{served.prediction_model.__name__}Batch"
    components[batch_answer] = {
        "title": batch_answer,
        "type": "object",
        "properties": {
            "model_version": {"type": "string"},
            "predictions": {"type": "array", "items": prediction},
        },
        "required": ["model_version", "predictions"],
    }
    op = copy.deepcopy(template)
    op.pop("parameters", None)
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
            "content": {
                "application/json": {
                    "schema": {"oneOf": [prediction, {"$ref": _REF.format(model=batch_answer)}]}
                }
            },
        },
        **{
            status: {"description": text, "content": {"application/json": {"schema": error}}}
            for status, text in _ERRORS.items()
        },
    }
    return op


def build_openapi(app: FastAPI, models: ModelSet, max_batch: int) -> dict[str, Any]:
    """The OpenAPI document for the use cases currently served."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _add_schema(components, ErrorResponse)
    # the feedback route reads its body itself: FastAPI lists no model its docs refer to
    _add_schema(components, FeedbackItem)
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
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe the models served now (rebuilt when they change)."""
    cache: dict[Any, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        models: ModelSet | None = getattr(app.state, "models", None)
        if models is None:
            return get_openapi(title=app.title, version=app.version, routes=app.routes)
        key = tuple(sorted(models.versions().items(), key=lambda kv: kv[0]))
        if key not in cache:
            cache.clear()
            cache[key] = build_openapi(app, models, app.state.settings.api.max_batch)
        return cache[key]

    app.openapi = openapi  # type: ignore[method-assign]
