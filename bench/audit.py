"""What recording every prediction costs: the same server with the audit writer on and off.

    python -m bench.audit --usecase credit --duration 10 --connections 64

Starts `tabops serve` (real processes, loopback only) on the same trained model, drives
each with wrk, and reports requests/s, p50, p99 and the ratio audited / unaudited, on
SQLite and on PostgreSQL (TABOPS_TEST_POSTGRES_URL, a database created and dropped here).
After each audited run it checks that the predictions table holds one row per answer.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool
from tests.serverproc import ServerProcess, serve_env

from bench.common import WrkResult, audit_databases, save, trained_settings, wrk
from tabops.store.schema import predictions


def _count(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        n = int(conn.execute(select(func.count()).select_from(predictions)).scalar_one())
    engine.dispose()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--usecase", default="credit")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TABOPS_X=VALUE",
        help="extra setting for the servers (repeatable), e.g. TABOPS_AUDIT__FLUSH_INTERVAL_MS=2",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("TABOPS_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tabops-bench-audit-"))
    settings = trained_settings(args.usecase, work / "var")
    results: dict[str, dict[str, WrkResult]] = {}
    with audit_databases(work, args.postgres_url) as databases:
        for db, url in databases.items():
            for audit in ("off", "on"):
                env = serve_env(
                    settings,
                    TABOPS_DB__URL=url,
                    TABOPS_AUDIT__ENABLED="true" if audit == "on" else "false",
                    TABOPS_AUDIT__SPOOL_DIR=str(work / f"spool-{db}"),
                    TABOPS_API__USECASES=f'["{args.usecase}"]',
                    TABOPS_AUTH__ANONYMOUS_PREDICT="true",
                    **dict(item.split("=", 1) for item in args.set),
                )
                log = work / f"serve-{db}-{audit}.log"
                with ServerProcess(env, log, workers=args.workers) as server:
                    example = httpx.get(f"{server.base}/usecases/{args.usecase}").json()["example"]
                    before = _count(url) if audit == "on" else 0
                    result = wrk(
                        f"{server.base}/usecases/{args.usecase}/predict",
                        example,
                        args.connections,
                        args.duration,
                    )
                if audit == "on":
                    rows = _count(url) - before
                    ok = result.requests - result.errors
                    # wrk stops mid-flight: answers it counted are all recorded, and at most
                    # one in-flight request per connection more may be
                    assert ok <= rows <= ok + args.connections, (ok, rows)
                results.setdefault(db, {})[audit] = result
                print(
                    f"{db:<10} audit {audit:<3} {result.requests_per_s:>8.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                    f"errors {result.errors}",
                    flush=True,
                )
    ratios = {db: r["on"].requests_per_s / r["off"].requests_per_s for db, r in results.items()}
    print()
    for db, ratio in ratios.items():
        print(f"{db}: audited / unaudited = {ratio:.2f}")
    path = save(
        "audit",
        {
            "usecase": args.usecase,
            "workers": args.workers,
            "connections": args.connections,
            "duration_s": args.duration,
            "results": results,
            "ratio_audited_over_unaudited": ratios,
        },
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
