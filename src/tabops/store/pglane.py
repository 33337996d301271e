"""The audit writer's PostgreSQL lane: group commits written from the event loop.

The writer's thread (:mod:`tabops.store.audit`) cost more than its work. Under load the
event loop holds the GIL, so each time the thread woke (to take a batch, then again
when the server answered) it waited for the interpreter's switch interval (5 ms) to get
it: a one-statement transaction took about 8 ms from batch to answer, and for that
time every request in it waited while the machine sat partly idle. Measured on the
bench machine at c=64 (2 workers, audit on PostgreSQL), writing the same statement on
an ``AsyncConnection`` from the writer task took the workers from about 210 to 180 µs of
CPU per request and the throughput up by a fifth.

The lane writes a batch as the thread would (:mod:`tabops.store.pgwrite`): up to
:data:`~tabops.store.pgwrite.ONE_STATEMENT_MAX` predictions that JSON carries exactly as
one statement (:func:`~tabops.store.pgwrite.one_statement`), larger ones with two
``COPY`` commands in a transaction. SQLite, replay, quarantine and the spool stay on the
writer's thread. The lane keeps the thread path's
guarantees: the statement is its own transaction (autocommit), committed before the
requests are answered; a statement held past the connection's deadline has its socket
cut (as the pool's watchdog does, :mod:`tabops.store.watchdog`), so a frozen server
fails the write and the batch goes to the spool instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import Engine

from tabops.config import DatabaseSettings
from tabops.store.db import hold_s, pg_connect_args
from tabops.store.pgwrite import (
    COPY_PREDICTIONS,
    COPY_REQUESTS,
    INSERT,
    copy_text,
    one_statement,
)
from tabops.store.rows import AuditRecord
from tabops.store.watchdog import IDLE_S, PING_S, cut_socket

__all__ = ["APPLICATION_NAME", "LoopLane"]

APPLICATION_NAME = "tabops-audit"
"""How the lane's connection is named in ``pg_stat_activity`` (unless the URL names it)."""


class LoopLane:
    """One autocommit ``AsyncConnection`` of the audit writer's task, opened on first use
    and again after a failure.

    Args:
        engine: The PostgreSQL engine whose database the lane writes to (its URL and
            driver parameters).
        timeouts: The serving process's database timeouts: the connection's libpq
            parameters and the deadline of one statement (:func:`~tabops.store.db.hold_s`).
    """

    def __init__(self, engine: Engine, timeouts: DatabaseSettings) -> None:
        _, params = engine.dialect.create_connect_args(engine.url)
        # merged as the engine merges them: the serving timeouts over the URL's own
        self._params: dict[str, Any] = {**params, **pg_connect_args(timeouts)}
        self._params.setdefault("application_name", APPLICATION_NAME)
        self._hold = hold_s(timeouts)
        self._connect_s = self._params["connect_timeout"] + 1.0
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._used = 0.0
        """When the connection last answered (``time.monotonic()``)."""

    async def write(self, records: list[AuditRecord]) -> None:
        """Write a batch atomically: committed on return.

        Raises:
            psycopg.Error, OSError, TimeoutError: not known to be written (the caller
                spools it, and the replay writes it once); the connection is closed and
                the next write opens another.
        """
        try:
            conn = await self._connection()
            params = one_statement(records)
            with _deadline(conn, self._hold):
                if params is not None:
                    await conn.execute(INSERT, params)
                else:
                    await _copy(conn, records)
            self._used = time.monotonic()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection, if one is open (without waiting on the server)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()  # close() would wait on a server that may not answer

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        """The open connection; one idle for more than
        :data:`~tabops.store.watchdog.IDLE_S` is pinged first, under
        :data:`~tabops.store.watchdog.PING_S`, and replaced if it does not answer (a
        server restarted meanwhile), as the pool's watchdog does at checkout: nothing of
        the batch has been sent yet, so that failure is not a reason to spool it."""
        conn = self._conn
        if conn is not None and not conn.closed and time.monotonic() - self._used > IDLE_S:
            try:
                with _deadline(conn, PING_S):
                    await conn.execute("SELECT 1")
                self._used = time.monotonic()
            except (psycopg.Error, OSError):
                await self.close()
        if self._conn is None or self._conn.closed:
            # libpq's connect_timeout bounds each attempt; this bounds them all
            async with asyncio.timeout(self._connect_s):
                self._conn = await psycopg.AsyncConnection.connect(**self._params, autocommit=True)
            self._used = time.monotonic()
        return self._conn


async def _copy(conn: psycopg.AsyncConnection[Any], records: list[AuditRecord]) -> None:
    """:func:`~tabops.store.pgwrite.copy_records`, on an async connection."""
    async with conn.transaction(), conn.cursor() as cursor:
        async with cursor.copy(COPY_REQUESTS) as copy:
            for record in records:
                await copy.write_row(record.request.copy_row())
        async with cursor.copy(COPY_PREDICTIONS) as copy:
            for chunk in copy_text(records):
                await copy.write(chunk)


@contextlib.contextmanager
def _deadline(conn: psycopg.AsyncConnection[Any], seconds: float | None) -> Iterator[None]:
    """Cut the connection's socket if the block is still waiting after ``seconds``."""
    if seconds is None:
        yield
        return
    handle = asyncio.get_running_loop().call_later(seconds, cut_socket, conn.pgconn.socket)
    try:
        yield
    finally:
        handle.cancel()
