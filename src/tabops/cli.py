"""The ``tabops`` command: a thin layer over the library."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tabops.config import Settings
from tabops.errors import DataNotFoundError, TabopsError
from tabops.spec import list_usecases, load_usecase

__all__ = ["app", "main"]

app = typer.Typer(
    name="tabops",
    help="From a CSV file and a YAML spec to a trained, versioned, served prediction model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# wide when piped (make, CI logs): rich would wrap at 80 columns otherwise
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn domain errors into one clear line and exit code 1 (no traceback)."""
    try:
        yield
    except TabopsError as exc:
        raise _fail(str(exc)) from None


def _settings() -> Settings:
    with _user_errors():
        try:
            return Settings()
        except ValueError as exc:
            raise _fail(f"invalid settings: {exc}") from None


def _names(settings: Settings, name: str | None, all_: bool) -> list[str]:
    if all_ == (name is not None):
        raise _fail("give a use case NAME or --all (not both)")
    if all_:
        found = list_usecases(settings.usecases_dir)
        if not found:
            raise _fail(f"no use cases in {settings.usecases_dir.resolve()}")
        return found
    assert name is not None
    return [name]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.fields[usecase]:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and os.environ.get("TABOPS_PROGRESS") != "1",
    )


NameArg = Annotated[str | None, typer.Argument(help="Use case name (its folder under usecases/)")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every use case in the use-cases folder")]


@app.command()
def seed(
    name: NameArg = None,
    all_: AllOpt = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop the table's rows and seed again")
    ] = False,
) -> None:
    """Load a use case's CSV data into its typed training table.

    The CSV is only the initial seed: afterwards the table is the training source. A table
    that already holds rows is left alone unless --replace is given.

    Example:
        tabops seed credit
        tabops seed --all
    """
    from tabops.datasets import read_source
    from tabops.store import count_rows, create_db_engine, seed_table

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    missing_data = False
    with _user_errors():
        for usecase in _names(settings, name, all_):
            spec = load_usecase(settings.usecases_dir, usecase)
            existing = count_rows(engine, spec)
            if existing and not replace:
                console.print(f"{usecase}: already seeded ({existing} rows); --replace to reload")
                continue
            try:
                frame = read_source(spec, settings)
            except DataNotFoundError as exc:
                if not all_:
                    raise
                errors.print(f"[yellow]skipped[/] {usecase}: {exc}", highlight=False)
                missing_data = True
                continue
            with _progress() as bar:
                task = bar.add_task("inserting rows", total=len(frame), usecase=usecase)

                def advance(rows: int, t: TaskID = task) -> None:
                    bar.advance(t, rows)

                written = seed_table(
                    engine,
                    spec,
                    frame,
                    source=f"seed:{','.join(spec.data.files)}",
                    replace=replace,
                    progress=advance,
                )
            console.print(f"{usecase}: seeded {written} rows into training_{usecase}")
    if missing_data:
        console.print("some use cases were skipped: their data is missing (see above)")


@app.command()
def train(
    name: NameArg = None,
    all_: AllOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Make the new version champion even if it is not better")
    ] = False,
    only_missing: Annotated[
        bool, typer.Option("--only-missing", help="Skip use cases that already have a champion")
    ] = False,
) -> None:
    """Train a use case on its training table, register a version in MLflow, and promote it
    to champion if it beats the current one on the spec's gate metric (or --force).

    Example:
        tabops train credit
        tabops train --all --only-missing
    """
    from tabops.registry import Registry
    from tabops.store import count_rows, create_db_engine
    from tabops.training import train_usecase

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    registry = Registry(settings)
    with _user_errors():
        for usecase in _names(settings, name, all_):
            spec = load_usecase(settings.usecases_dir, usecase)
            if only_missing and registry.champion(usecase) is not None:
                console.print(
                    f"{usecase}: has a champion; skipped (drop --only-missing to retrain)"
                )
                continue
            if all_ and count_rows(engine, spec) == 0:
                errors.print(
                    f"[yellow]skipped[/] {usecase}: no training data (tabops seed {usecase})"
                )
                continue
            with _progress() as bar:
                task = bar.add_task("starting", total=1.0, usecase=usecase)

                def report(stage: str, fraction: float, t: TaskID = task) -> None:
                    bar.update(t, completed=fraction, description=stage)

                outcome = train_usecase(spec, engine, registry, force=force, progress=report)
            metric = spec.gate.metric
            verdict = "[green]champion[/]" if outcome.promoted else "[yellow]not promoted[/]"
            console.print(
                f"{usecase}: version {outcome.version} ({outcome.n_rows} rows), hold-out "
                f"{metric} {outcome.holdout_metrics[metric]:.4f}: {verdict} ({outcome.reason})",
                highlight=False,
            )


