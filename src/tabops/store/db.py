"""The SQLAlchemy engine: SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from tabops.config import DatabaseSettings

__all__ = ["create_db_engine", "ping"]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a seed or ingest writes; busy_timeout waits for locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_db_engine(
    url: str, echo: bool = False, timeouts: DatabaseSettings | None = None
) -> Engine:
    """An engine for ``url``; for a SQLite file, its folder is created first.

    Args:
        url: SQLAlchemy URL.
        echo: Log every statement.
        timeouts: For PostgreSQL, the connect, statement and pool timeouts and TCP
            keep-alive of a serving process (so a hung or unreachable database fails fast
            and records go to the spool); None for none (CLI commands, long reads).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if timeouts is None:
        return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)
    connect_args = pg_connect_args(timeouts)
    engine = create_engine(
        url,
        echo=echo,
        # the watchdog pings at checkout under a deadline; pre-ping would wait forever
        pool_pre_ping=False,
        pool_size=10,
        max_overflow=20,
        pool_timeout=timeouts.pool_timeout_s,
        connect_args=connect_args,
    )
    hold = hold_s(timeouts)
    if hold is not None:
        from tabops.store.watchdog import ConnectionWatchdog

        # a server that cannot enforce its own timeout (frozen) is cut by the client
        ConnectionWatchdog(engine, hold_s=hold)
    return engine


def pg_connect_args(timeouts: DatabaseSettings) -> dict[str, Any]:
    """libpq parameters of a serving process's PostgreSQL connections: connect timeout,
    TCP keep-alive and user timeout, statement timeout."""
    connect_args: dict[str, Any] = {
        # libpq takes whole seconds and treats less than 2 as 2
        "connect_timeout": max(2, round(timeouts.connect_timeout_s)),
        "keepalives": 1,
        "keepalives_idle": timeouts.keepalive_idle_s,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        # unacknowledged data on a dead peer: give up like keep-alive would
        "tcp_user_timeout": (timeouts.keepalive_idle_s + 6) * 1000,
    }
    if timeouts.statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={timeouts.statement_timeout_ms}"
    return connect_args


def hold_s(timeouts: DatabaseSettings) -> float | None:
    """How long a serving process's connection may wait on one statement before the client
    cuts it: the server's statement timeout and two seconds, or None without one."""
    if not timeouts.statement_timeout_ms:
        return None
    return timeouts.statement_timeout_ms / 1000 + 2.0


def ping(engine: Engine) -> bool:
    """Whether the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except (SQLAlchemyError, OSError):  # OSError: a socket cut by the watchdog
        return False
