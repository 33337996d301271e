"""The folder in which the worker processes of one server share their metric files.

prometheus_client's multiprocess mode keeps each process's values in memory-mapped files
(``counter_<pid>.db``, ``gauge_livesum_<pid>.db``...) in the folder named by
``PROMETHEUS_MULTIPROC_DIR``, which it reads once, when it is first imported. The folder
must therefore exist and be named before the workers start, must start empty (or the
values of an earlier run count again), and the files of a dead process's live gauges
must be dropped (``mark_process_dead``), or its queue depth and models would stay.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["MULTIPROC_ENV", "mark_dead", "multiprocess_dir", "multiprocess_metrics", "reap_dead"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The variable prometheus_client reads, at import, to switch to multiprocess mode."""

_SERVE_DIR = re.compile(r"serve-(\d+)")
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def multiprocess_dir() -> Path | None:
    """The folder this process shares metric files in, or None in single-process mode.

    prometheus_client decides its mode from ``PROMETHEUS_MULTIPROC_DIR`` when it is first
    imported; reading the same variable keeps :class:`~tabops.telemetry.metrics.Metrics`
    in agreement with it.

    Returns:
        The folder named by ``PROMETHEUS_MULTIPROC_DIR``, or None when it is not set.
    """
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


@contextlib.contextmanager
def multiprocess_metrics(base: Path, workers: int) -> Iterator[Path | None]:
    """Set up, for the duration of a server, the folder its worker processes share.

    With several workers: an empty folder ``base/serve-<pid>`` is created and named in
    ``PROMETHEUS_MULTIPROC_DIR`` (which the workers inherit), folders left by servers that
    are no longer running are removed, and the folder is removed on exit. Values of an
    earlier run must not be counted again, and two servers on one ``var_dir`` must not
    share files. With one worker the variable is unset: a single process needs no files.

    Args:
        base: Where the per-server folders go (``Settings.metrics_dir``).
        workers: Worker processes of the server.

    Yields:
        The folder, or None with one worker.
    """
    if workers <= 1:
        os.environ.pop(MULTIPROC_ENV, None)
        yield None
        return
    base.mkdir(parents=True, exist_ok=True)
    for pid in _file_pids(base, _SERVE_DIR):
        if not _alive(pid):
            shutil.rmtree(base / f"serve-{pid}", ignore_errors=True)
    folder = (base / f"serve-{os.getpid()}").resolve()
    shutil.rmtree(folder, ignore_errors=True)  # a container restarts with the same pid
    folder.mkdir()
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def mark_dead(folder: Path, pid: int | None = None) -> None:
    """Drop the live gauges of a process (this one by default) from the shared folder.

    Args:
        folder: The shared folder.
        pid: The process; None for the current one.
    """
    # imported here: prometheus_client picks its mode when first imported, and a server
    # imports this module before it names the folder
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(os.getpid() if pid is None else pid, str(folder))  # type: ignore[no-untyped-call]


def reap_dead(folder: Path) -> list[int]:
    """Drop the live gauges of every process of the folder that no longer runs.

    Args:
        folder: The shared folder.

    Returns:
        The process ids whose gauges were dropped.
    """
    dead = sorted({pid for pid in _file_pids(folder, _LIVE_GAUGE_FILE) if not _alive(pid)})
    for pid in dead:
        mark_dead(folder, pid)
    return dead


def _file_pids(folder: Path, pattern: re.Pattern[str]) -> Iterable[int]:
    for path in folder.iterdir() if folder.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if match:
            yield int(match.group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
