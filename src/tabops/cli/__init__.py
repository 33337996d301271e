"""The ``tabops`` command: a thin layer over the library.

Each module registers its commands on the one typer app of :mod:`tabops.cli._common`.
"""

from __future__ import annotations

import logging

from tabops.cli import data, explain, models, monitor, serve, store  # noqa: F401  (registers)
from tabops.cli._common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()
