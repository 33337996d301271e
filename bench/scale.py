"""The audit trail at scale: does the predictions table still take, find and let go of
rows when it holds ten million of them?

    python -m bench.scale --rows 10000000            # about 10 to 20 minutes on 2 cores
    python -m bench.scale --rows 2000000 --schema 0008   # the layout before partitions

On a fresh PostgreSQL database (``TABOPS_TEST_POSTGRES_URL``'s server; created here and
dropped after) migrated to ``--schema`` (head: monthly partitions of native uuid ids), it

1. measures the audit writer's insert throughput into the empty table: the writer's own
   COPY path, records of one prediction gathered by group commit, and 1,000-row batches;
2. fills the table to ``--rows`` predictions of credit records, spread over ``--months``
   months up to the current one (ids and times of then, ten predictions a request), then
   VACUUM ANALYZE as autovacuum would;
3. measures insert throughput again, into the current month as a running service would;
4. times looking up one prediction by id (the API's query, ``get_prediction``: the row,
   its request and its feedback) on ids sampled from every month, and the bare primary
   key lookup;
5. times the retention purge of the oldest month (``queries.purge``).

Filling is bounded by ``--max-fill-minutes``: a run that hits it reports the rows reached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.common import REPO, postgres_database, save
from tabops.config import AuditSettings, Settings
from tabops.data.datasets import read_source
from tabops.ids import uuid7_many
from tabops.scoring.records import api_records
from tabops.spec.files import load_usecase
from tabops.store.audit import AuditWriter
from tabops.store.db import create_db_engine
from tabops.store.migrate import upgrade
from tabops.store.monitoring import live_window
from tabops.store.partitions import Month, create_month, month_of, months
from tabops.store.pgwrite import copy_records
from tabops.store.queries import (
    PredictionFilter,
    PurgeCounts,
    get_prediction,
    list_predictions,
    purge,
)
from tabops.store.rows import AuditRecord, audit_record
from tabops.store.summary import parse_window, summarize

PER_REQUEST = 10
"""Predictions per request row while filling."""


def _features(n: int) -> list[dict[str, Any]]:
    settings = Settings(var_dir=Path(tempfile.mkdtemp()) / "var", usecases_dir=REPO / "usecases")
    spec = load_usecase(settings.usecases_dir, "credit")
    data = read_source(spec, settings)
    return api_records(spec, data.sample(n=n, random_state=0, replace=True))


def _record(
    features: list[dict[str, Any]], ms: int | None = None, when: datetime | None = None
) -> AuditRecord:
    n = len(features)
    ids = uuid7_many(n + 1, ms)
    return audit_record(
        request_id=ids[0],
        created_at=when or datetime.now(UTC),
        usecase="credit",
        endpoint="/usecases/credit/predict",
        caller="bench",
        client_request_id=None,
        model_version="1",
        latency_ms=0.4,
        ids=ids[1:],
        features=features,
        labels=["good"] * n,
        probabilities=[{"bad": 0.21, "good": 0.79}] * n,
        scores=[0.21] * n,
        threshold=0.5,
    )


def _insert_rate(engine: Engine, spool: Path, features: list[dict[str, Any]]) -> dict[str, float]:
    """Rows/s through the audit writer: 12,000 one-prediction records sent at once (group
    commit gathers them), and 40 records of 1,000 predictions (a few seconds each)."""

    async def send(records: list[AuditRecord]) -> float:
        writer = AuditWriter(engine, AuditSettings(), spool)
        await writer.start()
        try:
            start = time.perf_counter()
            await asyncio.gather(*(writer.record(r) for r in records))
            elapsed = time.perf_counter() - start
        finally:
            await writer.stop()
        assert writer.stats().spooled == 0, "the database refused the bench's records"
        return sum(len(r.predictions) for r in records) / elapsed

    singles = [_record([features[i % len(features)]]) for i in range(12000)]
    batches = [_record(features[:1000]) for _ in range(40)]
    return {
        "single_rows_per_s": round(asyncio.run(send(singles))),
        "batch_rows_per_s": round(asyncio.run(send(batches))),
    }


def _best_of(
    engine: Engine, spool: Path, features: list[dict[str, Any]], runs: int
) -> dict[str, Any]:
    rates = [_insert_rate(engine, spool, features) for _ in range(runs)]
    return {key: max(r[key] for r in rates) for key in rates[0]} | {"runs": rates}


def _fill(
    engine: Engine, features: list[dict[str, Any]], span: list[Month], rows: int, limit_s: float
) -> tuple[int, list[str], float]:
    """COPY ``rows`` predictions spread evenly over the months of ``span`` (each month's
    rows spaced over its first 28 days); returns rows written, sampled ids, seconds."""
    per_month = rows // len(span)
    doubled = features * 2  # a request's records: a window over the sample
    sampled: list[str] = []
    written = 0
    start = time.perf_counter()
    chunk = 200  # requests per transaction: 2,000 predictions
    for month in span:
        base_ms = int(month.start.timestamp() * 1000)
        # up to the 28th, or up to now in the current month: nothing recorded ahead of time
        span_ms = min(28 * 86_400_000, int(time.time() * 1000) - base_ms)
        step_ms = span_ms // max(1, per_month // PER_REQUEST)
        done = 0
        while done < per_month:
            records = []
            for _ in range(chunk):
                ms = base_ms + (done // PER_REQUEST) * step_ms
                when = datetime.fromtimestamp(ms / 1000, UTC)
                offset = done % len(features)
                picked = doubled[offset : offset + PER_REQUEST]
                records.append(_record(picked, ms, when))
                done += PER_REQUEST
                if done >= per_month:
                    break
            with engine.begin() as conn:
                copy_records(conn, records)
            written += sum(len(r.predictions) for r in records)
            sampled.append(random.choice(records).predictions[0].id)
            if time.perf_counter() - start > limit_s:
                return written, sampled, time.perf_counter() - start
        print(f"  filled {month.year}-{month.month:02d}: {written:,} rows", flush=True)
    return written, sampled, time.perf_counter() - start


def _lookups(engine: Engine, ids: list[str], api_query: bool, n: int = 500) -> dict[str, Any]:
    """Milliseconds to find one prediction: the API's query (not on 0008's text ids, which
    today's code does not bind) and the bare primary-key lookup."""
    chosen = random.Random(1).choices(ids, k=n)
    api, bare = [], []
    for pid in chosen if api_query else ():
        start = time.perf_counter()
        get_prediction(engine, "credit", pid)
        api.append((time.perf_counter() - start) * 1000)
    with engine.connect() as conn:
        for pid in chosen:
            start = time.perf_counter()
            conn.execute(text("SELECT * FROM predictions WHERE id = :i"), {"i": pid}).one()
            bare.append((time.perf_counter() - start) * 1000)

    def p(values: list[float], q: float) -> float | None:
        return round(statistics.quantiles(values, n=100)[int(q) - 1], 3) if values else None

    return {
        "get_prediction_p50_ms": p(api, 50),
        "get_prediction_p99_ms": p(api, 99),
        "primary_key_p50_ms": p(bare, 50),
        "primary_key_p99_ms": p(bare, 99),
        "lookups": n,
    }


