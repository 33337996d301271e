"""What every command module shares: the typer app, the consoles and the error handling."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from tabops.config import Settings
from tabops.errors import TabopsError
from tabops.spec.files import list_usecases

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
