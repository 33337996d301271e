"""Graceful stop: SIGTERM first drains readiness, then stops the server.

A load balancer or Kubernetes takes a replica out of rotation when its ``/ready`` fails,
a probe period later. A server that closes its listener the moment it gets SIGTERM
refuses or resets the requests still routed to it meanwhile. So, on SIGTERM:

1. ``/ready`` answers 503 (``"draining"``) at once; requests are still served;
2. after ``api.drain_s`` seconds, uvicorn's own graceful shutdown runs: the listener
   closes, keep-alive connections are closed, requests in flight finish (at most
   ``api.shutdown_timeout_s``), then the lifespan ends and the audit writer writes
   everything still queued before the process exits.

A second SIGTERM (or SIGINT) skips the drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

__all__ = ["install_drain"]

log = logging.getLogger(__name__)


def install_drain(state: Any, drain_s: float) -> None:
    """Put the drain in front of the signal handlers the server installed.

    Call from the lifespan's start-up (the server's handlers are installed by then).

    Args:
        state: The application state; ``state.draining`` becomes True on SIGTERM.
        drain_s: Seconds between readiness turning 503 and the server stopping.
    """
    loop = asyncio.get_running_loop()
    state.draining = False
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous = signal.getsignal(sig)
        except ValueError:  # not the main thread: no signals to take over
            return
        if not callable(previous):
            continue

        def handler(
            signum: int, frame: FrameType | None, previous: Any = previous, sig: int = sig
        ) -> None:
            first = not state.draining
            state.draining = True
            if not first or drain_s <= 0:
                previous(signum, frame)  # already draining, or no drain: stop now
                return
            log.info("signal %d: readiness is 503, stopping in %.1f s", signum, drain_s)
            loop.call_soon_threadsafe(loop.call_later, drain_s, previous, signum, frame)

        try:
            signal.signal(sig, handler)
        except ValueError:
            return
