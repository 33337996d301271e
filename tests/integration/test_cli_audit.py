"""The audit side of the CLI on SQLite and PostgreSQL: db upgrade, ingest, export, purge."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from tabops.cli import app
from tabops.config import AuditSettings
from tabops.store.audit import AuditWriter
from tabops.store.migrate import head_revision
from tabops.store.schema import drift_runs
from tests.conftest import USECASES
from tests.integration.test_audit import _record

pytestmark = pytest.mark.slow
runner = CliRunner()


def _env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return {
        "TABOPS_VAR_DIR": str(tmp_path / "var"),
        "TABOPS_USECASES_DIR": str(USECASES),
        "TABOPS_DB__URL": db_url,
        "TABOPS_AUDIT__JSONL_PATH": str(tmp_path / "log.jsonl"),
    }


def test_db_upgrade_ingest_export_purge(audit_engine: Engine, db_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path, db_url)
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0 and f"-> {head_revision()}" in result.output

    assert runner.invoke(app, ["seed", "iris", "--replace"], env=env).exit_code == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "sepal_length,sepal_width,petal_length,petal_width,species\n"
        "5.1,3.5,1.4,0.2,setosa\n"
        "5.1,3.5,-1,0.2,setosa\n"
        "5.1,3.5,1.4,0.2,tulip\n"
    )
    result = runner.invoke(app, ["ingest", "iris", str(bad)], env=env)
    assert result.exit_code == 1
    assert "rejected, nothing written" in result.output
    assert "petal_length" in result.output and "tulip" in result.output
    good = tmp_path / "good.csv"
    good.write_text(bad.read_text().splitlines()[0] + "\n5.0,3.4,1.5,0.2,setosa\n")
    result = runner.invoke(app, ["ingest", "iris", str(good)], env=env)
    assert result.exit_code == 0 and "added 1 rows" in result.output

    old = datetime.now(UTC) - timedelta(days=120)
    records = [_record(n=2, when=old), _record(n=3)]
    refused = [_record(n=1, when=old), _record(n=1)]  # the tables cannot hold them
    for record in refused:
        record.request.client_request_id = "r" * 129
    log = tmp_path / "log.jsonl"
    spool = tmp_path / "var" / "spool"
    writer = AuditWriter(audit_engine, AuditSettings(jsonl_path=log), spool)

    async def write() -> None:
        await writer.start()
        await asyncio.gather(*(writer.record(r) for r in records))
        await asyncio.gather(*(writer.record(r) for r in refused), return_exceptions=True)
        await writer.stop()

    asyncio.run(write())
    with audit_engine.begin() as conn:  # a drift run of then, and one of now
        for when in (old, datetime.now(UTC)):
            conn.execute(
                drift_runs.insert().values(
                    created_at=when,
                    usecase="credit",
                    model_version="1",
                    window_size=10,
                    n_live=10,
                    tier="stable",
                    level=0,
                    n_drifted=0,
                    report={},
                )  # fmt: skip
            )
    out = tmp_path / "credit.csv"
    result = runner.invoke(app, ["audit", "export", "credit", "-o", str(out)], env=env)
    assert result.exit_code == 0 and "exported 5 predictions" in result.output
    frame = pd.read_csv(out)
    assert {"prediction_id", "label", "p_bad", "p_good", "Age", "actual"} <= set(frame.columns)
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    parquet = tmp_path / "recent.parquet"
    result = runner.invoke(
        app,
        ["audit", "export", "credit", "--since", since, "--format", "parquet", "-o", str(parquet)],
        env=env,
    )
    assert result.exit_code == 0 and len(pd.read_parquet(parquet)) == 3

    result = runner.invoke(app, ["purge", "credit", "--older-than", "90d"], env=env)
    assert result.exit_code == 0
    assert (
        "deleted 2 predictions, 0 feedback rows, 1 requests, 1 drift runs, 1 quarantined "
        "records and 2 inference-log lines" in " ".join(result.output.split())
    ), result.output
    with audit_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(drift_runs)).scalar_one() == 1
    assert len(log.read_text().splitlines()) == 3  # the recent request's predictions
    kept = [line for f in spool.glob("quarantine-*.jsonl") for line in f.read_text().splitlines()]
    assert len(kept) == 1 and refused[1].request.id in kept[0]
    assert runner.invoke(app, ["purge", "credit", "--older-than", "ninety"], env=env).exit_code == 1
    assert runner.invoke(app, ["purge", "--older-than", "90d"], env=env).exit_code == 1
    assert (
        runner.invoke(app, ["purge", "credit", "--all", "--older-than", "1d"], env=env).exit_code
        == 1
    )
    result = runner.invoke(app, ["purge", "--all", "--older-than", "0h"], env=env)
    assert result.exit_code == 0
    assert "all use cases: deleted 3 predictions" in " ".join(result.output.split()), result.output
