"""What an explanation costs per row over HTTP: `explain=true` against plain scoring.

    python -m bench.explain_http --usecase credit --rows 200 --batch 100 --rounds 5

For each model family asked (default: the spec's logistic regression and
hist_gradient_boosting), trains the use case with that family into a fresh var dir
(SQLite audit store, local MLflow), starts `tabops serve` (one worker, audit on) and, from
one client, times per row: one record per request, and a batch per request, each plain
and with ``?explain=true``, interleaved round after round so that other work on the
machine hits both alike. Reported as the ratio of the best rounds (wall clock: the client
waits for the whole answer, audit commit included), written to
``bench/results/explain-http-<time>.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests.serverproc import ServerProcess, serve_env

from bench.common import REPO, save
from tabops.config import Settings
from tabops.data.datasets import read_source
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import train_usecase
from tabops.scoring.records import api_records
from tabops.spec.files import load_usecase
from tabops.spec.schema import ModelSpec, UseCase
from tabops.store.db import create_db_engine
from tabops.store.training_tables import seed_table


def _train(spec: UseCase, family: str, var_dir: Path) -> tuple[Settings, UseCase]:
    """Seed the use case and register a champion of ``family`` (the spec's params for its
    own family, the family's defaults for another)."""
    params = spec.model.params if family == spec.model.family else {}
    spec = spec.model_copy(update={"model": ModelSpec(family=family, params=params)})  # type: ignore[arg-type]
    settings = Settings(var_dir=var_dir, usecases_dir=REPO / "usecases")
    engine = create_db_engine(settings.database_url_resolved)
    try:
        seed_table(engine, spec, read_source(spec, settings), "seed:bench", replace=True)
        train_usecase(spec, engine, Registry(settings), force=True)
    finally:
        engine.dispose()
    return settings, spec


def _timed(client: httpx.Client, path: str, bodies: list[Any], explain: bool) -> float:
    """Seconds to send each body in turn and read each answer."""
    params = {"explain": "true"} if explain else {}
    start = time.perf_counter()
    for body in bodies:
        response = client.post(path, json=body, params=params)
        response.raise_for_status()
    return time.perf_counter() - start


def bench_family(spec: UseCase, family: str, rows: int, batch: int, rounds: int) -> dict[str, Any]:
    """Time plain and explained calls over HTTP for one model family."""
    with tempfile.TemporaryDirectory(prefix="tabops-bench-explain-http-") as tmp:
        settings, trained = _train(spec, family, Path(tmp) / "var")
        data = read_source(trained, settings)
        records = api_records(trained, data.sample(n=max(rows, batch), random_state=1))
        env = serve_env(
            settings,
            TABOPS_API__USECASES=f'["{spec.name}"]',
            TABOPS_API__MAX_BATCH=str(max(batch, 1000)),
            TABOPS_AUTH__ANONYMOUS_PREDICT="true",
            TABOPS_MONITOR__ENABLED="false",
        )
        modes = {"single": (records[:rows], rows), "batch": ([{"records": records[:batch]}], batch)}
        out: dict[str, Any] = {"family": family}
        with ServerProcess(env, Path(tmp) / "serve.log") as server:
            path = f"/usecases/{spec.name}/predict"
            with httpx.Client(base_url=server.base, timeout=120) as client:
                detail = client.get(f"/usecases/{spec.name}").json()
                out["scoring_path"] = detail["scoring_path"]
                out["explanation"] = detail.get("explanation_reason")
                for mode, (bodies, n) in modes.items():
                    times: dict[str, list[float]] = {"plain": [], "explain": []}
                    _timed(client, path, bodies[:5], False)  # warm up both
                    _timed(client, path, bodies[:5], True)
                    for _ in range(rounds):
                        for kind in times:
                            seconds = _timed(client, path, bodies, kind == "explain")
                            times[kind].append(seconds / n * 1e6)
                    best = {k: min(v) for k, v in times.items()}
                    out[mode] = {
                        "rows": n,
                        "us_per_row_best": best,
                        "us_per_row_median": {k: statistics.median(v) for k, v in times.items()},
                        "ratio_explain_over_plain": best["explain"] / best["plain"],
                    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--usecase", default="credit")
    parser.add_argument("--families", default="logistic_regression,hist_gradient_boosting")
    parser.add_argument("--rows", type=int, default=200, help="records sent one per request")
    parser.add_argument("--batch", type=int, default=100, help="records in the batch request")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spec = load_usecase(REPO / "usecases", args.usecase)
    load_before = os.getloadavg()[0]
    results = []
    for family in args.families.split(","):
        result = bench_family(spec, family, args.rows, args.batch, args.rounds)
        results.append(result)
        for mode in ("single", "batch"):
            r = result[mode]
            best = r["us_per_row_best"]
            print(
                f"{args.usecase} {family:24s} {mode:6s}  wall us/row over HTTP: "
                f"plain {best['plain']:9.1f}  explain=true {best['explain']:9.1f}"
                f"  ratio {r['ratio_explain_over_plain']:5.2f}",
                flush=True,
            )
    path = save(
        "explain-http",
        {
            "usecase": args.usecase,
            "rounds": args.rounds,
            "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
            "results": results,
        },
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
