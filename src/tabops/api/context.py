"""The middleware that gives each HTTP request its id, log context and latency record.

It is plain ASGI (on the hot path, like :class:`~tabops.api.metrics.MetricsMiddleware`).
For each request it:

- takes the caller's ``X-Request-ID`` when the audit store can keep it (1 to 128 printable
  ASCII characters, the rule of :mod:`tabops.api.edge`), or makes one; returns it in the
  response's ``X-Request-ID`` header and leaves it in ``request.state.request_id``, so that
  the audit row, the log lines and the response name a call by the same id (a prediction
  sent with an id the store cannot keep is refused with 400 by the edge check);
- binds the request id, the use case named by the path, and the version serving that use
  case when the request arrived, to every log line written while it is handled
  (:func:`tabops.telemetry.logging.bind_request`);
- counts the time of prediction requests in :class:`~tabops.telemetry.latency.RecentLatency`
  (read by ``GET /health``);
- writes one access line per request when ``TABOPS_API__ACCESS_LOG`` is on.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tabops.api.edge import REQUEST_ID
from tabops.telemetry.latency import RecentLatency
from tabops.telemetry.logging import RequestContext, bind_request

__all__ = ["RequestContextMiddleware", "is_prediction_route"]

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


class RequestContextMiddleware:
    """Request id, log context, recent latency and the optional access line.

    Args:
        app: The application to wrap.
        latency: Where prediction latencies are counted.
        access: Write one INFO line per request to the ``tabops.access`` logger.
    """

    def __init__(self, app: ASGIApp, latency: RecentLatency, access: bool = False) -> None:
        self.app = app
        self.latency = latency
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if REQUEST_ID.fullmatch(value):
                    request_id = value.decode("ascii")
                break
        if request_id is None:
            request_id = uuid.uuid4().hex
        header = (b"x-request-id", request_id.encode("ascii"))
        scope.setdefault("state", {})["request_id"] = request_id
        usecase, version = _usecase(scope["path"], scope.get("app"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        with bind_request(RequestContext(request_id, usecase, version)):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                template = getattr(scope.get("route"), "path", None) or ""
                if is_prediction_route(template):
                    self.latency.observe(elapsed)
                if self.access:
                    access_log.info(
                        "%s %s %d %.1f ms",
                        scope["method"],
                        scope["path"],
                        status,
                        elapsed * 1000,
                    )
