"""The ``tabops`` command: a thin layer over the library.

Each module registers its commands on the one typer app of :mod:`tabops.cli._common`.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from tabops import __version__
from tabops.cli import (  # noqa: F401  (registers commands)
    data,
    explain,
    models,
    monitor,
    serve,
    store,
    ui,
)
from tabops.cli._common import app

__all__ = ["app", "main"]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tabops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """From a CSV file and a YAML spec to a trained, versioned, served prediction model."""


def main() -> None:
    """Console-script entry point."""
    from tabops.config import Settings
    from tabops.telemetry.logging import configure_logging, secrets_of

    try:  # warnings only for the commands; `tabops serve` raises tabops's level
        settings = Settings()
        configure_logging(settings.log.format, "WARNING", secrets_of(settings))
    except ValueError:  # invalid settings: the command reports them itself
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()
