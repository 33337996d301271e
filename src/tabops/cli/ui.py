"""``tabops ui`` (the web UI) and ``tabops up`` (API, web UI and MLflow UI together)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated

import httpx
import typer

from tabops.cli._common import _fail, _settings, app, console

__all__ = ["Service", "Supervisor", "streamlit_command"]

_APP = Path(__file__).resolve().parents[1] / "ui" / "app.py"


def streamlit_command(host: str, port: int) -> list[str]:
    """The command that runs the UI: Streamlit, headless, no usage statistics sent."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(_APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
    ]


@app.command()
def ui(
    host: Annotated[str | None, typer.Option(help="Address to bind (TABOPS_UI__HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (TABOPS_UI__PORT)")] = None,
    api_url: Annotated[
        str | None, typer.Option(help="The API the UI calls (TABOPS_UI__API_URL)")
    ] = None,
) -> None:
    """Start the web UI: predict, batch, monitoring, models and feedback pages over the API.

    It talks to the API over HTTP only; users can change the URL and key in the sidebar.

    Example:
        tabops ui --port 8501 --api-url http://127.0.0.1:8000
    """
    from tabops.ui.context import load_settings

    settings = load_settings()
    if api_url:
        os.environ["TABOPS_UI__API_URL"] = api_url
    bind, listen = host or settings.host, port or settings.port
    console.print(f"tabops UI on http://{bind}:{listen}  (API: {api_url or settings.api_url})")
    sys.stdout.flush()
    command = streamlit_command(bind, listen)
    os.execv(command[0], command)  # Streamlit handles Ctrl-C and SIGTERM itself


@dataclass
class Service:
    """One process of ``tabops up``: what it runs and how to know it is ready."""

    name: str
    command: list[str]
    url: str
    health: str
    env: dict[str, str] = field(default_factory=dict)
    first: bool = True
    """False: start only once the services started before it are healthy (the MLflow UI
    waits for the API, which creates the embedded MLflow store: both creating it at once
    race on its migrations)."""
    proc: subprocess.Popen[bytes] | None = None


