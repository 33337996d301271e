"""Commands on models: ``train``, ``usecases``, ``models`` and ``promote``."""

from __future__ import annotations

from typing import Annotated

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
from tabops.spec.schema import list_usecases, load_usecase


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
    from tabops.lifecycle.registry import Registry
    from tabops.lifecycle.train import train_usecase
    from tabops.store.db import create_db_engine
    from tabops.store.training_tables import count_rows

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
