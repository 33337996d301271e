"""JoinedWrites on a real event loop and a real socket: the writes of one loop turn are
one send, in order; nothing is held past the turn; closing writes what is held first."""

from __future__ import annotations

import asyncio
import socket

from tabops.api.transport import JoinedWrites


class Sends(asyncio.Protocol):
    """The client side's protocol: nothing to do, the test reads the peer socket."""


async def _pair() -> tuple[asyncio.Transport, JoinedWrites, socket.socket]:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(Sends, ours)
    theirs.setblocking(False)
    return transport, JoinedWrites(transport, loop), theirs


async def _read(peer: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recv(peer, 65536), 5)


def test_writes_of_one_turn_are_joined_in_order() -> None:
    async def scenario() -> tuple[bytes, bytes, bool]:
        transport, joined, peer = await _pair()
        sent: list[bytes] = []
        real_write = transport.write

        def write(data: bytes) -> None:  # what reaches the transport, and how many times
            sent.append(bytes(data))
            real_write(data)

        transport.write = write  # type: ignore[method-assign]
        joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        joined.write(b"")  # uvicorn's empty body of a HEAD answer: nothing to send
        joined.write(b"{}")
        held = sent == []  # still in this turn: nothing written yet
        await asyncio.sleep(0)
        first = await _read(peer)
        joined.write(b"next")
        joined.close()  # closing writes what is held, then closes
        rest = b""
        while chunk := await _read(peer):
            rest += chunk
        peer.close()
        assert sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"next"]
        return first, rest, held

    first, rest, held = asyncio.run(scenario())
    assert held
    assert first == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    assert rest == b"next"


def test_nothing_is_written_once_the_transport_is_closing() -> None:
    async def scenario() -> bytes:
        transport, joined, peer = await _pair()
        joined.write(b"late")
        transport.close()  # closed under it (the peer went away) before the turn ends
        await asyncio.sleep(0)
        data = b""
        while chunk := await _read(peer):
            data += chunk
        peer.close()
        assert joined.is_closing()
        return data

    assert asyncio.run(scenario()) == b""
