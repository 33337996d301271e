"""Where the time of one audited prediction goes: a sampling profile of the workers.

While wrk drives the server, ``py-spy record --nonblocking`` samples every thread of every
worker process (the event loop and the audit writer's thread alike); idle threads are not
sampled. Each sampled stack is put in one stage, by its innermost frame that belongs to a
module that names a stage (frames of general-purpose libraries such as pydantic, numpy or
json are charged to the tabops or framework code that called them). The CPU seconds the
workers spent during the run (``/proc/PID/stat``), divided by the requests answered, give
the CPU cost of one request; each stage's share of the samples splits it.

    python -m bench.profile URL --pids 123 124 --duration 8
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import WrkResult, wrk

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")

Rule = tuple[str, Callable[[str, str], bool]]


def _in(*parts: str) -> Callable[[str, str], bool]:
    """A frame of a file whose path holds one of ``parts`` (py-spy shortens paths to the
    package: ``tabops/store/writer.py``, ``asyncio/base_events.py``, ``uuid.py``)."""
    return lambda func, file: any(p in f"/{file}" for p in parts)


def _calls(path: str, *funcs: str) -> Callable[[str, str], bool]:
    """A frame of one of ``funcs`` in a file whose path holds ``path``."""
    return lambda func, file: path in f"/{file}" and func in funcs


# first match wins, per frame; frames are read from the innermost outwards
STAGES: list[Rule] = [
    ("response (serialise the answer)", _calls("fastapi/routing.py", "serialize_response")),
    ("response (serialise the answer)", _in("tabops/serving/calls.py", "tabops/spec/derive.py")),
    ("response (serialise the answer)", _in("starlette/responses.py", "fastapi/encoders.py")),
    ("parse and validate the body", _calls("fastapi/routing.py", "get_request_handler", "app")),
    ("parse and validate the body", _in("tabops/serving/requests.py", "tabops/scoring/columnar")),
    (
        "parse and validate the body",
        _calls("tabops/serving/models.py", "parse_records", "_validate"),
    ),
    ("score (model)", _in("tabops/scoring/", "sklearn/", "scipy/")),
    ("audit row and writer", _in("tabops/store/", "sqlalchemy/", "psycopg/", "sqlite3/")),
    ("prediction ids", _in("tabops/ids.py", "/uuid.py")),
    (
        "metrics (Prometheus)",
        _in("prometheus_client/", "tabops/telemetry/metrics", "tabops/api/metrics"),
    ),
    ("auth, limits, edge checks", _in("tabops/api/auth", "tabops/api/limits", "tabops/api/edge")),
    ("auth, limits, edge checks", _in("/limits/", "tabops/api/deps.py")),
    (
        "request context and logs",
        _in("tabops/api/context.py", "tabops/api/middleware.py", "tabops/telemetry/", "/logging/"),
    ),
    ("data plane (shadow, envelope, glue)", _in("tabops/serving/", "tabops/api/")),
    ("other tabops code", _in("tabops/")),
    ("HTTP server and framework", _in("uvicorn/", "h11/", "httptools/", "starlette/", "fastapi/")),
    ("HTTP server and framework", _in("anyio/", "gunicorn/", "uvloop/")),
    ("event loop", _in("asyncio/", "selectors.py", "threading.py", "concurrent/futures")),
]


def stage_of(stack: list[str]) -> str:
    """The stage of one sampled stack (outermost frame first, as py-spy writes it)."""
    for frame in reversed(stack):
        m = _FRAME.match(frame)
        func, file = (m.group("func"), m.group("file")) if m else (frame, "")
        for stage, matches in STAGES:
            if matches(func, file):
                return stage
    return "other (interpreter, libraries)"


_WAITS = (
    _calls("/threading.py", "Condition.wait", "Event.wait"),
    _calls("concurrent/futures/thread.py", "_worker"),
    _calls("psycopg/connection.py", "Connection.wait"),
)
"""Innermost frames of a thread blocked in a wait: the database watchdog's tick, an idle
executor thread, the audit writer waiting for the server's answer (psycopg's C poll; its
result parsing runs in Python frames below this one). py-spy's ``--nonblocking`` sampling
does not always see that such a thread sleeps; counted, the first two took ~8% of the
samples (the "event loop" stage) while ``/proc`` showed those threads using no CPU at
all, and the writer's waits ~7% (its thread used about half that)."""


