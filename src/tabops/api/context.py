"""What each HTTP request is given by the edge middleware (:mod:`tabops.api.middleware`):
its id, its log context and its latency record. For each request:

- takes the caller's ``X-Request-ID`` when the audit store can keep it (1 to 128 printable
  ASCII characters, the rule of :mod:`tabops.api.edge`), or makes one; returns it in the
  response's ``X-Request-ID`` header and leaves it in ``request.state.request_id``, so that
  the audit row, the log lines and the response name a call by the same id (a prediction
  sent with an id the store cannot keep is refused with 400 by the edge check);
- binds the request id, the use case named by the path, and the version serving that use
  case when the request arrived, to every log line written while it is handled
  (:func:`tabops.telemetry.logging.bind_request`);
- counts the time of prediction requests (:func:`is_prediction_route`) in
  :class:`~tabops.telemetry.latency.RecentLatency` (read by ``GET /health``);
- writes one access line per request to the ``tabops.access`` logger when
  ``TABOPS_API__ACCESS_LOG`` is on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from starlette.types import Scope

from tabops.api.edge import REQUEST_ID
from tabops.ids import random_bytes
from tabops.telemetry.logging import RequestContext

__all__ = ["access_log", "context_of", "is_prediction_route", "request_id_of"]

access_log = logging.getLogger("tabops.access")

_USECASE_PATH = re.compile(r"^/(?:usecases|v2/models)/([^/]+)")


def is_prediction_route(template: str) -> bool:
    """True for the route templates that score records (REST and V2)."""
    return template.endswith(("/predict", "/predict/{entity_id}", "/infer"))


def _usecase(path: str, app: Any) -> tuple[str | None, str | None]:
    """The use case a path names (``/predict``: the default one) and the version serving it."""
    services = getattr(app.state, "services", None) if app is not None else None
    models = services.models if services is not None else None
    match = _USECASE_PATH.match(path)
    name = match.group(1) if match else (models.default if models and path == "/predict" else None)
    if name is None or models is None:
        return name, None
    state = models.states.get(name)
    served = state.served if state is not None else None
    return name, served.version if served is not None else None


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The id of a request: its ``X-Request-ID`` when the audit store can keep it, else a
    new one (a prediction sent with an id the store cannot keep is then refused with 400
    by the edge check, :func:`tabops.api.edge.client_request_id`)."""
    for name, value in headers:
        if name == b"x-request-id":
            if REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return random_bytes(16).hex()  # 128 random bits, as a uuid4's hex, without the object


def context_of(scope: Scope, request_id: str) -> RequestContext:
    """The log context of a request: its id, the use case its path names and the version
    serving that use case now."""
    usecase, version = _usecase(scope["path"], scope.get("app"))
    return RequestContext(request_id, usecase, version)