@app.command("usecases")
def usecases_cmd() -> None:
    """List use cases, their training rows, champion versions and hold-out metrics.

    Example:
        tabops usecases
    """
    from tabops.registry import Registry
    from tabops.store import count_rows, create_db_engine

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    registry = Registry(settings)
    table = Table("use case", "task", "rows", "champion", "gate", "accuracy", "roc_auc", "f1")
    with _user_errors():
        for usecase in list_usecases(settings.usecases_dir):
            spec = load_usecase(settings.usecases_dir, usecase)
            champion = registry.champion(usecase)

            def fmt(metric: str, c: object = champion) -> str:
                value = c.holdout(metric) if c is not None else None  # type: ignore[attr-defined]
                return "-" if value is None else f"{value:.3f}"

            table.add_row(
                usecase,
                spec.task,
                str(count_rows(engine, spec)),
                f"v{champion.version}" if champion else "-",
                f"{spec.gate.metric} {fmt(spec.gate.metric)}",
                fmt("accuracy"),
                fmt("roc_auc"),
                fmt("f1"),
            )
    console.print(table)


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
        from tabops.store import create_db_engine
        from tabops.store.migrate import upgrade

        engine = create_db_engine(settings.database_url_resolved)
        with _user_errors():
            upgrade(engine)
        engine.dispose()
        os.environ["TABOPS_AUDIT__MIGRATE_ON_START"] = "false"
    base = f"http://{settings.api.host}:{settings.api.port}"
    console.print(f"tabops API on {base}  (docs: {base}/docs, use cases: {base}/usecases)")
    # main() set the root logger to WARNING for the other commands: the server says more
    logging.getLogger("tabops").setLevel(logging.INFO)
    from tabops.monitoring.multiproc import multiprocess_metrics

    # workers share metric files; the folder must be named before they start
    with multiprocess_metrics(settings.metrics_dir, settings.api.workers) as folder:
        if folder is not None:
            from tabops.api.prefork import PreforkServer

            # MLflow's SQL store must keep no connection open across the fork
            os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
            PreforkServer(_settings(), str(folder)).run()  # with the variables set above
            return
        uvicorn.run(
            "tabops.api.app:app_from_env",
            factory=True,
            host=settings.api.host,
            port=settings.api.port,
            timeout_keep_alive=int(settings.api.keep_alive_s),
            access_log=settings.api.access_log,
            log_level="info",
        )


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Name of the new use case (letters, digits, _)")],
    csv: Annotated[Path, typer.Option("--csv", help="The CSV file to learn from")],
    target: Annotated[str, typer.Option("--target", help="The column to predict")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing spec")] = False,
) -> None:
    """Write a starter usecase.yaml inferred from a CSV file (types, bounds, allowed values).

    Edit it (titles, descriptions, bounds, positive class), then seed, train and serve.

    Example:
        tabops init loans --csv loans.csv --target defaulted
        tabops seed loans && tabops train loans && tabops serve
    """
    from tabops.scaffold import write_starter_spec

    settings = _settings()
    with _user_errors():
        path, notes = write_starter_spec(settings.usecases_dir, name, csv, target, overwrite=force)
        load_usecase(settings.usecases_dir, name)
    console.print(f"wrote {path}")
    for note in notes:
        console.print(f"  note: {note}", highlight=False)
    console.print(
        f"next: edit it, then `tabops seed {name} && tabops train {name} && tabops serve`"
    )


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
    from tabops.store import create_db_engine
    from tabops.store.migrate import current_revision, upgrade

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    with _user_errors():
        before = current_revision(engine)
        upgrade(engine)
        after = current_revision(engine)
    console.print(f"audit schema: {before or 'empty'} -> {after}")