class Supervisor:
    """Starts services, waits for them to be healthy, and stops all of them together.

    Each service runs in its own session, so a Ctrl-C in the terminal reaches only the
    supervisor, which then stops the services in reverse order (SIGTERM, then SIGKILL
    after ``grace_s``).
    """

    def __init__(self, services: list[Service], log_dir: Path, grace_s: float = 20.0) -> None:
        self.services = services
        self.log_dir = log_dir
        self.grace_s = grace_s
        self.stopping = threading.Event()

    def start(self, timeout_s: float = 180.0) -> None:
        """Start the services, each one once those before it with ``first`` set are
        healthy, and wait until every one answers its health check.

        Raises:
            RuntimeError: a service exited or was not healthy in time (its log is named).
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        waiting: list[Service] = []
        for service in self.services:
            if service.first is False and waiting:
                self._wait_healthy(waiting, deadline, timeout_s)
            log = (self.log_dir / f"{service.name.lower().replace(' ', '-')}.log").open("ab")
            service.proc = subprocess.Popen(
                service.command,
                env={**os.environ, **service.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            waiting.append(service)
        self._wait_healthy(waiting, deadline, timeout_s)

    def _wait_healthy(self, waiting: list[Service], deadline: float, timeout_s: float) -> None:
        while waiting and not self.stopping.is_set():
            for service in list(waiting):
                self._check_alive(service)
                try:
                    healthy = httpx.get(service.url + service.health, timeout=2).status_code == 200
                except httpx.TransportError:
                    healthy = False
                if healthy:
                    console.print(f"[green]ready[/]  {service.name:<10} {service.url}")
                    waiting.remove(service)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(s.name for s in waiting)
                raise RuntimeError(
                    f"not ready in {timeout_s:.0f} s: {names} (logs in {self.log_dir})"
                )
            if waiting:
                self.stopping.wait(0.3)

    def _check_alive(self, service: Service) -> None:
        assert service.proc is not None
        code = service.proc.poll()
        if code is not None:
            log = self.log_dir / f"{service.name.lower().replace(' ', '-')}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise RuntimeError(
                f"{service.name} exited with code {code}; the end of {log}:\n" + "\n".join(tail)
            )

    def wait(self) -> None:
        """Block until asked to stop or until a service exits (which is an error)."""
        while not self.stopping.wait(0.5):
            for service in self.services:
                self._check_alive(service)

    def stop(self) -> None:
        """Stop every service: SIGTERM, then SIGKILL for those still running after the grace."""
        self.stopping.set()
        running = [s for s in reversed(self.services) if s.proc and s.proc.poll() is None]
        for service in running:
            assert service.proc is not None
            _signal_group(service.proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for service in running:
            assert service.proc is not None
            try:
                service.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(service.proc, signal.SIGKILL)
                service.proc.wait(timeout=10)
            # the MLflow UI's own workers (its job consumers) leave with it
            _signal_group(service.proc, signal.SIGKILL)
            console.print(f"[dim]stopped[/] {service.name}")


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal a service's whole process group (each runs in a session of its own)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address every service binds to")] = "127.0.0.1",
    api_port: Annotated[int | None, typer.Option(help="API port (TABOPS_API__PORT)")] = None,
    ui_port: Annotated[int | None, typer.Option(help="Web UI port (TABOPS_UI__PORT)")] = None,
    mlflow_port: Annotated[
        int | None, typer.Option(help="MLflow UI port (TABOPS_UI__MLFLOW_PORT)")
    ] = None,
    mlflow: Annotated[bool, typer.Option(help="Start the MLflow UI on the local store")] = True,
) -> None:
    """Start the API, the web UI and the MLflow UI together; Ctrl-C stops all three.

    The MLflow UI is started on the embedded store under the var folder; with a tracking
    server (TABOPS_MLFLOW__TRACKING_URI) the Models page links to that server instead.

    Example:
        tabops up --api-port 8000 --ui-port 8501 --mlflow-port 5000
    """
    settings = _settings()
    api_port = api_port or settings.api.port
    ui_port = ui_port or settings.ui.port
    mlflow_port = mlflow_port or settings.ui.mlflow_port
    api_url = f"http://{host}:{api_port}"
    remote = settings.mlflow.tracking_uri.startswith(("http://", "https://"))
    mlflow_url = settings.mlflow.tracking_uri if remote else f"http://{host}:{mlflow_port}"
    services = [
        Service(
            "API",
            [sys.executable, "-m", "tabops", "serve", "--host", host, "--port", str(api_port)],
            api_url,
            "/health",  # not /ready: an untrained use case keeps that at 503
        ),
    ]
    web = Service(
        "UI",
        streamlit_command(host, ui_port),
        f"http://{host}:{ui_port}",
        "/_stcore/health",
        env={
            "TABOPS_UI__API_URL": api_url,
            "TABOPS_UI__MLFLOW_URL": mlflow_url if (mlflow or remote) else "",
        },
    )
    services.append(web)
    if mlflow and not remote:
        (settings.var_dir / "mlartifacts").mkdir(parents=True, exist_ok=True)
        services.append(
            Service(
                "MLflow UI",
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--host",
                    host,
                    "--port",
                    str(mlflow_port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    settings.tracking_uri,
                    "--registry-store-uri",
                    settings.registry_uri,
                    "--default-artifact-root",
                    settings.artifact_root or (settings.var_dir / "mlartifacts").resolve().as_uri(),
                    "--no-serve-artifacts",
                ],
                mlflow_url,
                "/health",
                # MLflow's job consumers (huey) run in sessions of their own, so they outlive
                # a stopped server; tabops runs no MLflow jobs
                env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                first=False,
            )
        )
    supervisor = Supervisor(services, settings.var_dir / "logs")

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    console.print(
        f"starting the API, the web UI and the MLflow UI (logs in {settings.var_dir / 'logs'}) ..."
    )
    failure: str | None = None
    try:
        supervisor.start()
        if not supervisor.stopping.is_set():
            console.print()
            console.print(f"  Web UI     {web.url}")
            console.print(f"  API        {api_url}  (docs: {api_url}/docs)")
            if mlflow and not remote:
                console.print(f"  MLflow UI  {mlflow_url}")
            elif remote:
                console.print(f"  MLflow     {mlflow_url}")
            console.print("\nPress Ctrl-C to stop.")
            sys.stdout.flush()
            supervisor.wait()
    except RuntimeError as exc:
        failure = str(exc)
    finally:
        supervisor.stop()
    if failure is not None:
        raise _fail(failure)
