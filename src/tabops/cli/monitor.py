"""Monitoring commands: ``drift`` and ``simulate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.table import Table

from tabops.cli._common import (
    _fail,
    _progress,
    _settings,
    _user_errors,
    app,
    console,
)
from tabops.spec.files import load_usecase


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
    from tabops.lifecycle.registry import Registry
    from tabops.monitoring.quality import run_drift
    from tabops.monitoring.report import render_html
    from tabops.store.db import create_db_engine
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

    from tabops.client.simulate import apply_shifts, parse_shift, sample_records
    from tabops.client.simulate import simulate as send
    from tabops.store.db import create_db_engine
    from tabops.store.training_tables import read_training_frame

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
