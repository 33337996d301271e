"""No raw entity id in the audit tables, including rows recorded before the fix
(migration 0007), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from tabops.ids import uuid7_many
from tabops.store.db import create_db_engine
from tabops.store.migrate import upgrade
from tabops.store.schema import prediction_requests


def test_migration_removes_raw_entity_ids_from_recorded_endpoints(
    db_url: str, tmp_path: Path
) -> None:
    engine = create_db_engine(db_url)
    try:
        with engine.begin() as conn:  # a database left at the previous revision
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
            for table in ("feedback", "predictions", "prediction_requests", "drift_runs",
                          "training_jobs", "api_keys"):  # fmt: skip
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        upgrade(engine, "0006")
        now = datetime.now(UTC)
        a, b, c, d = uuid7_many(4)  # ids as recorded: UUIDv7 (0009 makes them uuid)
        rows = {
            a: "/usecases/credit/predict/4242",
            b: "shadow:/usecases/credit/predict/4242",
            c: "/usecases/credit/predict",
            d: "/predict",
        }
        with engine.begin() as conn:
            conn.execute(
                prediction_requests.insert(),
                [
                    {
                        "id": k,
                        "created_at": now,
                        "usecase": "credit",
                        "endpoint": v,
                        "caller": None,
                        "n_records": 1,
                        "request_id": None,
                        "model_version": "1",
                        "latency_ms": 1.0,
                    }  # fmt: skip
                    for k, v in rows.items()
                ],
            )
        upgrade(engine)
        with engine.connect() as conn:
            query = select(prediction_requests.c.id, prediction_requests.c.endpoint)
            found = {row.id: row.endpoint for row in conn.execute(query)}
        assert found == {
            a: "/usecases/credit/predict/{entity_id}",
            b: "shadow:/usecases/credit/predict/{entity_id}",
            c: "/usecases/credit/predict",
            d: "/predict",
        }
    finally:
        engine.dispose()
