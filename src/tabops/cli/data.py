"""Commands that bring data in: ``seed``, ``init`` and ``ingest``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from tabops.config import Settings
from tabops.errors import DataNotFoundError, TabopsError
from tabops.spec.files import load_usecase

if TYPE_CHECKING:
    from sqlalchemy import Engine


@app.command()
def seed(
    name: NameArg = None,
    all_: AllOpt = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop the table's rows and seed again")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="With --all: exit 1 at the end if any seed failed")
    ] = False,
) -> None:
    """Load a use case's CSV data into its typed training table.

    The CSV is only the initial seed: afterwards the table is the training source. A table
    that already holds rows is left alone unless --replace is given. When the spec joins
    several files, the rows matched and the keys without a match are reported. With --all,
    a use case whose data is missing or invalid is reported and the others are seeded.

    Example:
        tabops seed credit
        tabops seed --all
    """
    from tabops.store.db import create_db_engine

    settings = _settings()
    engine = create_db_engine(settings.database_url_resolved)
    missing_data = False
    failed: list[str] = []
    with _user_errors():
        names = _names(settings, name, all_)
    for usecase in names:
        if not all_:
            with _user_errors():
                _seed_one(settings, engine, usecase, replace)
            continue
        try:
            _seed_one(settings, engine, usecase, replace)
        except DataNotFoundError as exc:
            errors.print(f"[yellow]skipped[/] {usecase}: {exc}", highlight=False, soft_wrap=True)
            missing_data = True
        except TabopsError as exc:
            failed.append(usecase)
            errors.print(f"[red]failed[/] {usecase}: {exc}", highlight=False, soft_wrap=True)
    if missing_data:
        console.print("some use cases were skipped: their data is missing (see above)")
    if failed:
        errors.print(f"could not seed: {', '.join(failed)}", highlight=False)
        if strict:
            raise typer.Exit(code=1)


def _seed_one(settings: Settings, engine: Engine, usecase: str, replace: bool) -> None:
    from tabops.data.datasets import load_source
    from tabops.store.training_tables import count_rows, seed_table

    spec = load_usecase(settings.usecases_dir, usecase)
    existing = count_rows(engine, spec)
    if existing and not replace:
        console.print(f"{usecase}: already seeded ({existing} rows); --replace to reload")
        return
    source = load_source(spec, settings)
    for note in source.notes:
        console.print(f"{usecase}: {note}", highlight=False)
    frame = source.frame
    with _progress() as bar:
        task = bar.add_task("inserting rows", total=len(frame), usecase=usecase)

        def advance(rows: int, t: TaskID = task) -> None:
            bar.advance(t, rows)

        files = [*spec.data.files, *(j.file for j in spec.data.join)]
        written = seed_table(
            engine,
            spec,
            frame,
            source=f"seed:{','.join(files)}",
            replace=replace,
            progress=advance,
        )
    console.print(f"{usecase}: seeded {written} rows into training_{usecase}")


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Name of the new use case (letters, digits, _)")],
    csv: Annotated[Path, typer.Option("--csv", help="The CSV file to learn from")],
    target: Annotated[str, typer.Option("--target", help="The column to predict")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing spec")] = False,
    encoding: Annotated[
        str | None,
        typer.Option(help="The file's encoding (default: detected, UTF-8 or cp1252/Latin-1)"),
    ] = None,
    max_categories: Annotated[
        int, typer.Option(min=2, help="Most distinct values of a text column kept as a category")
    ] = 100,
) -> None:
    """Write a starter usecase.yaml inferred from a CSV file (types, bounds, allowed values).

    The encoding, separator, missing-value markers (?, -, N/A...) and a decimal comma are
    detected and written into the spec, so that seeding reads the file the same way. Every
    guess is printed as a note. Edit the spec (titles, descriptions, bounds, positive class),
    then seed, train and serve.

    Example:
        tabops init loans --csv loans.csv --target defaulted
        tabops seed loans && tabops train loans && tabops serve
    """
    from tabops.data.scaffold import write_starter_spec

    settings = _settings()
    with _user_errors():
        path, notes = write_starter_spec(
            settings.usecases_dir,
            name,
            csv,
            target,
            overwrite=force,
            encoding=encoding,
            max_categories=max_categories,
        )
        load_usecase(settings.usecases_dir, name)
    console.print(f"wrote {path}")
    for note in notes:
        console.print(f"  note: {note}", highlight=False, markup=False, soft_wrap=True)
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
