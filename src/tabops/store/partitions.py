"""Monthly partitions of the audit tables on PostgreSQL (migration 0009).

``prediction_requests`` and ``predictions`` are partitioned by range of their id. Ids are
UUIDv7: their first 48 bits are the Unix milliseconds of their creation, and PostgreSQL
compares ``uuid`` values byte by byte, so a range of ids *is* a range of time. A month's
partition holds the ids from the first possible id of its first millisecond
(``…-0000-0000-0000-000000000000``) to that of the next month. Partitioning by id rather
than by ``created_at`` keeps the primary key on the id alone (a partitioned table's
unique keys must contain the partition key), and a lookup by id is pruned to one
partition without knowing when the prediction was made.

What this gives (measured by ``python -m bench.scale``, docs/performance.md):

- each month's indexes are only as big as that month, so inserts do not slow down as the
  table grows;
- retention drops a month's partition (a catalogue change) instead of deleting its rows
  one by one and leaving the indexes bloated.

A ``DEFAULT`` partition takes whatever falls outside the monthly ones (a record replayed
from the spool after its month was purged, a clock far off), so a write never fails for
want of a partition. :func:`ensure_months` creates the months ahead; the server runs it
at start and then every few hours (:func:`keep_months`). SQLite has no partitions:
everything here is a no-op there.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, delete, text

from tabops.store.schema import feedback

__all__ = [
    "PARTITIONED",
    "Month",
    "drop_month",
    "drop_months_before",
    "ensure_months",
    "id_floor",
    "keep_months",
    "month_of",
    "months",
]

log = logging.getLogger(__name__)

PARTITIONED = ("prediction_requests", "predictions")
"""The tables partitioned by month of their id (on PostgreSQL)."""

AHEAD = 2
"""Months created beyond the current one."""

_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<year>\d{4})(?P<month>\d{2})$")
_LOCK = 0x7AB0_0009
"""Advisory lock key: one process at a time creates or drops partitions."""


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month (UTC)."""

    year: int
    month: int

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    def next(self) -> Month:
        return self.shift(1)

    def shift(self, months: int) -> Month:
        """The month ``months`` later (earlier when negative)."""
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    def suffix(self) -> str:
        return f"p{self.year:04d}{self.month:02d}"


def month_of(when: datetime) -> Month:
    when = when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return Month(when.year, when.month)


def months(first: Month, last: Month) -> list[Month]:
    """Every month from ``first`` to ``last``, both included."""
    out, current = [], first
    while current <= last:
        out.append(current)
        current = current.next()
    return out


def id_floor(when: datetime) -> str:
    """The smallest UUIDv7 of the millisecond ``when`` (a partition bound)."""
    ms = int(when.timestamp() * 1000)
    h = f"{ms:012x}" + "0" * 20
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_partitioned(conn: Connection) -> bool:
    """Whether this database's audit tables are partitioned (PostgreSQL at 0009 or later)."""
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(
        text("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('predictions')")
    ).first()
    return found is not None


def create_month(conn: Connection, table: str, month: Month) -> bool:
    """Create ``table``'s partition of ``month`` unless it exists; True if created.

    Raises:
        sqlalchemy.exc.DBAPIError: the default partition already holds rows of that month
            (PostgreSQL refuses the new partition; the rows stay where they are).
    """
    name = f"{table}_{month.suffix()}"
    if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
        return False
    low, high = id_floor(month.start), id_floor(month.next().start)
    conn.execute(
        text(f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ('{low}') TO ('{high}')")
    )
    return True


def ensure_months(engine: Engine, now: datetime | None = None, ahead: int = AHEAD) -> list[str]:
    """Create the partitions of the current month and the ``ahead`` next ones, where
    missing. Returns the partitions created (none on SQLite)."""
    first = month_of(now or datetime.now(UTC))
    last = first.shift(ahead)
    created: list[str] = []
    with engine.begin() as conn:
        if not is_partitioned(conn):
            return created
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
        for month in months(first, last):
            for table in PARTITIONED:
                try:
                    with conn.begin_nested():  # one refused month must not undo the others
                        if create_month(conn, table, month):
                            created.append(f"{table}_{month.suffix()}")
                except Exception as exc:  # rows of that month are in the default partition
                    log.warning(
                        "audit: cannot create partition %s_%s: %s", table, month.suffix(), exc
                    )
    if created:
        log.info("audit: created partitions %s", ", ".join(created))
    return created


async def keep_months(engine: Engine, interval_s: float = 6 * 3600) -> None:
    """Run :func:`ensure_months` now and every ``interval_s`` (a server may run for
    months; while the database is away, the next round tries again)."""
    while True:
        try:
            await asyncio.to_thread(ensure_months, engine)
        except Exception as exc:
            log.warning("audit: partition upkeep failed: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)


@dataclass(frozen=True)
class Partition:
    """One monthly partition of an audit table."""

    table: str
    name: str
    month: Month


def monthly_partitions(conn: Connection) -> list[Partition]:
    """The monthly partitions of the audit tables, oldest first (empty on SQLite)."""
    if not is_partitioned(conn):
        return []
    rows: Sequence[str] = (
        conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent IN ('predictions'::regclass, 'prediction_requests'::regclass)"
            )
        )
        .scalars()
        .all()
    )
    out = []
    for name in rows:
        match = _NAME.match(name)
        if match and match["table"] in PARTITIONED:
            month = Month(int(match["year"]), int(match["month"]))
            out.append(Partition(match["table"], name, month))
    return sorted(out, key=lambda p: (p.month, p.table))


def drop_month(conn: Connection, partition: Partition) -> int:
    """Drop a partition; returns the rows it held. The caller holds the transaction."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
    rows = int(conn.execute(text(f"SELECT count(*) FROM {partition.name}")).scalar_one())
    conn.execute(text(f"DROP TABLE {partition.name}"))
    return rows


def _shared(conn: Connection, partition: Partition, usecase: str) -> bool:
    """Whether a partition holds rows of another use case (two index probes)."""
    query = text(
        f"SELECT EXISTS (SELECT 1 FROM {partition.name} WHERE usecase < :u OR usecase > :u)"
    )
    return bool(conn.execute(query, {"u": usecase}).scalar())


def drop_months_before(engine: Engine, usecase: str | None, older_than: datetime) -> dict[str, int]:
    """Drop the monthly partitions wholly older than ``older_than`` that hold only rows of
    ``usecase`` (None: of any), with the feedback on their predictions; one transaction
    per month (the retention purge, ``queries.purge``, deletes the rest row by row).

    Returns:
        The rows dropped: ``requests``, ``predictions`` and ``feedback`` (none on SQLite).
    """
    with engine.connect() as conn:
        partitions = [p for p in monthly_partitions(conn) if p.month.next().start <= older_than]
    counts = {"requests": 0, "predictions": 0, "feedback": 0}
    for month in sorted({p.month for p in partitions}):
        group = [p for p in partitions if p.month == month]
        with engine.begin() as conn:
            if usecase is not None and any(_shared(conn, p, usecase) for p in group):
                continue
            low, high = id_floor(month.start), id_floor(month.next().start)
            counts["feedback"] += conn.execute(
                delete(feedback).where(
                    feedback.c.prediction_id >= low, feedback.c.prediction_id < high
                )
            ).rowcount
            for partition in group:
                key = "predictions" if partition.table == "predictions" else "requests"
                counts[key] += drop_month(conn, partition)
    return counts
