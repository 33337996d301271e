"""One mapping from domain errors to HTTP statuses, and the handlers that use it.

Every error leaves as ``{"error": {"code", "message", "details": [{"field", "reason"}]}}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from tabops.errors import (
    AuditRecordRejectedError,
    AuditUnavailableError,
    AuthUnavailableError,
    BatchTooLargeError,
    BodyTooLargeError,
    DataNotFoundError,
    DataValidationError,
    EntityNotFoundError,
    InvalidFeaturesError,
    InvalidHeaderError,
    InvalidRequestError,
    JobConflictError,
    JobNotFoundError,
    KeyExistsError,
    MalformedRequestError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelNotReadyError,
    NotAuthenticatedError,
    PermissionDeniedError,
    PredictionNotFoundError,
    SanityCheckError,
    SpecError,
    TableNotEmptyError,
    TabopsError,
    TrainingError,
    UseCaseNotFoundError,
)

__all__ = ["RETRY_AFTER_S", "STATUS", "SafeJSONResponse", "error_body", "install_error_handlers"]

log = logging.getLogger(__name__)

STATUS: dict[type[TabopsError], int] = {
    MalformedRequestError: 400,
    InvalidHeaderError: 400,
    NotAuthenticatedError: 401,
    PermissionDeniedError: 403,
    UseCaseNotFoundError: 404,
    ModelNotFoundError: 404,
    DataNotFoundError: 404,
    EntityNotFoundError: 404,
    PredictionNotFoundError: 404,
    TableNotEmptyError: 409,
    JobConflictError: 409,
    KeyExistsError: 409,
    JobNotFoundError: 404,
    SanityCheckError: 422,
    # maxItems of the documented schema: a validation error like the others (was 413)
    BatchTooLargeError: 422,
    BodyTooLargeError: 413,
    InvalidFeaturesError: 422,
    InvalidRequestError: 422,
    DataValidationError: 422,
    TrainingError: 422,
    SpecError: 500,
    ModelIntegrityError: 422,
    ModelNotReadyError: 503,
    AuditUnavailableError: 503,
    AuditRecordRejectedError: 422,
    AuthUnavailableError: 503,
}

RETRY_AFTER_S: dict[type[TabopsError], int] = {
    AuditUnavailableError: 5,
    ModelNotReadyError: 10,
    AuthUnavailableError: 5,
}
"""``Retry-After`` (seconds) of the 503s a client should retry later."""


class SafeJSONResponse(JSONResponse):
    """A JSON response that renders any string, even one holding a lone surrogate.

    An error message may quote the caller's input, and JSON may carry ``"\\ud800"``,
    which is no UTF-8: Starlette's renderer raised ``UnicodeEncodeError`` on it, turning a
    422 into a 500. ``backslashreplace`` writes it back as the JSON escape it came as.
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8", "backslashreplace")


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}


def error_body(
    code: str, message: str, details: list[dict[str, object]] | None = None
) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def _status_of(exc: TabopsError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _v2(request: Request) -> bool:
    """Under ``/v2`` errors take the Open Inference Protocol's shape."""
    return request.url.path.startswith("/v2/") or request.url.path == "/v2"


def _v2_error(message: str, details: list[dict[str, object]], status: int) -> JSONResponse:
    """``{"error": "..."}``; bad input of any kind is a 400 in the protocol."""
    if details:
        message += ": " + "; ".join(f"{d['field']}: {d['reason']}" for d in details)
    if status in (413, 422):
        status = 400
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return SafeJSONResponse({"error": message}, status_code=status, headers=headers)


async def _tabops_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TabopsError)
    status = _status_of(exc)
    if status >= 500:
        log.error("%s: %s", type(exc).__name__, exc)
    details = [d.as_dict() for d in exc.details]
    if _v2(request):
        return _v2_error(exc.message, details, status)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    for cls, seconds in RETRY_AFTER_S.items():
        if isinstance(exc, cls):
            headers["Retry-After"] = str(seconds)
    return SafeJSONResponse(
        error_body(exc.code, exc.message, details), status_code=status, headers=headers or None
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details: list[dict[str, object]] = [
        {"field": ".".join(str(p) for p in err["loc"]), "reason": err["msg"]}
        for err in exc.errors()
    ]
    if _v2(request):
        return _v2_error("invalid inference request", details, 400)
    return SafeJSONResponse(
        error_body("invalid_request", "invalid request", details), status_code=422
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if _v2(request):
        return SafeJSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return SafeJSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def _client_disconnect(_request: Request, _exc: Exception) -> Response:
    # the caller hung up before sending its whole body: nothing was scored or recorded
    log.info("client disconnected before the request body was read")
    return Response(status_code=499)


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "internal error; see the server log"), status_code=500
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on an app."""
    app.add_exception_handler(TabopsError, _tabops_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected_error)
