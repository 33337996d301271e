"""The one ASGI middleware of the tabops app: request context, metrics and limits.

Every request passes through it once. It replaces three middlewares (request context,
metrics, limits) that each cost a coroutine call and a wrapped ``send`` on every
prediction. It is plain ASGI, not ``BaseHTTPMiddleware``. For each HTTP request, in order:

1. it gives the request its id and log context (:mod:`tabops.api.context`);
2. it applies the limits of :mod:`tabops.api.limits`: body size, rate per key and
   requests in flight are refused before the body is read, and the request gets a deadline;
3. it runs the app with one ``send`` that reads the status and adds ``X-Request-ID``;
4. it counts the request in the metrics by route template (``scope["route"].path``, set
   by the router, so that ``/usecases/credit/predict`` counts as
   ``/usecases/{name}/predict``); a prediction's time goes to
   :class:`~tabops.telemetry.latency.RecentLatency`; it writes the access line if it is on.

Refused requests (413, 429, 503, 504) carry the request id and are counted as well.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tabops.api.context import access_log, context_of, is_prediction_route, request_id_of
from tabops.api.limits import EdgeLimits
from tabops.api.metrics import UNMATCHED_ROUTE
from tabops.telemetry.latency import RecentLatency
from tabops.telemetry.logging import bind_request
from tabops.telemetry.metrics import Metrics

__all__ = ["EdgeMiddleware"]


class EdgeMiddleware:
    """Request id, log context, limits, metrics, recent latency and the access line.

    Args:
        app: The application to wrap.
        limits: The limits of this process.
        metrics: Where requests are counted and timed.
        latency: Where prediction latencies are counted.
        access: Write one INFO line per request to the ``tabops.access`` logger.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: EdgeLimits,
        metrics: Metrics,
        latency: RecentLatency,
        access: bool = False,
    ) -> None:
        self.app = app
        self.limits = limits
        self.metrics = metrics
        self.latency = latency
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        header = (b"x-request-id", request_id.encode("ascii"))
        scope.setdefault("state", {})["request_id"] = request_id
        status = 0  # no response started yet

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        def responded() -> bool:
            return status != 0

        with bind_request(context_of(scope, request_id)):
            try:
                await self.limits.serve(self.app, scope, receive, send_with_id, responded)
            finally:
                elapsed = time.perf_counter() - started
                template: str | None = getattr(scope.get("route"), "path", None)
                # raised before responding: the client gets a 500 from the error handler
                answered = status or 500
                self.metrics.observe_request(
                    scope["method"], template or UNMATCHED_ROUTE, answered, elapsed
                )
                if template is not None and is_prediction_route(template):
                    self.latency.observe(elapsed)
                if self.access:
                    access_log.info(
                        "%s %s %d %.1f ms", scope["method"], scope["path"], answered, elapsed * 1000
                    )
