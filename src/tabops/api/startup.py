"""Starting while the database is down: what a serving process defers, and retries.

A process that can reach the model registry can serve: predictions go to the spool until
the database answers (``docs/reliability.md``). So a worker replaced during an outage (a
crash, an OOM kill, a recycle) or a replica started during one must not need the
database to start. Start-up steps that do are run through :func:`try_database`: a
connection failure is logged and the step retried in the background until it succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from tabops.store.spool import is_connection_error

__all__ = ["retry_in_background", "try_database"]

log = logging.getLogger(__name__)


async def try_database(step: str, fn: Callable[..., Any], *args: Any) -> bool:
    """Run a blocking database step in a thread; False if the database is unreachable.

    Raises:
        Exception: any error other than the database being unreachable.
    """
    try:
        await asyncio.to_thread(fn, *args)
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        log.warning("start-up: %s deferred, database unreachable (%s)", step, type(exc).__name__)
        return False
    return True


def retry_in_background(
    step: str, fn: Callable[..., Any], *args: Any, interval_s: float = 2.0
) -> asyncio.Task[None]:
    """Retry a deferred step until the database answers (a task to cancel at shutdown)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                if await try_database(step, fn, *args):
                    log.info("start-up: %s done, the database is back", step)
                    return
            except Exception:
                log.exception("start-up: %s failed", step)
                return

    return asyncio.create_task(loop(), name=f"tabops-deferred-{step}")
