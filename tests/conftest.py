"""Shared fixtures: settings on temporary stores, one trained environment per session, and a
fresh PostgreSQL database per session when TABOPS_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tabops.config import Settings
from tabops.data.datasets import read_source
from tabops.lifecycle.registry import Registry
from tabops.lifecycle.train import TrainingOutcome, train_usecase
from tabops.spec.files import list_usecases, load_usecase
from tabops.store.db import create_db_engine
from tabops.store.training_tables import seed_table

REPO = Path(__file__).resolve().parents[1]
USECASES = REPO / "usecases"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ADMIN_KEY = "test-admin-key-0123456789"
"""The operator-supplied admin key of test settings (anonymous callers may predict)."""
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _shared_data() -> Path:
    configured = os.environ.get("TABOPS_TEST_SHARED_DATA")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


def require(condition: bool, reason: str) -> None:
    """Skip locally when a prerequisite is absent; in CI, fail instead of skipping silently."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def school_dir() -> Path:
    path = _shared_data() / "student-performance"
    require((path / "student-mat.csv").is_file(), f"school data not found in {path}")
    return path


def make_settings(var_dir: Path, school: Path | None = None, **overrides: object) -> Settings:
    """Settings on temporary stores, reading the repository's bundled use cases."""
    data_dirs = {"school": school} if school is not None else {}
    options: dict[str, object] = {
        "usecases_dir": USECASES,
        "auth": {"anonymous_predict": True, "admin_key": ADMIN_KEY},
        **overrides,
    }
    return Settings(
        var_dir=var_dir,
        data_dirs=data_dirs,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "var")


def seed_and_train(settings: Settings, names: list[str]) -> dict[str, TrainingOutcome]:
    """Seed and train use cases the way `tabops seed` and `tabops train` do."""
    engine = create_db_engine(settings.database_url_resolved)
    registry = Registry(settings)
    outcomes = {}
    try:
        for name in names:
            spec = load_usecase(settings.usecases_dir, name)
            seed_table(engine, spec, read_source(spec, settings), source="seed:test", replace=True)
            outcomes[name] = train_usecase(spec, engine, registry)
    finally:
        engine.dispose()
    return outcomes


def school_data_found() -> Path | None:
    """The school data's folder, if it is there (it may not be redistributed)."""
    path = _shared_data() / "student-performance"
    return path if (path / "student-mat.csv").is_file() else None


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Settings, dict[str, TrainingOutcome]]:
    """Every bundled use case seeded and trained once, on SQLite and a local MLflow store.

    ``school`` only when its data is found: the tests of the other use cases need not skip
    without it (the tests of school itself ask for ``school_dir``, which skips, or fails
    in CI)."""
    school = school_data_found()
    names = [n for n in list_usecases(USECASES) if n != "school" or school is not None]
    settings = make_settings(tmp_path_factory.mktemp("trained") / "var", school)
    return settings, seed_and_train(settings, names)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new database on the test server (``TABOPS_TEST_POSTGRES_URL``), dropped afterwards."""
    base = os.environ.get("TABOPS_TEST_POSTGRES_URL")
    require(bool(base), "TABOPS_TEST_POSTGRES_URL is not set")
    assert base is not None
    name = f"tabops_test_{uuid.uuid4().hex[:12]}"
    # no pool: a connection kept across a server restart (the outage test) would be dead
    admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server must be up where the variable is set
        pytest.fail(f"PostgreSQL at {make_url(base).render_as_string()} is not usable: {exc}")
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def own_postgres_url() -> Iterator[str]:
    """A PostgreSQL database for one test alone: for a test whose rows other tests would
    count (predictions of a bundled use case under the same version numbers)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test of the audit trail runs once on SQLite and once on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tabops.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def empty_audit_engine(url: str) -> Engine:
    """An engine with the audit schema migrated and its tables emptied."""
    from tabops.store.migrate import upgrade
    from tabops.store.schema import drift_runs, feedback, prediction_requests, predictions

    engine = create_db_engine(url)
    upgrade(engine)
    with engine.begin() as conn:
        for table in (feedback, predictions, prediction_requests, drift_runs):
            conn.execute(table.delete())
    return engine


@pytest.fixture
def audit_engine(db_url: str) -> Iterator[Engine]:
    """An engine with the audit schema migrated and its tables empty."""
    engine = empty_audit_engine(db_url)
    yield engine
    engine.dispose()


from tests.liveapi import live_api  # noqa: E402, F401  (the web UI tests' API process)
