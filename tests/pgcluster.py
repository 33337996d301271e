"""A private, throwaway PostgreSQL cluster for chaos tests: ``initdb`` and ``pg_ctl`` on a
free loopback port in a temporary folder, run as the ``postgres`` user. Tests stop, kill,
freeze and restart it at will; the machine's shared server is never touched."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.serverproc import free_port

__all__ = ["PgCluster", "pg_binaries"]

_OWNER = "postgres"


def pg_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is absent."""
    for found in (shutil.which("initdb"), shutil.which("pg_ctl")):
        if found:
            return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


def _as_owner() -> list[str]:
    if os.geteuid() != 0:
        return []  # already an unprivileged user: run as ourselves
    return ["runuser", "-u", _OWNER, "--"]


class PgCluster:
    """A PostgreSQL cluster of our own: start, stop (fast/immediate), kill -9, freeze."""

    def __init__(self) -> None:
        bins = pg_binaries()
        assert bins is not None, "PostgreSQL binaries not found"
        self.bin = bins
        # its own folder under the system's temporary folder, which the owner can reach
        self.root = Path(tempfile.mkdtemp(prefix="tabops-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg://{_OWNER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [*_as_owner(), str(self.bin / args[0]), *args[1:]],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def init(self) -> PgCluster:
        self.sockets.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(_OWNER)
            for path in (self.root, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", _OWNER, "--no-sync")
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c fsync=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def pids(self) -> list[int]:
        """The postmaster and every backend of the cluster."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [postmaster, *(int(c) for c in children)]

    def freeze(self) -> list[int]:
        """SIGSTOP every process of the cluster: a hung database (or a black-holed network)."""
        frozen = self.pids()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        return frozen

    def thaw(self, frozen: list[int]) -> None:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self, keep_log: Path | None = None) -> None:
        """Stop the cluster and delete its folder (its log copied to ``keep_log`` first)."""
        if keep_log is not None and self.log.exists():
            shutil.copyfile(self.log, keep_log)
        if self.running():
            try:
                self.stop("immediate")
            except subprocess.SubprocessError:
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        self.init().start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()
