"""The OpenAPI contract, checked by schemathesis (every check) against a real server, with
a predict key and with an admin key: zero failures.

What is left out, and why: ``POST /usecases/{name}/train`` in the admin run, because the
values of model hyperparameters are checked by scikit-learn when training starts (no JSON
schema describes them; the route's 202/409/422 are covered by ``test_lifecycle.py``), and
each accepted call would train a model for seconds to minutes. And the V2 ``infer``
operations run without the positive-data check: the protocol's request schema describes
any tensors, while a model accepts only its own features with consistent shapes (a
schema-valid request of made-up tensors is rightly refused with 400); every other check
runs on them, and ``test_v2.py`` drives them with Triton's own client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_settings, seed_and_train
from tests.serverproc import ServerProcess, serve_env

pytestmark = pytest.mark.slow
PREDICT_KEY = "predict-key-Zq3vL9xR2mK7tW4y"
ADMIN_KEY = "admin-key-Zq3vL9xR2mK7tW4yB8"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """Its own stores (the admin run promotes and deletes aliases): iris and credit."""
    tmp = tmp_path_factory.mktemp("contract")
    settings = make_settings(tmp / "var", api={"usecases": ["iris", "credit"]})
    seed_and_train(settings, ["iris", "credit"])
    env = serve_env(
        settings,
        TABOPS_API__USECASES='["iris","credit"]',
        TABOPS_AUTH__ANONYMOUS_PREDICT="false",
        TABOPS_AUTH__PREDICT_KEY=PREDICT_KEY,
        TABOPS_AUTH__ADMIN_KEY=ADMIN_KEY,
        TABOPS_MONITOR__ENABLED="false",
    )
    return ServerProcess(env, tmp / "serve.log")


def _schemathesis(
    base: str, key: str, report: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [
            str(st),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            "-H",
            f"Authorization: Bearer {key}",
            *extra,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=report,
    )


@pytest.mark.parametrize(
    ("key", "extra"),
    [
        (PREDICT_KEY, ("--exclude-path-regex", "/infer$")),
        (ADMIN_KEY, ("--exclude-path-regex", "/train$|/infer$")),
        (
            PREDICT_KEY,
            ("--include-path-regex", "/infer$", "--exclude-checks", "positive_data_acceptance"),
        ),
    ],
    ids=["predict-key", "admin-key", "v2-infer"],
)
def test_schemathesis_finds_no_failure(
    server: ServerProcess, tmp_path: Path, key: str, extra: tuple[str, ...]
) -> None:
    with server:
        result = _schemathesis(server.base, key, tmp_path, *extra)
    # schemathesis exits 1 on any failure of any check; its report is the message
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
    assert "Tested:" in result.stdout  # it did run the operations