@app.command()
def ingest(
    name: Annotated[str, typer.Argument(help="Use case name")],
    file: Annotated[Path, typer.Argument(help="CSV file of labelled rows")],
    separator: Annotated[
        str | None, typer.Option(help="Column separator (default: the spec's)")
    ] = None,
) -> None:
    """Append labelled rows to a use case's training table, for the next training run.

    Every row is checked against the spec first; a file with any bad row is rejected whole
    with a report (line, column, reason) and nothing is written.

    Example:
        tabops ingest credit new_loans.csv
    """
    from tabops.datasets import read_rows
    from tabops.errors import DataValidationError
    from tabops.store import create_db_engine, ingest_rows

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    with _user_errors():
        spec = load_usecase(settings.usecases_dir, name)
        try:
            frame = read_rows(spec, file, separator)
            written = ingest_rows(engine, spec, frame, source=f"ingest:{file.name}")
        except DataValidationError as exc:
            errors.print(f"{file}: rejected, nothing written", highlight=False, soft_wrap=True)
            report = Table("line", "column", "reason")
            for d in exc.details:
                report.add_row(str(d.row) if d.row is not None else "-", d.field, d.reason)
            errors.print(report)
            raise _fail(exc.message) from None
    console.print(f"{name}: added {written} rows from {file} to training_{name}")


