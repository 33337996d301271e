"""Limits at the edge of the API: body size, rate per key, requests in flight, time.

Applied by the edge middleware (:mod:`tabops.api.middleware`), outside the routes, so that
a request over a limit costs almost nothing: no body read, no authentication query, no
scoring.

- **Body size** (``api.max_body_bytes``): a ``Content-Length`` over the limit is answered
  413 before a byte of the body is read; a chunked body is counted as it arrives and
  refused (413) as soon as it passes the limit, so no request holds more than the limit
  in memory.
- **Rate per key** (``api.rate_limit``, e.g. ``"1000/second"``): a moving window per
  caller (the API key presented, hashed; the client address for calls without one),
  answered 429 with ``Retry-After``. Counted in Redis when ``redis_url`` is set (every
  replica shares the window), else in this process's memory. The windows are kept by the
  ``limits`` library. If Redis cannot be reached, requests are let through (and logged):
  an outage of the limiter must not become an outage of the service.
- **In flight** (``api.max_in_flight``): past this many requests being served by this
  process, new ones get 503 with ``Retry-After`` at once, rather than queueing into
  seconds of latency for everyone (load shedding).
- **Time** (``api.request_timeout_s``): a request still unanswered after this long gets
  504. A prediction cancelled this way may still be recorded (it was scored): a 504 is
  never taken for "recorded", a 200 always is.

Health, readiness and metrics are exempt from all but the body limit: a probe must get
its answer when the service sheds load.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from tabops.errors import BodyTooLargeError

__all__ = ["BodyTooLargeError", "EdgeLimits", "RateLimiter"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_EXEMPT = frozenset({"/health", "/ready", "/metrics"})


class RateLimiter:
    """A moving-window limit per caller, in Redis (shared) or in memory (this process).

    Args:
        rate: One or more limits in the ``limits`` notation, ``"100/second;5000/minute"``.
        redis_url: ``redis://host:port/db``; empty for in-memory windows.
        prefix: Key prefix in Redis (several services can share a server).
    """

    def __init__(self, rate: str, redis_url: str = "", prefix: str = "tabops") -> None:
        self.items: list[RateLimitItem] = parse_many(rate)
        self.shared = bool(redis_url)
        storage: Storage
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
            storage = RedisStorage(
                uri, implementation="redispy", key_prefix=prefix, wrap_exceptions=True
            )
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._warned = 0.0

    async def hit(self, identity: str) -> float | None:
        """Count one request of a caller.

        Returns:
            None when it is within every limit, else the seconds until it would be.
        """
        try:
            for item in self.items:
                if not await self._limiter.hit(item, identity):
                    stats = await self._limiter.get_window_stats(item, identity)
                    return max(stats.reset_time - time.time(), 0.0)
        except Exception as exc:  # the limiter's store is down: serve, do not fail
            now = time.monotonic()
            if now - self._warned > 30:
                self._warned = now
                log.warning("rate limiter unavailable, requests not limited: %s", exc)
        return None


def _identity(scope: Scope) -> str:
    """Who a request counts against: its API key (hashed, never kept) or its address."""
    key = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            key = value[7:].strip()
            break
        if name == b"x-api-key":
            key = value.strip()
    if key:
        return "key:" + hashlib.sha256(key).hexdigest()[:32]
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"


def _error_response(status: int, code: str, message: str, retry_after: float | None) -> Message:
    import orjson

    body = orjson.dumps({"error": {"code": code, "message": message, "details": []}})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
    return {"status": status, "headers": headers, "body": body}


async def _answer(send: Send, response: Message) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response["status"],
            "headers": response["headers"],
        }
    )
    await send({"type": "http.response.body", "body": response["body"]})


class EdgeLimits:
    """The limits of one process (see the module docstring), applied by the edge
    middleware (:class:`~tabops.api.middleware.EdgeMiddleware`) around every request.

    Args:
        max_body_bytes: Largest request body.
        max_in_flight: Most requests served at once by this process.
        request_timeout_s: Longest time to answer.
        limiter: The rate limit per caller, if any.
        on_shed: Told the reason (``rate_limited``, ``overloaded``, ``timeout``) of each
            request shed.
    """

    def __init__(
        self,
        *,
        max_body_bytes: int,
        max_in_flight: int,
        request_timeout_s: float,
        limiter: RateLimiter | None,
        on_shed: Callable[[str], None] | None = None,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.request_timeout_s = request_timeout_s
        self.limiter = limiter
        self.on_shed = on_shed
        self.in_flight = 0

    async def serve(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        started: Callable[[], bool],
    ) -> None:
        """Run ``app`` on a request within the limits, or answer its refusal.

        Args:
            app: What serves the request.
            scope, receive, send: The request's ASGI triple.
            started: Whether the response has started (after a timeout, a 504 is sent
                only if nothing was).
        """
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = 0
                if length > self.max_body_bytes:
                    await _answer(send, self._too_large())
                    return
        receive = self._counting(receive)
        if scope["path"] in _EXEMPT:
            await app(scope, receive, send)
            return
        if self.limiter is not None:
            wait = await self.limiter.hit(_identity(scope))
            if wait is not None:
                self._shed("rate_limited")
                await _answer(
                    send,
                    _error_response(
                        429, "rate_limited", "too many requests for this API key", wait
                    ),
                )
                return
        if self.in_flight >= self.max_in_flight:
            self._shed("overloaded")
            await _answer(
                send,
                _error_response(
                    503, "overloaded", "the server is at its limit of requests in flight", 1
                ),
            )
            return
        self.in_flight += 1
        try:
            async with asyncio.timeout(self.request_timeout_s):
                await app(scope, receive, send)
        except TimeoutError:
            self._shed("timeout")
            log.warning("request %s %s timed out", scope.get("method"), scope.get("path"))
            if not started():
                await _answer(
                    send,
                    _error_response(
                        504,
                        "timeout",
                        f"no answer within {self.request_timeout_s:g} s; a prediction may "
                        "have been recorded without being returned",
                        None,
                    ),
                )
        finally:
            self.in_flight -= 1

    def _too_large(self) -> Message:
        return _error_response(
            413,
            "body_too_large",
            f"request body over the limit of {self.max_body_bytes} bytes",
            None,
        )

    def _shed(self, reason: str) -> None:
        if self.on_shed is not None:
            self.on_shed(reason)

    def _counting(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # raised inside the route's body read: answered 413 by the error handler
                    raise BodyTooLargeError(f"request body over the limit of {limit} bytes")
            return message

        return counted
