"""Commands on the audit store: ``db upgrade``, ``purge``, ``audit export`` and ``keys``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tabops.cli._common import (
    _fail,
    _settings,
    _user_errors,
    app,
    console,
)
from tabops.spec.files import load_usecase

db_app = typer.Typer(help="The audit store's database schema.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail of served predictions.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the audit store's migrations (the server also does at start-up by default).

    Example:
        TABOPS_DATABASE_URL=postgresql+psycopg://tabops@db/tabops tabops db upgrade
    """
    from tabops.store.db import create_db_engine
    from tabops.store.migrate import current_revision, upgrade

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    with _user_errors():
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    console.print(f"audit schema: {before or 'empty'} -> {after}")


def _age(text: str) -> timedelta:
    units = {"d": 1, "w": 7, "h": 1 / 24}
    try:
        return timedelta(days=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise _fail(f"invalid age '{text}': use a number and d, w or h, e.g. 90d") from None


@app.command()
def purge(
    name: Annotated[str | None, typer.Argument(help="Use case name (or --all)")] = None,
    older_than: Annotated[str, typer.Option("--older-than", help="Age such as 90d, 12w, 36h")] = "",
    every: Annotated[
        bool, typer.Option("--all", help="Every use case's data, the retired ones' too")
    ] = False,
) -> None:
    """Delete a use case's (or, with --all, every use case's) prediction data older than an
    age: audit rows (requests, predictions, feedback), drift history, quarantined records
    and the lines of the JSONL inference log. On PostgreSQL, whole months that hold only
    the purged data are dropped as partitions (fast); the rest is deleted in batches.

    Example:
        tabops purge credit --older-than 90d
        tabops purge --all --older-than 400d
    """
    from tabops.store.db import create_db_engine
    from tabops.store.queries import purge as purge_rows
    from tabops.store.retention import purge_drift_runs, purge_files

    if (name is None) == (not every):
        raise _fail("name a use case, or pass --all")
    if not older_than:
        raise _fail("--older-than is required, e.g. --older-than 90d")
    settings = _settings()
    cutoff = datetime.now(UTC) - _age(older_than)
    engine = create_db_engine(settings.database_url_resolved)
    with _user_errors():
        if name is not None:
            load_usecase(settings.usecases_dir, name)
        counts = purge_rows(engine, name, cutoff)
        drift = purge_drift_runs(engine, name, cutoff)
        files = purge_files(settings.spool_dir, settings.audit.jsonl_path, name, cutoff)
    console.print(
        f"{name or 'all use cases'}: deleted {counts.predictions} predictions, "
        f"{counts.feedback} feedback rows, "
        f"{counts.requests} requests, {drift} drift runs, {files.quarantined} quarantined "
        f"records and {files.log_lines} inference-log lines older than "
        f"{cutoff:%Y-%m-%d %H:%M} UTC"
    )


@audit_app.command("export")
def audit_export(
    name: Annotated[str, typer.Argument(help="Use case name")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write")],
    since: Annotated[
        datetime | None, typer.Option(help="From this time (ISO 8601, UTC if no zone)")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Before this time")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
) -> None:
    """Export recorded predictions (inputs, outputs, latest feedback) to CSV or Parquet.

    Example:
        tabops audit export credit --since 2026-01-01 --format parquet -o credit.parquet
    """
    from tabops.store.db import create_db_engine
    from tabops.store.queries import PredictionFilter, export_predictions

    if fmt not in ("csv", "parquet"):
        raise _fail(f"unknown format '{fmt}': csv or parquet")
    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)

    def utc(value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    with _user_errors():
        spec = load_usecase(settings.usecases_dir, name)
        frame = export_predictions(
            engine, spec, PredictionFilter(since=utc(since), until=utc(until))
        )
    if fmt == "csv":
        frame.to_csv(output, index=False)
    else:
        frame.to_parquet(output, index=False)
    console.print(f"{name}: exported {len(frame)} predictions to {output}")


keys_app = typer.Typer(help="API keys: predict keys score, admin keys also train and promote.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it)")],
    role: Annotated[str, typer.Option(help="predict or admin")] = "predict",
) -> None:
    """Create an API key and print it (it is shown once; only its hash is stored).

    Example:
        tabops keys create scoring-app --role predict
    """
    from tabops.store.db import create_db_engine
    from tabops.store.keys import create_key
    from tabops.store.migrate import upgrade

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    with _user_errors():
        upgrade(engine)
        try:
            key = create_key(engine, name, role)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    console.print(f"{role} key '{name}' (shown once, keep it secret):")
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys: name, role, prefix, created, revoked (never the secrets).

    Example:
        tabops keys list
    """
    from tabops.store.db import create_db_engine
    from tabops.store.keys import list_keys
    from tabops.store.migrate import upgrade

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    upgrade(engine)
    table = Table("name", "role", "prefix", "created", "revoked")
    for key in list_keys(engine):
        revoked = key["revoked_at"]
        table.add_row(
            key["name"],
            key["role"],
            f"tabops_{key['prefix']}_…",
            f"{key['created_at']:%Y-%m-%d %H:%M}",
            f"{revoked:%Y-%m-%d %H:%M}" if revoked else "-",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name")]) -> None:
    """Revoke an API key (servers stop accepting it within 30 s).

    Example:
        tabops keys revoke scoring-app
    """
    from tabops.store.db import create_db_engine
    from tabops.store.keys import revoke_key

    settings = _settings()
    if not revoke_key(create_db_engine(settings.database_url_resolved), name):
        raise _fail(f"no active API key named '{name}'")
    console.print(f"revoked '{name}'")


@keys_app.command("bootstrap")
def keys_bootstrap(
    file: Annotated[Path, typer.Option(help="Where the generated admin key is kept")] = Path(
        "var/admin.key"
    ),
) -> None:
    """Make sure a local admin key exists (for `make run`): create one named 'local-admin'
    the first time, keep it in a file readable only by you, and print it.

    Example:
        tabops keys bootstrap --file var/admin.key
    """
    from tabops.store.db import create_db_engine
    from tabops.store.keys import create_key, delete_key, find_key, parse_key
    from tabops.store.migrate import upgrade

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    with _user_errors():
        upgrade(engine)
        key = file.read_text().strip() if file.is_file() else ""
        parsed = parse_key(key)
        if parsed is None or find_key(engine, parsed[0]) is None:
            # first run, or the file was lost: a new key replaces the old one
            delete_key(engine, "local-admin")
            key = create_key(engine, "local-admin", "admin")
            file.parent.mkdir(parents=True, exist_ok=True)
            file.touch(mode=0o600)
            file.write_text(key + "\n")
    console.print(f"admin API key (kept in {file}): {key}", highlight=False, soft_wrap=True)
