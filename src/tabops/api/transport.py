"""One write per response: uvicorn's HTTP protocol with a response's writes joined.

uvicorn writes a response's status line and headers when the app sends
``http.response.start``, and its body when the app sends ``http.response.body``: two
``send`` system calls and two TCP segments for each answer, however small. Here the
writes made in one turn of the event loop are held and written together at the end of
that turn (Starlette sends the start and the body of a response back to back), so an
answer is one ``send``. Profiled at c=64, uvicorn's two writes were a tenth of a
worker's CPU; the bench figures are in docs/performance.md.

Nothing is held longer than the loop's current turn; closing the connection writes what
is held first. Flow control is unchanged: the transport pauses the protocol when its
buffer fills, after the held writes are handed to it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["SERVER_OPTIONS", "JoinedWrites", "JoinedWritesProtocol"]


class JoinedWrites:
    """A transport whose writes of one loop turn reach the socket as one.

    Args:
        transport: The connection's transport.
        loop: The event loop it runs on.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self._flush)
        else:
            self._held.append(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    # what uvicorn calls on every request, without __getattr__'s lookup
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # abort, set_write_buffer_limits, ...
        return getattr(self._transport, name)


class JoinedWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`JoinedWrites` transport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        joined = JoinedWrites(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, joined))


SERVER_OPTIONS: dict[str, Any] = {"http": JoinedWritesProtocol, "ws": "none"}
"""uvicorn's options for the API, in one worker or many: this protocol, and no WebSocket
support (no route uses it; uvicorn would import the ``websockets`` package for it)."""