def is_waiting(stack: list[str]) -> bool:
    """Whether a sampled stack is a thread blocked in a wait (using no CPU)."""
    if not stack:
        return False
    m = _FRAME.match(stack[-1])
    func, file = (m.group("func"), m.group("file")) if m else (stack[-1], "")
    return any(wait(func, file) for wait in _WAITS)


def read_raw(path: Path) -> Counter[str]:
    """Samples per stage from py-spy's ``--format raw`` output (``a;b;c COUNT`` lines),
    less the samples of threads blocked in a wait (:func:`is_waiting`)."""
    samples: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            # the first frame is the thread ("process 12:"/"thread 0x..") when py-spy adds it
            frames = [f for f in stack.split(";") if "(" in f]
            if not is_waiting(frames):
                samples[stage_of(frames)] += int(count)
    return samples


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds the processes have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick


@dataclass
class StageProfile:
    """Where the CPU time of one request goes."""

    wrk: WrkResult
    cpu_us_per_request: float
    samples: int
    stages: dict[str, float]
    """Stage -> share of the samples (0..1), largest first."""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "stage": s,
                "share": round(f, 4),
                "us_per_request": round(f * self.cpu_us_per_request, 1),
            }
            for s, f in self.stages.items()
        ]

    def table(self) -> str:
        lines = [f"{'stage':<40}{'share':>8}{'µs/request':>12}"]
        lines += [
            f"{r['stage']:<40}{r['share'] * 100:>7.1f}%{r['us_per_request']:>12.1f}"
            for r in self.rows()
        ]
        lines.append(
            f"{'all (CPU of the workers)':<40}{100:>7.1f}%{self.cpu_us_per_request:>12.1f}"
        )
        return "\n".join(lines)


def profile(
    url: str,
    body: dict[str, Any],
    pids: list[int],
    connections: int,
    duration: int,
    rate: int = 250,
) -> StageProfile:
    """Drive ``url`` with wrk while py-spy samples the worker processes ``pids``.

    Raises:
        RuntimeError: py-spy is not installed, or recorded nothing.
    """
    spy = shutil.which(
        "py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    work = Path(tempfile.mkdtemp(prefix="tabops-profile-"))
    outputs = [work / f"{pid}.txt" for pid in pids]
    spies = [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(duration),
                "--rate",
                str(rate),
                "--nonblocking",
                "--threads",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for pid, out in zip(pids, outputs, strict=True)
    ]
    before = cpu_seconds(pids)
    result = wrk(url, body, connections, duration)
    used = cpu_seconds(pids) - before
    samples: Counter[str] = Counter()
    for proc, out in zip(spies, outputs, strict=True):
        _, err = proc.communicate(timeout=duration + 60)
        if out.exists():
            samples += read_raw(out)
        elif proc.returncode:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")
    shutil.rmtree(work, ignore_errors=True)
    total = sum(samples.values())
    if not total:
        raise RuntimeError("py-spy recorded no sample")
    return StageProfile(
        wrk=result,
        cpu_us_per_request=used / max(result.requests, 1) * 1e6,
        samples=total,
        stages={s: n / total for s, n in samples.most_common()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--pids", type=int, nargs="+", required=True)
    parser.add_argument("--body", default="{}", help="JSON body of every request")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=8)
    args = parser.parse_args()
    found = profile(args.url, json.loads(args.body), args.pids, args.connections, args.duration)
    print(found.table())


if __name__ == "__main__":
    main()
