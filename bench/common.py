"""Shared benchmark plumbing: a trained environment, wrk runs, machine description."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tabops.config import Settings
from tabops.data.datasets import read_source
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import train_usecase
from tabops.spec.files import load_usecase
from tabops.store.db import create_db_engine
from tabops.store.training_tables import seed_table

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def trained_settings(usecase: str, var_dir: Path) -> Settings:
    """Seed and train one use case into a fresh var dir (SQLite + local MLflow)."""
    settings = Settings(var_dir=var_dir, usecases_dir=REPO / "usecases")
    spec = load_usecase(settings.usecases_dir, usecase)
    engine = create_db_engine(settings.database_url_resolved)
    seed_table(engine, spec, read_source(spec, settings), "seed:bench", replace=True)
    train_usecase(spec, engine, Registry(settings))
    engine.dispose()
    return settings


@dataclass
class WrkResult:
    requests_per_s: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int
    duration_s: float


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    payload = {"benchmark": name, "at": stamp, "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=lambda o: asdict(o)) + "\n")
    return path


def parse_wrk(out: str, duration: int) -> WrkResult:
    """Read wrk's ``--latency`` report, tolerating trailing blanks (wrk pads ``1.28s ``).

    Args:
        out: wrk's standard output.
        duration: The seconds the run lasted.

    Returns:
        The run's throughput, latency percentiles and errors.

    Raises:
        RuntimeError: the report has no latency distribution.
    """
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if "99" not in latency:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return WrkResult(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        requests=total,
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        errors=errors,
        duration_s=duration,
    )


def wrk(
    url: str, body: dict[str, Any], connections: int, duration: int, threads: int = 2
) -> WrkResult:
    """POST ``body`` to ``url`` with wrk for ``duration`` seconds at ``connections``.

    Args:
        url: Where to POST.
        body: The JSON body sent with every request.
        connections: Concurrent keep-alive connections.
        duration: Seconds to run.
        threads: wrk threads (at most ``connections``).

    Returns:
        The run's throughput, latency percentiles and errors.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        payload = json.dumps(body).replace("\\", "\\\\").replace('"', '\\"')
        script.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.body = "{payload}"\n'
        )
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{duration}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    return parse_wrk(out, duration)


@contextmanager
def postgres_database(postgres_url: str, purpose: str = "bench") -> Iterator[str]:
    """A fresh database on the server of ``postgres_url`` (its URL), dropped afterwards."""
    name = f"tabops_{purpose}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def settle_database(url: str) -> None:
    """Do now, on a PostgreSQL database a server has just filled, the work its server would
    do in the background during the next measurements: vacuum and analyse the tables
    (autovacuum's job) and write the dirty buffers out (the next checkpoint's). Without
    it, a million rows just inserted had autovacuum and a checkpoint share the 2 cores
    with the servers measured next (the unaudited batch run fell from 340,000 to 130,000
    rows/s in one run). Nothing to do for SQLite."""
    if make_url(url).get_backend_name() != "postgresql":
        return
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
            conn.execute(text("CHECKPOINT"))  # superuser or pg_checkpoint
    finally:
        engine.dispose()


@contextmanager
def audit_databases(work: Path, postgres_url: str) -> Iterator[dict[str, str]]:
    """The audit databases a benchmark runs against: a SQLite file in ``work``, and, when a
    PostgreSQL URL is given, a fresh database on that server, dropped afterwards."""
    databases = {"sqlite": f"sqlite:///{work / 'audit.db'}"}
    if not postgres_url:
        yield databases
        return
    with postgres_database(postgres_url) as url:
        yield databases | {"postgresql": url}