def _queries(engine: Engine) -> dict[str, float]:
    """Milliseconds (best of three) of the other documented queries on the full table:
    the monitor's live window, a listing page filtered by label and version, the
    dashboard's one-day summary."""
    spec = load_usecase(REPO / "usecases", "credit")
    calls: dict[str, Callable[[], object]] = {
        "live_window_1000_ms": lambda: live_window(engine, "credit", "1", 1000),
        "listing_page_by_label_ms": lambda: list_predictions(
            engine, "credit", PredictionFilter(label="good", model_version="1"), 100
        ),
        "summary_24h_ms": lambda: summarize(
            engine, "credit", spec.target.classes, spec.positive_class, parse_window("24h")
        ),
    }
    out = {}
    for name, call in calls.items():
        took = []
        for _ in range(3):
            start = time.perf_counter()
            call()
            took.append((time.perf_counter() - start) * 1000)
        out[name] = round(min(took), 2)
    return out


def _sizes(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        total = conn.execute(
            text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), "
                "coalesce(sum(pg_indexes_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.relkind = 'r' AND (c.relname = 'predictions' "
                "OR c.relname LIKE 'predictions\\_%')"
            )
        ).one()
        rows: int = conn.execute(text("SELECT count(*) FROM predictions")).scalar_one()
    return {
        "rows": int(rows),
        "table_and_indexes_mb": round(total[0] / 2**20),
        "indexes_mb": round(total[1] / 2**20),
    }


