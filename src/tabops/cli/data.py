"""Commands that bring data in: ``seed``, ``init`` and ``ingest``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    TaskID,
)
from rich.table import Table

from tabops.cli._common import (
    AllOpt,
    NameArg,
    _fail,
    _names,
    _progress,
    _settings,
    _user_errors,
    app,
    console,
    errors,
)
from tabops.errors import DataNotFoundError
from tabops.spec.schema import load_usecase


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
    from tabops.data.datasets import read_source
    from tabops.store.db import create_db_engine
    from tabops.store.training_tables import count_rows, seed_table

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
    from tabops.data.scaffold import write_starter_spec

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
    from tabops.data.datasets import read_rows
    from tabops.errors import DataValidationError
    from tabops.store.db import create_db_engine
    from tabops.store.training_tables import ingest_rows

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
