"""Bounds on what a caller sends that reaches the audit store, checked at the edge.

Everything a caller controls and the audit trail keeps is checked here, before anything
is scored, so that a bad value is a clear 4xx for its sender and never a record the
database refuses later (see :mod:`tabops.store.bounds`, the last line of defence):

- ``X-Request-ID``: at most 128 printable ASCII characters, else 400 ``invalid_header``.
- the endpoint recorded is the route's template (``/usecases/credit/predict/{entity_id}``),
  never the raw path: an entity id is personal data, and a path has no useful bound.
- entity ids: an integer id is an ASCII integer within 64 bits; any id is at most 255
  characters without NUL, else 422 ``invalid_request``.
"""

from __future__ import annotations

import re

from fastapi import Request

from tabops.errors import FieldIssue, InvalidRequestError, TabopsError
from tabops.spec import UseCase
from tabops.store.bounds import REQUEST_ID_MAX

__all__ = [
    "ENTITY_ID_MAX",
    "InvalidHeaderError",
    "client_request_id",
    "check_entity_id",
    "endpoint_template",
]

ENTITY_ID_MAX = 255
"""Longest entity id accepted (string ids; integer ids are bounded by 64 bits)."""

_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_INT64 = (-(1 << 63), (1 << 63) - 1)


class InvalidHeaderError(TabopsError):
    """A request header is malformed or too long."""

    code = "invalid_header"


def client_request_id(request: Request) -> str | None:
    """The caller's ``X-Request-ID``, checked against what the audit store keeps.

    Raises:
        InvalidHeaderError: longer than 128 characters, or not printable ASCII.
    """
    value = request.headers.get("x-request-id")
    if value is None:
        return None
    if len(value) > REQUEST_ID_MAX or not _PRINTABLE.fullmatch(value):
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
    """The path of a call as recorded: its route's template with the use case filled in.

    The use case name was already resolved to a served one; any other path parameter
    (the entity id) stays a placeholder, so no raw identifier reaches the audit trail.
    """
    route = request.scope.get("route")
    template: str = getattr(route, "path", None) or request.url.path
    name = request.path_params.get("name")
    if isinstance(name, str) and "{name}" in template:
        template = template.replace("{name}", name)
    return template


def check_entity_id(spec: UseCase, entity_id: str) -> None:
    """Refuse an entity id that no row can have.

    Raises:
        InvalidRequestError: not an ASCII integer within 64 bits (integer ids), or too
            long, or holding a NUL character.
    """
    assert spec.entity_id is not None
    reason = None
    if spec.entity_id.type == "integer":
        if not _INTEGER.fullmatch(entity_id) or not (_INT64[0] <= int(entity_id) <= _INT64[1]):
            reason = "must be an integer (ASCII digits) within 64 bits"
    elif len(entity_id) > ENTITY_ID_MAX or "\x00" in entity_id:
        reason = f"at most {ENTITY_ID_MAX} characters, without NUL"
    if reason is not None:
        raise InvalidRequestError(
            f"invalid {spec.entity_id.name}", [FieldIssue("entity_id", reason)]
        )