def _purge_0008(engine: Engine, cutoff: datetime) -> PurgeCounts:
    """The purge as it was before partitions (text ids): batched deletes."""
    n_predictions = n_requests = 0
    for table, key in (("predictions", "p"), ("prediction_requests", "r")):
        while True:
            with engine.begin() as conn:
                deleted = conn.execute(
                    text(
                        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                        "WHERE usecase = 'credit' AND created_at < :c LIMIT 5000)"
                    ),
                    {"c": cutoff},
                ).rowcount
            if not deleted:
                break
            if key == "p":
                n_predictions += deleted
            else:
                n_requests += deleted
    return PurgeCounts(requests=n_requests, predictions=n_predictions, feedback=0)


@contextmanager
def _database(url: str, schema: str) -> Iterator[Engine]:
    with postgres_database(url, "scale") as database:
        engine = create_db_engine(database)
        upgrade(engine, schema)
        try:
            yield engine
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--months", type=int, default=10, help="months the rows span")
    parser.add_argument("--schema", default="head", help="audit schema revision (0008: before)")
    parser.add_argument("--runs", type=int, default=3, help="insert measurements, best kept")
    parser.add_argument("--max-fill-minutes", type=float, default=40)
    parser.add_argument("--postgres-url", default=os.environ.get("TABOPS_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    if not args.postgres_url:
        parser.error("needs a PostgreSQL server: --postgres-url or TABOPS_TEST_POSTGRES_URL")

    features = _features(2000)
    spool = Path(tempfile.mkdtemp(prefix="tabops-bench-scale-"))
    now = month_of(datetime.now(UTC))
    first = now.shift(1 - args.months)
    span = months(first, now)
    with _database(args.postgres_url, args.schema) as engine:
        partitioned = engine.dialect.name == "postgresql" and args.schema != "0008"
        if partitioned:
            with engine.begin() as conn:  # as a service that has run for these months
                for month in span:
                    for table in ("prediction_requests", "predictions"):
                        create_month(conn, table, month)
        print(f"insert rate, empty table ({args.schema})", flush=True)
        empty = _best_of(engine, spool, features, args.runs)
        print(f"  {empty}", flush=True)
        print(f"filling to {args.rows:,} rows over {len(span)} months", flush=True)
        filled, ids, fill_s = _fill(engine, features, span, args.rows, args.max_fill_minutes * 60)
        vacuum_start = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE predictions"))
            conn.execute(text("VACUUM ANALYZE prediction_requests"))
        vacuum_s = time.perf_counter() - vacuum_start
        sizes = _sizes(engine)
        print(f"  {sizes} in {fill_s:.0f} s (+ vacuum {vacuum_s:.0f} s)", flush=True)
        print("insert rate, full table", flush=True)
        full = _best_of(engine, spool, features, args.runs)
        print(f"  {full}", flush=True)
        lookups = _lookups(engine, ids, api_query=args.schema != "0008")
        print(f"lookups: {lookups}", flush=True)
        queries = _queries(engine) if args.schema != "0008" else {}
        print(f"queries: {queries}", flush=True)
        cutoff = first.next().start  # everything of the oldest month
        start = time.perf_counter()
        counts = (
            purge(engine, "credit", cutoff)
            if args.schema != "0008"
            else _purge_0008(engine, cutoff)
        )
        purge_s = time.perf_counter() - start
        print(f"purge of {first.year}-{first.month:02d}: {counts} in {purge_s:.3f} s", flush=True)
    ratios = {
        key: round(full[key] / empty[key], 3) for key in ("single_rows_per_s", "batch_rows_per_s")
    }
    path = save(
        "scale",
        {
            "schema": args.schema,
            "partitioned": partitioned,
            "rows_asked": args.rows,
            "months": len(span),
            "fill": {"rows": filled, "seconds": round(fill_s), "vacuum_seconds": round(vacuum_s)},
            "sizes": sizes,
            "insert_empty": empty,
            "insert_full": full,
            "insert_full_over_empty": ratios,
            "lookup": lookups,
            "queries": queries,
            "purge_oldest_month": {
                "seconds": round(purge_s, 3),
                "predictions": counts.predictions,
                "requests": counts.requests,
                "feedback": counts.feedback,
            },
            "cutoff": cutoff.isoformat(),
        },
    )
    print(f"insert at {filled:,} rows / empty: {ratios}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
