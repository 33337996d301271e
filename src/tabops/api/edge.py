"""Bounds on what a caller sends that reaches the audit store, checked at the edge.

Everything a caller controls and the audit trail keeps is checked here, before anything
is scored, so that a bad value is a clear 4xx for its sender and never a record the
database refuses later (see :mod:`tabops.store.bounds`, the last line of defence):

- ``X-Request-ID``: at most 128 printable ASCII characters, else 400 ``invalid_header``;
  without one, the id the request-context middleware made is recorded (the one in the
  response header and on the log lines).
- the endpoint recorded is the route's template (``/usecases/credit/predict/{entity_id}``),
  never the raw path: an entity id is personal data, and a path has no useful bound.
- entity ids are checked by the data plane (:func:`tabops.serving.dataplane.check_entity_id`).
"""

from __future__ import annotations

import re

from fastapi import Request

from tabops.errors import FieldIssue, InvalidHeaderError
from tabops.store.bounds import REQUEST_ID_MAX

__all__ = [
    "REQUEST_ID",
    "client_request_id",
    "endpoint_template",
    "header",
]


REQUEST_ID = re.compile(rb"[\x20-\x7e]{1,%d}" % REQUEST_ID_MAX)
"""An ``X-Request-ID`` the audit store keeps (its raw header bytes): 1 to 128 printable
ASCII characters. The request-context middleware takes such a header as the call's id."""


def header(request: Request, name: bytes) -> str | None:
    """The first value of a header (``name`` in lower case, as ASGI gives names), decoded
    as Starlette decodes it. On every prediction: Starlette's ``headers.get`` builds a
    mapping and raises and catches a ``KeyError`` for each header that is absent."""
    raw: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in raw:
        if key == name:
            return value.decode("latin-1")
    return None


def client_request_id(request: Request) -> str | None:
    """The id a call is recorded under: the caller's ``X-Request-ID``, checked against what
    the audit store keeps, else the one :class:`~tabops.api.middleware.EdgeMiddleware`
    made (``None`` only for an app served without that middleware).

    Raises:
        InvalidHeaderError: longer than 128 characters, or not printable ASCII.
    """
    value = header(request, b"x-request-id")
    if not value:
        made: str | None = request.scope.get("state", {}).get("request_id")
        return made
    if not REQUEST_ID.fullmatch(value.encode("latin-1")):  # how Starlette decoded it
        raise InvalidHeaderError(
            "invalid X-Request-ID header",
            [
                FieldIssue(
                    "X-Request-ID",
                    f"at most {REQUEST_ID_MAX} printable ASCII characters "
                    f"(got {len(value)} characters)",
                )
            ],
        )
    return value


def endpoint_template(request: Request) -> str:
    """The path of a call as recorded: its route's template with the use case (and, on the
    V2 routes, the model version) filled in.

    Those name a served model, so the call is only recorded when they do; the entity id
    stays a placeholder, so no raw identifier reaches the audit trail.
    """
    route = request.scope.get("route")
    template: str = getattr(route, "path", None) or request.url.path
    for param in _SHOWN:
        value = request.path_params.get(param)
        if isinstance(value, str):
            template = template.replace(f"{{{param}}}", value)
    return template


_SHOWN = ("name", "version")
"""Path parameters recorded as they were sent: a use case's name and a model version."""
