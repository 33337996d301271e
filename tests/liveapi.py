"""A real API process for the web UI's tests (tests/ui with AppTest, tests/e2e with a browser),
on models trained for them (credit and iris) in their own SQLite database and MLflow store:
promotions there touch no other test. The fixture is registered in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tabops.config import Settings
from tests.conftest import REPO, make_settings, seed_and_train
from tests.serverproc import ServerProcess, serve_env

APP = REPO / "src" / "tabops" / "ui" / "app.py"


@dataclass(frozen=True)
class LiveApi:
    """A running API and the settings it was started with."""

    base: str
    settings: Settings


@pytest.fixture(scope="session")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """`tabops serve` answering for credit and iris (anonymous predictions allowed)."""
    root = tmp_path_factory.mktemp("ui-api")
    settings = make_settings(root / "var")
    seed_and_train(settings, ["credit", "iris"])
    env = serve_env(
        settings,
        TABOPS_API__USECASES='["credit", "iris"]',
        TABOPS_MONITOR__ENABLED="false",
        TABOPS_LIFECYCLE__POLL_INTERVAL_S="1",
        # small: the batch page's files are over it, and must be sent again in halves
        TABOPS_API__MAX_BATCH="4",
    )
    with ServerProcess(env, root / "serve.log") as server:
        yield LiveApi(server.base, settings)
