"""The servers a bench starts, as real processes: start, wait until ready, stop; and what
their worker processes weigh (RSS, PSS, USS read from /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def process_tree(root: int) -> list[int]:
    """The pids of ``root`` and all its descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces: fields resume after its closing parenthesis
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_kb(pid: int) -> int:
    """VmRSS of one process in kB (0 when it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_rss(root: int) -> dict[str, Any]:
    """RSS of a server's worker processes: the leaves of its process tree.

    Args:
        root: The pid of the process that was started (the server's parent process).

    Returns:
        The workers' pids and command lines, the sum and mean of their RSS in MB, and the
        RSS of the whole tree.
    """
    tree = process_tree(root)
    parents = {pid for pid in tree if any(_ppid(c) == pid for c in tree)}
    # leaves of the tree, less multiprocessing's helper processes (not serving anything)
    workers = [
        pid for pid in tree if pid not in parents and "resource_tracker" not in _cmdline(pid)
    ] or [root]
    per = [rss_kb(pid) / 1024 for pid in workers]
    shared = [smaps_kb(pid) for pid in workers]
    return {
        "workers": len(workers),
        "worker_pids": workers,
        "worker_commands": [_cmdline(pid)[:160] for pid in workers],
        "rss_workers_mb": round(sum(per), 1),
        "rss_per_worker_mb": round(sum(per) / len(per), 1),
        # PSS splits shared pages among their users; USS counts a worker's own pages only
        "pss_per_worker_mb": round(sum(m["pss"] for m in shared) / len(shared) / 1024, 1),
        "uss_per_worker_mb": round(sum(m["uss"] for m in shared) / len(shared) / 1024, 1),
        "rss_tree_mb": round(sum(rss_kb(pid) for pid in tree) / 1024, 1),
        "pss_tree_mb": round(sum(smaps_kb(pid)["pss"] for pid in tree) / 1024, 1),
    }


def smaps_kb(pid: int) -> dict[str, int]:
    """Proportional (PSS) and unique (USS) set sizes of one process in kB (0 when gone)."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"pss": fields.get("Pss", 0), "uss": private}


def _cmdline(pid: int) -> str:
    """A process's command line, arguments joined by blanks ("" when it has gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    """A process's parent pid (-1 when it has gone)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


@contextmanager
def peer_process(
    command: list[str],
    env: dict[str, str],
    port: int,
    ready_path: str,
    log: Path,
    cwd: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A peer server in its own process group, logging to ``log``, once ``ready_path``
    answers 200; the whole group is stopped on exit.

    Yields:
        The server's base URL and its process.
    """
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, f"{base}{ready_path}", log)
        yield base, proc
    finally:
        stop_group(proc)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail with the log when the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready in {timeout} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
