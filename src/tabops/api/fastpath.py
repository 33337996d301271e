"""The prediction routes, served ahead of the framework's middleware layers.

A FastAPI app runs every request through five layers before its router (Starlette's
server-error and exception middlewares, FastAPI's exception telemetry, body limit and
exit stack), each a coroutine call, most with a wrapped ``send``; then the router tries
each route's pattern in turn, and the route wraps its endpoint in two more closures.
Measured in the workers' profile, those layers were a larger share of an audited
prediction than the scoring itself.

:class:`TabopsAPI` is a FastAPI app whose middleware stack starts with a
:class:`FastPath`: a POST to one of the three REST prediction routes goes straight to
tabops's own edge middleware (request id, limits, metrics) and the route's function, with
the app's own exception handlers, so its errors are the same structured answers.
Everything else, the OpenAPI document of those same routes included, goes through the
whole FastAPI stack as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tabops.api.middleware import EdgeMiddleware

__all__ = ["FastPath", "TabopsAPI"]

_EDGE: Any = EdgeMiddleware

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


class TabopsAPI(FastAPI):
    """A FastAPI app that serves ``fast_routes`` through a :class:`FastPath`."""

    fast_routes: Sequence[Route] = ()

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if not self.fast_routes:
            return stack
        # Middleware's options are typed for any middleware
        edges: list[Any] = [m for m in self.user_middleware if m.cls is _EDGE]
        if not edges:
            raise RuntimeError("the fast path needs the app's EdgeMiddleware")
        edge = edges[0]
        return FastPath(
            stack,
            self.fast_routes,
            lambda app: EdgeMiddleware(app, *edge.args, **edge.kwargs),
            dict(self.exception_handlers),
        )


class FastPath:
    """Serve ``routes`` (POST only) directly, everything else through ``app``.

    Args:
        app: The app's whole middleware stack, for every other request.
        routes: Starlette routes whose endpoints take a request and return a response.
        edge: Wraps the direct handler in the app's edge middleware (one instance for all
            routes: the limits and counters are the app's own, shared with ``app``'s).
        handlers: The app's exception handlers, by exception class (``Exception`` for the
            unexpected error, answered with a 500 and then re-raised for the server's log,
            as Starlette's server-error middleware does).
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[Route],
        edge: Callable[[ASGIApp], ASGIApp],
        handlers: dict[Any, Handler],
    ) -> None:
        self.app = app
        self.routes = tuple(routes)
        self.handlers = handlers
        self.served = edge(self._serve)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["route"] = route  # as Starlette's router sets it: the metrics' label
                    await self.served(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        endpoint: Endpoint = scope["route"].endpoint
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            await (await handler(request, exc))(scope, receive, send)
            if handler is self.handlers.get(Exception):
                raise  # unexpected: answered with a 500, and logged by the server
            return
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler:
        for cls in type(exc).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        raise exc  # no handler for it, as in the stack: the server answers it
