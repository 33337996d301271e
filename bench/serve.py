"""Serving throughput: tabops (audit on) against `mlflow models serve` on the same model.

    python -m bench.serve --usecase credit --duration 8

Trains the use case into a temporary var dir, then starts, as real processes on loopback:
tabops with the audit trail on (SQLite, and PostgreSQL when TABOPS_TEST_POSTGRES_URL is
set, in a database created and dropped here) and `mlflow models serve` on the very same
registered model version, each with the same number of workers. wrk drives each at every
concurrency given; the table shows req/s, p50, p99, errors, RSS per worker and the ratio
of tabops to each peer. It also measures 1,000-record batches over HTTP to tabops and the
in-process scorer alone (compiled fast path against the scikit-learn pipeline), and saves
everything as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tests.serverproc import ServerProcess, free_port, serve_env

from bench.common import WrkResult, audit_databases, save, settle_database, trained_settings
from bench.common import wrk as wrk
from bench.procs import peer_process, worker_rss
from bench.profile import profile
from bench.reference import APPS, reference_server
from tabops.config import Settings
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.versions import LoadedModel
from tabops.scoring.base import PipelineScorer
from tabops.scoring.parity import compile_scorer
from tabops.scoring.records import records_to_frame, reference_records


def jsonable(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record with numpy scalars turned into plain JSON values."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and np.isnan(value):
            value = None
        out[key] = value
    return out


@contextmanager
def mlflow_server(
    settings: Settings, usecase: str, version: str, workers: int, log: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`mlflow models serve` on a registered version, ready to answer on loopback.

    Args:
        settings: The trained environment; its MLflow store is ``var_dir/mlflow.db``.
        usecase: The registered model's name.
        version: The registered version to serve (the one tabops serves).
        workers: Worker processes.
        log: Where the server's output goes.

    Yields:
        The server's base URL and its process (the leader of its own process group).
    """
    port = free_port()
    db = f"sqlite:///{settings.var_dir / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": db, "MLFLOW_REGISTRY_URI": db}
    # mlflow runs `uvicorn` by name: this venv's bin comes first, activated or not
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    command = [
        mlflow,
        "models",
        "serve",
        "-m",
        f"models:/{usecase}/{version}",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "--workers",
        str(workers),
    ]
    with peer_process(command, env, port, "/ping", log) as started:
        yield started


BENTO_SERVICE = """
import json
import os

import bentoml
import numpy as np
import pandas as pd
import skops.io

MODEL = os.environ["BENCH_MODEL"]
KINDS = json.loads(os.environ["BENCH_KINDS"])


@bentoml.service(workers=int(os.environ["BENCH_WORKERS"]))
class Bench:
    def __init__(self) -> None:
        self.pipeline = skops.io.load(MODEL, trusted=skops.io.get_untrusted_types(file=MODEL))

    @bentoml.api
    def predict(self, records: list[dict]) -> list[list[float]]:
        frame = pd.DataFrame(
            {
                name: np.array(
                    [np.nan if r.get(name) is None else r[name] for r in records],
                    dtype=object if kind == "category" else float,
                )
                for name, kind in KINDS.items()
            }
        )
        return self.pipeline.predict_proba(frame).tolist()
"""


