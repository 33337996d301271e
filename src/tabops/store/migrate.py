"""Apply the audit store's Alembic migrations (``tabops db upgrade``, or at server start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from tabops.store.partitions import ensure_months

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

_SCRIPTS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at our migration scripts (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database's audit schema up to ``revision`` (idempotent), and on
    PostgreSQL create the monthly partitions ahead."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    ensure_months(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this version of tabops."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
