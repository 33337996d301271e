"""Reference servers: what the framework alone costs, as a floor for tabops's own work.

Two applications that do nothing but what every HTTP prediction route must do (read the
JSON body, answer a constant JSON document), served by uvicorn with the same worker count
as tabops in the same bench run:

- ``fastapi_app``: an empty FastAPI POST route (``await request.body()``, return a dict);
- ``starlette_app``: the same route on bare Starlette.

:func:`reference_server` starts one of them as a real process on loopback, ready to answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.serverproc import free_port

from bench.procs import peer_process

ANSWER: dict[str, Any] = {
    "label": "good",
    "probabilities": {"bad": 0.25, "good": 0.75},
    "model_version": "1",
}
"""The constant both routes answer: about the size of a tabops prediction."""

REPO = Path(__file__).resolve().parents[1]

fastapi_app = FastAPI()


@fastapi_app.get("/ping")
async def fastapi_ping() -> dict[str, str]:
    """Readiness, for the bench (not measured)."""
    return {"status": "ok"}


@fastapi_app.post("/predict")
async def fastapi_predict(request: Request) -> dict[str, Any]:
    """Read the body, answer a constant."""
    await request.body()
    return ANSWER


async def _starlette_predict(request: Any) -> JSONResponse:
    await request.body()
    return JSONResponse(ANSWER)


async def _starlette_ping(request: Any) -> JSONResponse:
    return JSONResponse({"status": "ok"})


starlette_app = Starlette(
    routes=[
        Route("/predict", _starlette_predict, methods=["POST"]),
        Route("/ping", _starlette_ping),
    ]
)

APPS = {
    "floor-fastapi": "bench.reference:fastapi_app",
    "floor-starlette": "bench.reference:starlette_app",
}
"""The reference servers, named ``floor-*``: the framework's own cost, below which no
server on it can go."""


@contextmanager
def reference_server(name: str, workers: int, log: Path) -> Iterator[tuple[str, Any]]:
    """One reference app under uvicorn (``workers`` processes, no access log).

    Args:
        name: A key of :data:`APPS`.
        workers: Worker processes.
        log: Where the server's output goes.

    Yields:
        The URL of its route and its process (the leader of its own process group).
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        APPS[name],
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with peer_process(command, env, port, "/ping", log, cwd=REPO) as (base, proc):
        yield f"{base}/predict", proc