@contextmanager
def bentoml_server(
    python: str, settings: Settings, loaded: LoadedModel, workers: int, work: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A minimal BentoML service on the same skops pipeline, in its own venv.

    Args:
        python: The python of a venv holding bentoml, scikit-learn and skops.
        settings: The trained environment holding the registered ``model.skops``.
        loaded: The loaded model (its spec gives the feature types).
        workers: Worker processes.
        work: A scratch directory for the service file, BENTOML_HOME and the log.

    Yields:
        The server's base URL and its process (the leader of its own process group).
    """
    model = next(settings.var_dir.rglob("model.skops"))
    service = work / "bento"
    service.mkdir(exist_ok=True)
    (service / "service.py").write_text(BENTO_SERVICE)
    port = free_port()
    env = {
        **os.environ,
        "BENCH_MODEL": str(model),
        "BENCH_KINDS": json.dumps({f.name: f.type for f in loaded.spec.features}),
        "BENCH_WORKERS": str(workers),
        "BENTOML_HOME": str(work / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    bentoml = os.path.join(os.path.dirname(os.path.abspath(python)), "bentoml")  # symlinks kept
    command = [bentoml, "serve", "service:Bench", "--host", "127.0.0.1", "--port", str(port)]
    with peer_process(command, env, port, "/readyz", work / "bentoml.log", cwd=service) as started:
        yield started


def sweep(
    name: str, url: str, body: dict[str, Any], pid: int, levels: list[int], duration: int
) -> dict[str, Any]:
    """wrk at each concurrency level, then the workers' RSS (after the load).

    Args:
        name: The label printed on each line.
        url: Where to POST.
        body: The JSON body of every request.
        pid: The server's root process.
        levels: wrk connection counts.
        duration: Seconds per run.

    Returns:
        ``{"runs": {concurrency: WrkResult}, "memory": worker_rss(pid)}``.
    """
    runs: dict[str, WrkResult] = {}
    for c in levels:
        runs[str(c)] = result = wrk(url, body, c, duration)
        print(
            f"  {name:<18} c={c:<3} {result.requests_per_s:>8.0f} req/s  "
            f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:8.2f} ms  errors {result.errors}",
            flush=True,
        )
    return {"runs": runs, "memory": worker_rss(pid)}


def stage_profile(url: str, body: dict[str, Any], root: int, args: argparse.Namespace) -> Any:
    """The per-stage profile of a tabops server's workers at the highest concurrency."""
    pids = worker_rss(root)["worker_pids"]
    c = max(args.concurrency)
    print(f"  profiling {len(pids)} workers at c={c} (py-spy)", flush=True)
    try:
        return profile(url, body, pids, c, args.duration)
    except RuntimeError as exc:
        print(f"  profile skipped: {exc}", flush=True)
        return {"error": str(exc)}


def batch_run(
    url: str, batch: list[dict[str, Any]], connections: int, duration: int
) -> dict[str, Any]:
    """wrk posting ``{"records": batch}``: the rows scored per second over HTTP."""
    result = wrk(url, {"records": batch}, connections, duration)
    rows_per_s = result.requests_per_s * len(batch)
    print(
        f"  batch of {len(batch)}, c={connections}: {rows_per_s:,.0f} rows/s  "
        f"p50 {result.p50_ms:.1f} ms  p99 {result.p99_ms:.1f} ms  errors {result.errors}",
        flush=True,
    )
    return {
        "rows_per_request": len(batch),
        "connections": connections,
        "wrk": result,
        "rows_per_s": rows_per_s,
    }


def per_row_us(fn: Callable[[], Any], rows: int, seconds: float = 1.5) -> float:
    """Microseconds per row of ``fn`` (which scores ``rows`` rows), best of repeated runs."""
    fn()
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return best / rows * 1e6


def scorer_timings(loaded: LoadedModel, records: list[dict[str, Any]]) -> dict[str, Any]:
    """In-process scoring cost, µs/row, single record and a 1,000-row batch.

    Args:
        loaded: The model, as ``Registry.load`` gives it.
        records: Validated records (the first 1,000 make the batch).

    Returns:
        The compiled scorer's reason and µs/row for both paths and both sizes.
    """
    fast, reason = compile_scorer(
        loaded.spec, loaded.pipeline, loaded.decision, loaded.version, loaded.reference
    )
    slow = PipelineScorer(loaded.spec, loaded.pipeline, loaded.decision, loaded.version)
    batch = records[:1000]
    out: dict[str, Any] = {"scoring_reason": reason, "batch_rows": len(batch)}
    for label, scorer in (("compiled", fast), ("pipeline", slow)):
        out[label] = {
            "single_us_per_row": per_row_us(partial(scorer.score, batch[:1]), 1),
            "batch_us_per_row": per_row_us(partial(scorer.score, batch), len(batch)),
        }
    return out


def frame_rows(loaded: LoadedModel, records: list[dict[str, Any]]) -> list[list[Any]]:
    """Records as rows typed like the model's MLflow signature: str categories, doubles."""
    kinds = {f.name: f.type for f in loaded.spec.features}
    return [
        [r[c] if kinds[c] == "category" else float(r[c]) for c in loaded.spec.feature_names]
        for r in records
    ]


def complete(loaded: LoadedModel, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with every feature present (the MLflow signature marks all required)."""
    return [r for r in records if all(r.get(c) is not None for c in loaded.spec.feature_names)]


def check_answers(got: list[Any], loaded: LoadedModel, records: list[dict[str, Any]]) -> int:
    """How many answers equal the pipeline's own: labels, or class probabilities.

    Args:
        got: A server's answers, one per record (a label, or a list of probabilities).
        loaded: The model whose pipeline gives the expected answers.
        records: The records that were sent.

    Returns:
        The number of answers equal to the pipeline's.
    """
    frame = records_to_frame(loaded.spec, records)
    if got and isinstance(got[0], list):
        want = loaded.pipeline.predict_proba(frame)
        return sum(bool(np.allclose(a, b, atol=1e-9)) for a, b in zip(got, want, strict=True))
    labels = [str(x) for x in loaded.pipeline.predict(frame)]
    return sum(str(a) == b for a, b in zip(got, labels, strict=True))


def check_mlflow(base: str, loaded: LoadedModel, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Ask the mlflow server about 200 records; its answers must equal the pipeline's.

    Args:
        base: The server's base URL.
        loaded: The model it serves.
        records: Validated records; the first 200 complete ones are sent.

    Returns:
        How many rows were checked and agreed, and one answer as an example.

    Raises:
        RuntimeError: the server refused the request or disagreed with the pipeline.
    """
    sample = complete(loaded, records)[:200]
    response = httpx.post(
        f"{base}/invocations",
        json={
            "dataframe_split": {
                "columns": loaded.spec.feature_names,
                "data": frame_rows(loaded, sample),
            }
        },
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"/invocations answered {response.status_code}: {response.text[:500]}")
    got = response.json()["predictions"]
    agree = check_answers(got, loaded, sample)
    print(f"  mlflow answers: {agree}/{len(sample)} equal the pipeline's, e.g. {got[0]}")
    if agree != len(sample):
        raise RuntimeError(f"mlflow models serve disagrees with the pipeline: {got[:3]}")
    return {"rows_checked": len(sample), "equal": agree, "answer_example": got[0]}


def main() -> None:
    """Run the benchmark: see the module docstring and ``--help``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--usecase", default="credit")
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--batch-connections", type=int, default=6)
    parser.add_argument("--no-mlflow", action="store_true", help="skip `mlflow models serve`")
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the empty FastAPI and Starlette routes (the framework's own cost)",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the per-stage profile (py-spy)"
    )
    parser.add_argument(
        "--no-unaudited-batch",
        action="store_true",
        help="skip the batch run against a server with the audit trail off",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (var dir, server logs) at the end"
    )
    parser.add_argument(
        "--bentoml-python",
        default=os.environ.get("BENCH_BENTOML_PYTHON", ""),
        help="python of a venv with bentoml, scikit-learn and skops: adds a BentoML peer",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TABOPS_X=VALUE",
        help="extra setting for the tabops servers (repeatable)",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("TABOPS_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tabops-bench-serve-"))
    settings = trained_settings(args.usecase, work / "var")
    loaded = Registry(settings).load(args.usecase)
    records = [jsonable(r) for r in reference_records(loaded.spec, loaded.reference)]
    batch = [records[i % len(records)] for i in range(args.batch_rows)]

    print("in-process scorer", flush=True)
    scorer = scorer_timings(loaded, batch)
    for label in ("compiled", "pipeline"):
        t = scorer[label]
        print(
            f"  {label:<9} single {t['single_us_per_row']:9.1f} µs/row   "
            f"batch {t['batch_us_per_row']:7.2f} µs/row"
        )

    servers: dict[str, dict[str, Any]] = {}
    batches: dict[str, Any] = {}
    stages: dict[str, Any] = {}
    info: dict[str, Any] = {}
    example: dict[str, Any] = loaded.example()
    admin_key = secrets.token_urlsafe(32)

    def tabops_env(**extra: str) -> dict[str, str]:
        """A tabops server's environment: this use case, big batches, anonymous predictions
        (as the peers serve them), an admin key to read the use case, then ``--set``."""
        base = {
            "TABOPS_API__USECASES": f'["{args.usecase}"]',
            "TABOPS_API__MAX_BATCH": str(max(1000, args.batch_rows)),
            "TABOPS_AUTH__ANONYMOUS_PREDICT": "true",
            "TABOPS_AUTH__ADMIN_KEY": admin_key,
        }
        return serve_env(settings, **(base | extra | dict(s.split("=", 1) for s in args.set)))

    with audit_databases(work, args.postgres_url) as databases:
        for db, url in databases.items():
            env = tabops_env(
                TABOPS_DB__URL=url,
                TABOPS_AUDIT__ENABLED="true",
                TABOPS_AUDIT__SPOOL_DIR=str(work / f"spool-{db}"),
            )
            print(f"tabops, audit on {db}, {args.workers} workers", flush=True)
            with ServerProcess(env, work / f"serve-{db}.log", workers=args.workers) as server:
                assert server.proc is not None
                info = httpx.get(
                    f"{server.base}/usecases/{args.usecase}", headers={"X-API-Key": admin_key}
                ).json()
                example = info.get("example") or loaded.example()
                predict = f"{server.base}/usecases/{args.usecase}/predict"
                answer = httpx.post(predict, json={"records": batch}, timeout=60)
                answer.raise_for_status()
                servers[f"tabops-{db}"] = sweep(
                    f"tabops ({db})",
                    predict,
                    example,
                    server.proc.pid,
                    args.concurrency,
                    args.duration,
                )
                batches[db] = batch_run(predict, batch, args.batch_connections, args.duration)
                if not args.no_profile and db == ("postgresql" if args.postgres_url else "sqlite"):
                    stages[db] = stage_profile(predict, example, server.proc.pid, args)
            settle_database(url)
        if not args.no_unaudited_batch:
            # the same batches with the audit trail off: what the HTTP path itself sustains
            env = tabops_env(TABOPS_AUDIT__ENABLED="false")
            print(f"tabops, audit off, {args.workers} workers (batches only)", flush=True)
            with ServerProcess(env, work / "serve-unaudited.log", workers=args.workers) as server:
                predict = f"{server.base}/usecases/{args.usecase}/predict"
                httpx.post(predict, json={"records": batch}, timeout=60).raise_for_status()
                batches["unaudited"] = batch_run(
                    predict, batch, args.batch_connections, args.duration
                )

    if not args.no_reference:
        for name in APPS:
            print(f"{name} route (uvicorn, {args.workers} workers, same body)", flush=True)
            with reference_server(name, args.workers, work / f"{name}.log") as (url, proc):
                servers[name] = sweep(name, url, example, proc.pid, args.concurrency, args.duration)

    peers: dict[str, Any] = {}
    if not args.no_mlflow:
        print(f"mlflow models serve, models:/{args.usecase}/{loaded.version}", flush=True)
        try:
            with mlflow_server(
                settings, args.usecase, loaded.version, args.workers, work / "mlflow.log"
            ) as (base, proc):
                check = check_mlflow(base, loaded, records)
                body = {
                    "dataframe_split": {
                        "columns": loaded.spec.feature_names,
                        "data": frame_rows(loaded, [example]),
                    }
                }
                servers["mlflow"] = sweep(
                    "mlflow models serve",
                    f"{base}/invocations",
                    body,
                    proc.pid,
                    args.concurrency,
                    args.duration,
                )
                servers["mlflow"]["check"] = check
        except RuntimeError as exc:
            print(f"  mlflow models serve skipped: {exc}", flush=True)
            peers["mlflow"] = {"error": str(exc)}

    if args.bentoml_python:
        print("bentoml serve (minimal service on the same skops pipeline)", flush=True)
        try:
            with bentoml_server(args.bentoml_python, settings, loaded, args.workers, work) as (
                base,
                proc,
            ):
                sample = records[:200]
                response = httpx.post(f"{base}/predict", json={"records": sample}, timeout=30)
                response.raise_for_status()
                agree = check_answers(response.json(), loaded, sample)
                print(f"  bentoml answers: {agree}/{len(sample)} equal the pipeline's")
                if agree != len(sample):
                    raise RuntimeError("bentoml disagrees with the pipeline")
                servers["bentoml"] = sweep(
                    "bentoml",
                    f"{base}/predict",
                    {"records": [example]},
                    proc.pid,
                    args.concurrency,
                    args.duration,
                )
                servers["bentoml"]["check"] = {"rows_checked": len(sample), "equal": agree}
        except (RuntimeError, httpx.HTTPError) as exc:
            print(f"  bentoml skipped: {exc}", flush=True)
            peers["bentoml"] = {"error": str(exc)}

    main_db = "postgresql" if "postgresql" in databases else "sqlite"
    ours = servers[f"tabops-{main_db}"]["runs"]
    ratios = {
        peer: {c: ours[c].requests_per_s / r.requests_per_s for c, r in s["runs"].items()}
        for peer, s in servers.items()
        if not peer.startswith("tabops")
    }
    print()
    print(table(servers, ratios, main_db, args.concurrency))
    for db, found in stages.items():
        print(f"\nwhere one audited prediction's CPU time goes (tabops, audit on {db}):")
        print(found.table())
    path = save(
        "serve",
        {
            "usecase": args.usecase,
            "workers": args.workers,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "scoring_path": info.get("scoring_path"),
            "scoring_reason": info.get("scoring_reason"),
            "servers": servers,
            "ratios_tabops_over_peer": {"tabops": f"tabops-{main_db}", **ratios},
            "peers_skipped": peers,
            "batch_http": batches,
            "stages": stages,
            "scorer_in_process": scorer,
        },
    )
    print(f"written {path}")
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def table(
    servers: dict[str, dict[str, Any]],
    ratios: dict[str, dict[str, float]],
    main_db: str,
    levels: list[int],
) -> str:
    """One text table: every server at every concurrency, with tabops / peer ratios.

    Args:
        servers: Each server's runs and memory, as :func:`sweep` returns them.
        ratios: tabops req/s over each peer's, per concurrency.
        main_db: The audit database whose tabops server the ratios use.
        levels: The concurrency levels, in order.

    Returns:
        The table, one line per server and concurrency.
    """
    lines = [
        f"{'server':<22}{'c':>4}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'RSS/worker MB':>15}{'PSS/worker MB':>15}  tabops({main_db})/server",
    ]
    for name, s in servers.items():
        for c in levels:
            r = s["runs"][str(c)]
            ratio = f"{ratios[name][str(c)]:.1f}x" if name in ratios else ""
            lines.append(
                f"{name:<22}{c:>4}{r.requests_per_s:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
                f"{r.errors:>8}{s['memory']['rss_per_worker_mb']:>15.0f}"
                f"{s['memory'].get('pss_per_worker_mb', 0):>15.0f}  {ratio}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
