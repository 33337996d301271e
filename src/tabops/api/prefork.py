"""Several worker processes that share the loaded models: gunicorn's pre-fork model.

uvicorn's own supervisor starts its workers with ``spawn``: each imports MLflow,
scikit-learn, pandas and the app, and loads every model, from scratch (~350 MB each).
Here gunicorn's arbiter imports the app and loads the champions once, in the parent
(``preload_app``) with the modules uvicorn will use, freezes that heap (see
:func:`~tabops.api.app.settle_heap`), then forks the workers, which run uvicorn's event
loop through :class:`Worker` (``uvicorn_worker.UvicornWorker``'s) and share those pages
copy-on-write. The arbiter also restarts a worker that dies and stops
them all gracefully on SIGTERM. Each worker's lifespan still opens its own database
engine, audit writer and registry poller, and follows the champion alias from there.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from typing import Any

from fastapi import FastAPI
from gunicorn.app.base import BaseApplication
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from tabops.api.transport import SERVER_OPTIONS
from tabops.config import Settings
from tabops.telemetry.logging import logging_config, secrets_of

__all__ = ["PreforkServer", "Worker"]

log = logging.getLogger(__name__)


class Worker(UvicornWorker):  # type: ignore[misc]  # gunicorn's Worker has no type hints
    """uvicorn's gunicorn worker, with one write per response
    (:mod:`tabops.api.transport`) and without WebSocket support: tabops has no WebSocket
    route, and uvicorn would import the ``websockets`` package in every worker for it."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, **SERVER_OPTIONS}


def _share_server_modules() -> None:
    """Import, in the arbiter, the modules each worker's uvicorn imports when it starts:
    its event loop (uvloop) and its lifespan; its HTTP protocol (httptools) came with
    :mod:`tabops.api.transport`. Imported after the fork, they were about 4 MB of private
    memory in each worker; imported before, their pages are shared."""
    import uvicorn.lifespan.on  # noqa: F401

    with contextlib.suppress(ImportError):  # uvloop is optional: asyncio's loop otherwise
        import uvicorn.loops.uvloop  # noqa: F401
        import uvloop  # noqa: F401


class PreforkServer(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn running the tabops app with ``settings.api.workers`` forked workers.

    Args:
        settings: All settings.
        metrics_dir: The folder the workers share their metric files in.
    """

    def __init__(self, settings: Settings, metrics_dir: str) -> None:
        self.settings = settings
        self.metrics_dir = metrics_dir
        super().__init__()

    def load_config(self) -> None:
        api = self.settings.api
        for key, value in {
            "bind": [f"{api.host}:{api.port}"],
            "workers": api.workers,
            "worker_class": Worker,
            "preload_app": True,
            "keepalive": int(api.keep_alive_s),
            # tabops's own access line has the request id and latency (api/context.py)
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            # the tabops formatter in the arbiter and, after the fork, in every worker
            "logconfig_dict": logging_config(
                self.settings.log.format, self.settings.log.level, secrets_of(self.settings)
            ),
            # a worker whose event loop stops answering the arbiter for this long is
            # replaced; training runs in its own processes, never on the loop
            "timeout": 120,
            # SIGTERM: the workers drain (api/shutdown.py), then finish what is in flight
            "graceful_timeout": int(api.drain_s + api.shutdown_timeout_s) + 1,
            "child_exit": self._child_exit,
            "post_fork": _die_with_the_arbiter,
        }.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:  # gunicorn 25.1 and later
            # no control socket in $HOME: two servers on one host would share its path
            self.cfg.set("control_socket_disable", True)

    def load(self) -> FastAPI:
        """Runs once, in the arbiter, before the workers fork."""
        from tabops.api.app import create_app, preload_models

        if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            raise RuntimeError("prometheus_client was imported before its folder was set")
        _share_server_modules()
        app = create_app(self.settings)
        preload_models(app)
        return app

    def _child_exit(self, server: Any, worker: Any) -> None:
        from pathlib import Path

        from tabops.telemetry.multiproc import mark_dead

        mark_dead(Path(self.metrics_dir), worker.pid)


_PR_SET_PDEATHSIG = 1


def _die_with_the_arbiter(server: Any, worker: Any) -> None:
    """In a new worker (Linux): be sent SIGTERM when the arbiter dies, even by SIGKILL or
    OOM, so that no orphaned worker goes on serving on the inherited socket (uvicorn's
    workers do not watch their parent the way gunicorn's sync workers do)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return
    if os.getppid() != worker.ppid:  # the arbiter died between the fork and the prctl
        os.kill(os.getpid(), signal.SIGTERM)
