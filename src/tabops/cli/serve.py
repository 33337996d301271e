"""``tabops serve``: one process, or a pre-fork server with several workers."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from tabops.cli._common import (
    _settings,
    _user_errors,
    app,
    console,
)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (TABOPS_API__HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (TABOPS_API__PORT)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (TABOPS_API__WORKERS)")
    ] = None,
) -> None:
    """Serve the champion of every use case over HTTP.

    Example:
        tabops serve --port 8000
    """
    import uvicorn

    # worker processes build their own Settings from the environment: pass options there
    for key, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"TABOPS_API__{key}"] = str(value)
    settings = _settings()
    if settings.audit.migrate_on_start:
        # once here, before worker processes start (they would race each other)
        from tabops.store.db import create_db_engine
        from tabops.store.migrate import upgrade
        from tabops.store.spool import is_connection_error

        engine = create_db_engine(settings.database_url_resolved, timeouts=settings.db)
        try:
            with _user_errors():
                upgrade(engine)
            # migrated: the workers need not (they would race each other)
            os.environ["TABOPS_AUDIT__MIGRATE_ON_START"] = "false"
        except Exception as exc:
            # the database is down: serve anyway, from the spool; each worker migrates
            # (Alembic takes a lock on PostgreSQL) once the database is back
            if not is_connection_error(exc.__cause__ or exc):
                raise
            console.print("database unreachable: serving from the audit spool until it is back")
        finally:
            engine.dispose()
    base = f"http://{settings.api.host}:{settings.api.port}"
    console.print(f"tabops API on {base}  (docs: {base}/docs, use cases: {base}/usecases)")
    # main() kept tabops's loggers at WARNING for the other commands: the server says more
    logging.getLogger("tabops").setLevel(settings.log.level)
    from tabops.telemetry.multiproc import multiprocess_metrics

    # workers share metric files; the folder must be named before they start
    with multiprocess_metrics(settings.metrics_dir, settings.api.workers) as folder:
        if folder is not None:
            from tabops.api.prefork import PreforkServer

            # MLflow's SQL store must keep no connection open across the fork
            os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
            PreforkServer(_settings(), str(folder)).run()  # with the variables set above
            return
        from tabops.api.transport import SERVER_OPTIONS

        uvicorn.run(
            "tabops.api.app:app_from_env",
            factory=True,
            **SERVER_OPTIONS,
            host=settings.api.host,
            port=settings.api.port,
            timeout_keep_alive=int(settings.api.keep_alive_s),
            timeout_graceful_shutdown=int(settings.api.shutdown_timeout_s),
            # tabops's own access line has the request id and latency (api/context.py)
            access_log=False,
            log_config=None,  # keep the tabops formatter (telemetry/logging.py)
            log_level="info",
        )
