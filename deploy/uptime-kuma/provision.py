"""Create or update Uptime Kuma's monitors of tabops (the compose one-shot `kuma-setup`).

Reads monitors.yml beside this file, waits for Uptime Kuma, creates its admin user on a new
instance, then adds each monitor that is missing (matched by name) and updates those whose
settings differ. Monitors created by hand are left alone. Run again, it changes nothing.
Through uptime-kuma-api (Uptime Kuma's Socket.IO API; 1.x servers).

Environment: KUMA_URL (default http://uptime-kuma:3001), KUMA_USERNAME (default admin),
KUMA_PASSWORD (required), KUMA_MONITORS (default: monitors.yml beside this file),
KUMA_WAIT_S (default 180).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from uptime_kuma_api import MonitorType, UptimeKumaApi

log = logging.getLogger("kuma-setup")

HERE = Path(__file__).resolve().parent


def load_monitors(path: Path) -> list[dict[str, Any]]:
    """The monitors of the file, with ``type`` as uptime-kuma-api's MonitorType."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    monitors = []
    for entry in data["monitors"]:
        monitor = dict(entry)
        monitor["type"] = MonitorType(monitor["type"])
        monitors.append(monitor)
    names = [m["name"] for m in monitors]
    if len(set(names)) != len(names):
        raise ValueError(f"monitor names must be unique: {names}")
    return monitors


def _differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    for key, value in wanted.items():
        have = current.get(key)
        if isinstance(value, MonitorType):
            value = value.value
        if isinstance(have, MonitorType):
            have = have.value
        if have != value:
            return True
    return False


def plan(
    existing: list[dict[str, Any]], wanted: list[dict[str, Any]]
) -> list[tuple[str, int | None, dict[str, Any]]]:
    """What to do: ("add", None, monitor) or ("edit", id, monitor), nothing for monitors
    that already have these settings."""
    by_name = {m["name"]: m for m in existing}
    steps: list[tuple[str, int | None, dict[str, Any]]] = []
    for monitor in wanted:
        current = by_name.get(monitor["name"])
        if current is None:
            steps.append(("add", None, monitor))
        elif _differs(current, monitor):
            steps.append(("edit", int(current["id"]), monitor))
    return steps


def connect(url: str, wait_s: float) -> UptimeKumaApi:
    """A connected client, retrying while Uptime Kuma starts."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return UptimeKumaApi(url, timeout=30, wait_events=1)
        except Exception as exc:  # not up yet: connection refused, handshake failed
            if time.monotonic() > deadline:
                message = f"Uptime Kuma at {url} did not answer in {wait_s:.0f} s: {exc}"
                raise SystemExit(message) from exc
            log.info("waiting for Uptime Kuma at %s (%s)", url, exc)
            time.sleep(3)


def provision(
    api: UptimeKumaApi, username: str, password: str, monitors: list[dict[str, Any]]
) -> None:
    """Set up the admin user if needed, log in, and apply :func:`plan`."""
    if api.need_setup():
        api.setup(username, password)
        log.info("created the Uptime Kuma user %s", username)
    api.login(username, password)
    steps = plan(api.get_monitors(), monitors)
    for action, monitor_id, monitor in steps:
        if action == "add":
            api.add_monitor(**monitor)
        else:
            api.edit_monitor(monitor_id, **monitor)
        log.info("%s monitor %r", "added" if action == "add" else "updated", monitor["name"])
    log.info("%d monitors, %d changed", len(monitors), len(steps))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    password = os.environ.get("KUMA_PASSWORD", "")
    if not password:
        raise SystemExit("KUMA_PASSWORD is not set")
    monitors = load_monitors(Path(os.environ.get("KUMA_MONITORS", HERE / "monitors.yml")))
    url = os.environ.get("KUMA_URL", "http://uptime-kuma:3001")
    api = connect(url, float(os.environ.get("KUMA_WAIT_S", "180")))
    try:
        provision(api, os.environ.get("KUMA_USERNAME", "admin"), password, monitors)
    finally:
        api.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
