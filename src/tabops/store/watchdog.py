"""A client-side deadline on every pooled PostgreSQL connection of a serving process.

PostgreSQL's ``statement_timeout`` is enforced by the server: a server that is frozen (a
stuck host or storage, SIGSTOP) or a network that drops packets without a reset never
answers, and a query on an open connection waits for as long as the kernel keeps the
socket. Requests then hang, the spool is never used and ``/ready`` hangs too.

So while a connection is checked out of the pool, a watchdog thread holds its deadline;
past it, the watchdog shuts the connection's socket down, the blocked call fails at once
with a connection error, the pool discards the connection and the caller falls back
(the audit writer spools). At checkout, a connection that sat idle in the pool for more
than ``idle_s`` is pinged under a short deadline (SQLAlchemy's ``pool_pre_ping`` would wait
forever on a frozen server); one given back a moment ago is not: under load that ping was
two round trips (the query, then the rollback of the transaction it opened) on each of
the audit writer's transactions, and the connection's deadline covers a frozen server
either way.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from sqlalchemy import Engine, event, exc

__all__ = ["IDLE_S", "PING_S", "ConnectionWatchdog", "cut_socket"]

log = logging.getLogger(__name__)

IDLE_S = 1.0
"""A connection idle for longer is pinged before it is used again."""

PING_S = 1.0
"""Deadline of that ping."""


class ConnectionWatchdog:
    """Shuts down the socket of a connection held past its deadline.

    Args:
        engine: A PostgreSQL engine (psycopg 3) whose pool this watches.
        hold_s: Longest a connection may stay checked out (a transaction's bound).
        ping_s: Deadline of the liveness ping at checkout.
        tick_s: How often deadlines are checked.
        idle_s: A connection idle in the pool for longer is pinged at checkout.
    """

    def __init__(
        self,
        engine: Engine,
        hold_s: float,
        ping_s: float = PING_S,
        tick_s: float = 0.1,
        idle_s: float = IDLE_S,
    ) -> None:
        self.hold_s = hold_s
        self.ping_s = ping_s
        self.tick_s = tick_s
        self.idle_s = idle_s
        self._returned: dict[int, float] = {}
        """When each connection was last given back to the pool, healthy."""
        self.fired = 0
        """Connections cut so far."""
        self._deadlines: dict[int, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tabops-db-watchdog", daemon=True)
        self._thread.start()
        event.listen(engine.pool, "checkout", self._checkout)
        event.listen(engine.pool, "checkin", self._release)
        event.listen(engine.pool, "close", self._forget)
        event.listen(engine.pool, "invalidate", self._invalidated)
        event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def _arm(self, dbapi_connection: Any, seconds: float) -> None:
        fd = dbapi_connection.pgconn.socket
        with self._lock:
            self._deadlines[id(dbapi_connection)] = (time.monotonic() + seconds, fd)

    def _release(self, dbapi_connection: Any, _record: Any = None) -> None:
        with self._lock:
            self._deadlines.pop(id(dbapi_connection), None)
            self._returned[id(dbapi_connection)] = time.monotonic()

    def _forget(self, dbapi_connection: Any, _record: Any = None) -> None:
        with self._lock:
            self._deadlines.pop(id(dbapi_connection), None)
            self._returned.pop(id(dbapi_connection), None)

    def _invalidated(self, dbapi_connection: Any, _record: Any, _exc: Any) -> None:
        self._forget(dbapi_connection)

    def _checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        with self._lock:
            returned = self._returned.get(id(dbapi_connection))
        if returned is not None and time.monotonic() - returned < self.idle_s:
            self._arm(dbapi_connection, self.hold_s)  # in use a moment ago: no ping
            return
        # the pessimistic ping of SQLAlchemy's docs, under a deadline: raising
        # DisconnectionError makes the pool discard this connection and open a new one
        self._arm(dbapi_connection, self.ping_s)
        try:
            dbapi_connection.execute("SELECT 1")
            if dbapi_connection.info.transaction_status != 0:  # leave it idle, as found
                dbapi_connection.rollback()
        except Exception as error:
            self._forget(dbapi_connection)
            raise exc.DisconnectionError(f"connection failed its ping: {error}") from error
        self._arm(dbapi_connection, self.hold_s)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            now = time.monotonic()
            with self._lock:
                expired = [(k, fd) for k, (due, fd) in self._deadlines.items() if due <= now]
                for key, _ in expired:
                    del self._deadlines[key]
            for _, fd in expired:
                self._cut(fd)

    def _cut(self, fd: int) -> None:
        if cut_socket(fd):
            self.fired += 1

    def close(self) -> None:
        """Stop the thread (the engine's listeners stay, inert)."""
        self._stop.set()
        self._thread.join(timeout=5)


def cut_socket(fd: int) -> bool:
    """Shut down the socket of a connection held past its deadline: the call blocked on it
    fails at once with a connection error. Returns whether a socket was cut."""
    try:
        # shutdown acts on the socket itself, whichever descriptor names it; the
        # duplicate is closed, the connection's own descriptor stays for psycopg
        sock = socket.socket(fileno=socket.dup(fd))
    except OSError:
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    finally:
        sock.close()
    log.warning("database connection held past its deadline: cut")
    return True
