"""Commands on models: ``train``, ``usecases``, ``models`` and ``promote``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    TaskID,
)
from rich.table import Table

from tabops.cli._common import (
    AllOpt,
    NameArg,
    _names,
    _progress,
    _settings,
    _user_errors,
    app,
    console,
    errors,
)
from tabops.config import Settings
from tabops.errors import TabopsError
from tabops.spec.files import list_usecases, load_usecase

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from tabops.lifecycle.registry import Registry


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
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="With --all: exit 1 at the end if any use case failed to train"
        ),
    ] = False,
) -> None:
    """Train a use case on its training table, register a version in MLflow, and promote it
    to champion if it beats the current one on the spec's gate metric (or --force).

    With --all, a use case that cannot train is reported in one line and the others are
    trained anyway; the exit code is 0 unless --strict is given and one failed.

    Example:
        tabops train credit
        tabops train --all --only-missing --strict
    """
    from tabops.lifecycle.registry import Registry
    from tabops.store.db import create_db_engine

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    registry = Registry(settings)
    failed: list[str] = []
    with _user_errors():
        names = _names(settings, name, all_)
    for usecase in names:
        if not all_:
            with _user_errors():
                _train_one(settings, engine, registry, usecase, all_, force, only_missing)
            continue
        try:
            _train_one(settings, engine, registry, usecase, all_, force, only_missing)
        except Exception as exc:  # one use case must not stop the others
            failed.append(usecase)
            message = str(exc) if isinstance(exc, TabopsError) else f"{type(exc).__name__}: {exc}"
            errors.print(f"[red]failed[/] {usecase}: {message}", highlight=False, soft_wrap=True)
    if failed:
        errors.print(
            f"{len(failed)} of {len(names)} use case(s) did not train: {', '.join(failed)}",
            highlight=False,
        )
        if strict:
            raise typer.Exit(code=1)


def _train_one(
    settings: Settings,
    engine: Engine,
    registry: Registry,
    usecase: str,
    all_: bool,
    force: bool,
    only_missing: bool,
) -> None:
    from tabops.lifecycle.train import train_usecase
    from tabops.store.training_tables import count_rows
    from tabops.training.pipeline import build_pipeline

    spec = load_usecase(settings.usecases_dir, usecase)
    build_pipeline(spec)  # hyperparameters checked before any data is read
    if only_missing and registry.champion(usecase) is not None:
        console.print(f"{usecase}: has a champion; skipped (drop --only-missing to retrain)")
        return
    if all_ and count_rows(engine, spec) == 0:
        errors.print(f"[yellow]skipped[/] {usecase}: no training data (tabops seed {usecase})")
        return
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
    for warning in outcome.warnings:
        errors.print(f"[yellow]warning[/] {usecase}: {warning}", highlight=False, soft_wrap=True)


@app.command("usecases")
def usecases_cmd() -> None:
    """List use cases, their training rows, champion versions and hold-out metrics.

    Example:
        tabops usecases
    """
    from tabops.lifecycle.registry import Registry
    from tabops.store.db import create_db_engine
    from tabops.store.training_tables import count_rows

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


@app.command("models")
def models_cmd(name: Annotated[str, typer.Argument(help="Use case name")]) -> None:
    """List a use case's registered versions: aliases, hold-out metrics, rows, gate decision.

    Example:
        tabops models credit
    """
    from tabops.lifecycle.registry import Registry

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
            str(v.n_rows) if v.n_rows is not None else "-",
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
    from tabops.lifecycle.gate import promote_version
    from tabops.lifecycle.registry import Registry

    settings = _settings()
    with _user_errors():
        load_usecase(settings.usecases_dir, name)
        _, previous = promote_version(Registry(settings), name, version)
    console.print(f"{name}: champion is now version {version} (was {previous or 'none'})")