def _age(text: str) -> timedelta:
    units = {"d": 1, "w": 7, "h": 1 / 24}
    try:
        return timedelta(days=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise _fail(f"invalid age '{text}': use a number and d, w or h, e.g. 90d") from None


@app.command()
def purge(
    name: Annotated[str, typer.Argument(help="Use case name")],
    older_than: Annotated[str, typer.Option("--older-than", help="Age such as 90d, 12w, 36h")],
) -> None:
    """Delete audit rows (requests, predictions, feedback) older than an age, in batches.

    Example:
        tabops purge credit --older-than 90d
    """
    from tabops.store import create_db_engine
    from tabops.store.queries import purge as purge_rows

    settings = _settings()
    cutoff = datetime.now(UTC) - _age(older_than)
    engine = create_db_engine(settings.database_url_resolved)
    with _user_errors():
        load_usecase(settings.usecases_dir, name)
        counts = purge_rows(engine, name, cutoff)
    console.print(
        f"{name}: deleted {counts.predictions} predictions, {counts.feedback} feedback rows and "
        f"{counts.requests} requests older than {cutoff:%Y-%m-%d %H:%M} UTC"
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
    from tabops.store import create_db_engine
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
    from tabops.store import create_db_engine
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
    from tabops.store import create_db_engine
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
    from tabops.store import create_db_engine
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
    from tabops.store import create_db_engine
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


@app.command("models")
def models_cmd(name: Annotated[str, typer.Argument(help="Use case name")]) -> None:
    """List a use case's registered versions: aliases, hold-out metrics, rows, gate decision.

    Example:
        tabops models credit
    """
    from tabops.registry import Registry

    settings = _settings()
    with _user_errors():
        spec = load_usecase(settings.usecases_dir, name)
        versions = Registry(settings).versions(name)
    metric = spec.gate.metric
    table = Table("version", "aliases", "created", metric, "rows", "gate decision")
    for v in versions:
        value = v.holdout(metric)
        table.add_row(
            v.version,
            ", ".join(v.aliases) or "-",
            f"{v.created_at:%Y-%m-%d %H:%M}",
            "-" if value is None else f"{value:.4f}",
            v.tags.get("tabops.n_rows", "-"),
            v.gate or "-",
        )
    console.print(table)


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Use case name")],
    version: Annotated[str, typer.Argument(help="Version to make champion")],
) -> None:
    """Make a version champion (promotion, or rollback to an earlier version) after
    checking it loads, matches its hash and scores its reference sample. Running servers
    follow within their polling interval.

    Example:
        tabops promote credit 3
    """
    from tabops.lifecycle import promote_version
    from tabops.registry import Registry

    settings = _settings()
    with _user_errors():
        load_usecase(settings.usecases_dir, name)
        previous = promote_version(Registry(settings), name, version)
    console.print(f"{name}: champion is now version {version} (was {previous or 'none'})")


@app.command()
def drift(
    name: Annotated[str, typer.Argument(help="Use case name")],
    window: Annotated[int | None, typer.Option(help="Live rows (default: the spec's)")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write the HTML report here")] = None,
) -> None:
    """Compare the champion's recent live inputs with its reference and print a table.

    Exit code by tier, so cron can act: 0 stable (or too little data), 1 watch, 2 retrain.

    Example:
        tabops drift credit --window 1000 || notify-team
    """
    from tabops.monitoring.report import render_html
    from tabops.monitoring.service import run_drift
    from tabops.registry import Registry
    from tabops.store import create_db_engine
    from tabops.store.migrate import upgrade

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    with _user_errors():
        spec = load_usecase(settings.usecases_dir, name)
        upgrade(engine)
        loaded = Registry(settings).load(name)
        report, hists = run_drift(engine, loaded, window)
    table = Table(
        "feature",
        "test",
        "statistic",
        "p-value",
        "PSI",
        "missing ref→live",
        "drifted",
        title=report.message,
    )
    for f in report.features:
        table.add_row(
            f.name,
            f.test,
            "-" if f.statistic is None else f"{f.statistic:.3f}",
            "-" if f.p_value is None else f"{f.p_value:.3g}",
            "-" if f.psi is None else f"{f.psi:.3f}",
            f"{f.missing_rate_ref:.1%} → {f.missing_rate_live:.1%}",
            "[red]yes[/]" if f.drifted else "no",
        )
    console.print(table)
    console.print(
        f"{name} v{loaded.version}: tier [bold]{report.tier}[/] ({report.n_live} live rows)"
    )
    if html is not None:
        html.write_text(render_html(report, hists, spec.title), encoding="utf-8")
        console.print(f"report written to {html}")
    raise typer.Exit(code=report.level)


@app.command()
def simulate(
    name: Annotated[str, typer.Argument(help="Use case name")],
    n: Annotated[int, typer.Option("--n", help="Requests to send")] = 1000,
    drift_: Annotated[
        list[str] | None,
        typer.Option(
            "--drift", help="FEATURE=CHANGE: +2sd, *1.5, +100, a category, null (repeatable)"
        ),
    ] = None,
    url: Annotated[str, typer.Option(help="The running server")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option(envvar="TABOPS_API_KEY", help="API key, if needed")
    ] = None,
    feedback: Annotated[
        bool, typer.Option(help="Also send each row's true label as feedback")
    ] = False,
    concurrency: Annotated[int, typer.Option(help="Requests in flight")] = 8,
    seed: Annotated[int, typer.Option(help="Sampling seed")] = 0,
) -> None:
    """Send realistic traffic sampled from the use case's training table to a running
    server, optionally shifted, to watch drift (and live quality) appear.

    Example:
        tabops simulate credit --drift Income=+2sd --drift Home=rent --n 2000 --feedback
    """
    import asyncio

    from tabops.monitoring.simulate import apply_shifts, parse_shift, sample_records
    from tabops.monitoring.simulate import simulate as send
    from tabops.store import create_db_engine, read_training_frame

    settings = _settings()
    with _user_errors():
        spec = load_usecase(settings.usecases_dir, name)
        shifts = [parse_shift(spec, text) for text in drift_ or []]
        frame = read_training_frame(create_db_engine(settings.database_url_resolved), spec)
        if frame.empty:
            raise _fail(f"no training data for '{name}' to sample from: tabops seed {name}")
        records, truths = sample_records(spec, frame, n, seed)
        apply_shifts(spec, frame, records, shifts)
    with _progress() as bar:
        task = bar.add_task("sending", total=n, usecase=name)
        try:
            result = asyncio.run(
                send(
                    url,
                    spec,
                    records,
                    truths if feedback else None,
                    api_key=api_key,
                    concurrency=concurrency,
                    progress=lambda k: bar.advance(task, k),
                )
            )
        except httpx.TransportError as exc:
            raise _fail(f"cannot reach {url}: {exc}") from None
    console.print(
        f"{name}: {result.ok} of {result.sent} predictions answered ({result.failed} failed), "
        f"labels {result.labels}, {result.feedback} feedback sent"
    )
    if result.failed:
        raise typer.Exit(code=1)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()
