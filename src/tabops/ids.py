"""Time-ordered unique ids (UUIDv7, RFC 9562) for predictions, requests and jobs."""

from __future__ import annotations

import os
import threading
import time

import numpy as np

__all__ = ["random_bytes", "uuid7", "uuid7_many"]


class _Entropy:
    """``os.urandom`` drawn 4 KiB at a time: a prediction needs three small draws (its id,
    its request's id, the request id of the logs), each a system call otherwise.

    The bytes are the kernel's CSPRNG's (ids must not be guessable from other ids). Each
    draw is taken under a lock, so two threads never get the same bytes, and a forked
    worker drops what it inherited, so two workers never do either.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._at + n > len(self._pool):
                self._pool, self._at = os.urandom(max(4096, n)), 0
            start = self._at
            self._at += n
            return self._pool[start : self._at]

    def _forget(self) -> None:
        self._lock = threading.Lock()  # a lock held at fork time would stay held
        self._pool, self._at = b"", 0


_ENTROPY = _Entropy()
random_bytes = _ENTROPY.take
"""``n`` random bytes from the kernel's CSPRNG (buffered; safe across threads and forks)."""

_FEW = 16
"""Up to this many ids, integer arithmetic beats numpy's per-call overhead (a single id:
about 4 µs against 15)."""


def _few(ms: int, n: int) -> list[str]:
    """``n`` UUIDv7 strings built as 128-bit integers (the layout of :func:`uuid7_many`)."""
    high = (ms << 80) | (0x7 << 76) | (0b10 << 62)
    raw = random_bytes(10 * n)
    out = []
    for i in range(0, 10 * n, 10):
        r = int.from_bytes(raw[i : i + 10], "big")  # 80 random bits: 12 + 62 are used
        h = f"{high | ((r >> 62) & 0xFFF) << 64 | (r & 0x3FFFFFFFFFFFFFFF):032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def uuid7() -> str:
    """A UUIDv7 string: unique, and ordered by creation time (index-friendly)."""
    return uuid7_many(1)[0]


def uuid7_many(n: int, ms: int | None = None) -> list[str]:
    """``n`` UUIDv7 strings sharing one millisecond timestamp, from one random draw.

    Layout (RFC 9562): 48 bits of Unix milliseconds, version 7, 12 random bits, variant
    0b10, 62 random bits.

    Args:
        n: How many.
        ms: Their Unix milliseconds; now when None (another time: for back-filled data,
            tests and benchmarks).
    """
    if ms is None:
        ms = time.time_ns() // 1_000_000
    ms &= (1 << 48) - 1
    if n <= _FEW:
        return _few(ms, n)
    head = ms.to_bytes(6, "big")
    rand = np.frombuffer(random_bytes(10 * n), dtype=np.uint8).reshape(n, 10).copy()
    rand[:, 0] = 0x70 | (rand[:, 0] & 0x0F)  # version 7
    rand[:, 2] = 0x80 | (rand[:, 2] & 0x3F)  # variant 0b10
    out = []
    for tail in rand.tobytes().hex(" ", 10).split(" ") if n else ():
        h = head.hex() + tail
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out
