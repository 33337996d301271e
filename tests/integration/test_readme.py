"""The README's curl examples, run as written against a served instance.

Every ``sh`` block of README.md that calls curl (but the walk-through of a use case of the
reader's own, which has no data here) runs in bash, command by command, against
`tabops serve` on a free port (``localhost:8000`` in the text is that port), with the
bundled use cases the examples use seeded and trained as `make run` does, and the admin key
in ``var/admin.key`` as `make run` leaves it. Each command must succeed with a 2xx answer,
and the response shown after the quick start must be what the request really returns.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_KEY, REPO, make_settings, require, seed_and_train
from tests.serverproc import ServerProcess, serve_env

pytestmark = pytest.mark.slow

README = (REPO / "README.md").read_text(encoding="utf-8")
_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
_MARK = "__tabops_readme_command_done__"


def _blocks(kind: str, text: str = README) -> list[str]:
    """The text of each fenced block of this kind."""
    return [m.group(2) for m in _BLOCK.finditer(text) if m.group(1) == kind]


def _commands(block: str) -> list[str]:
    """The block's commands: a command goes on over lines until its quotes close."""
    commands, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current = f"{current}\n{line}" if current else line
        try:
            shlex.split(current)
        except ValueError:  # an open quote: the command goes on
            continue
        commands.append(current)
        current = ""
    assert not current, f"unterminated command: {current}"
    return commands


def _own_usecase() -> str:
    """The name of the README's "your own use case" example (its YAML spec), which has no
    data here: its walk-through is shown, not run."""
    (spec,) = [text for text in _blocks("yaml") if text.startswith("name: ")]
    return spec.split("\n", 1)[0].removeprefix("name: ").strip()


def _curl_blocks() -> list[list[str]]:
    """The blocks that call curl against the bundled use cases, command by command."""
    own = f"/usecases/{_own_usecase()}/"
    return [_commands(text) for text in _blocks("sh") if "curl " in text and own not in text]


def test_the_readme_has_the_examples_this_test_runs() -> None:
    blocks = _curl_blocks()
    assert len(blocks) >= 2
    flat = [c for block in blocks for c in block]
    assert any("/usecases/credit/predict" in c for c in flat)
    assert any("/train" in c for c in flat) and any("/promote" in c for c in flat)
    assert _commands("a 'b\nc'\n# note\nd") == ["a 'b\nc'", "d"]
    # only the walk-through of a use case of one's own is left out
    own = [t for t in _blocks("sh") if "curl " in t and f"/usecases/{_own_usecase()}/" in t]
    assert _own_usecase() == "loans" and len(own) == 1


def _run(command: str, prelude: list[str], cwd: Path, base: str, job_id: str | None) -> str:
    """Run one command in bash after the block's earlier assignments; its output."""
    command = command.replace("localhost:8000", base)
    if "<job id>" in command:
        assert job_id is not None, "the job id comes from the train example before it"
        command = command.replace("<job id>", job_id)
    # fail on an HTTP error and show it
    command = command.replace("curl -s ", "curl -sS --fail-with-body ")
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", "\n".join([*prelude, command])],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    return done.stdout.strip()


def _documented_prediction() -> tuple[str, dict[str, Any]]:
    """The quick start's predict command and the response shown after it."""
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (sh,) = [text for text in _blocks("sh", quick) if "/predict" in text]
    (command,) = [c for c in _commands(sh) if "/predict" in c]
    (shown,) = _blocks("json", quick)
    documented = json.loads(shown.replace("…", ""))
    assert isinstance(documented, dict)
    return command, documented


def test_the_readme_curl_examples_answer_as_documented(tmp_path: Path) -> None:
    require(shutil.which("curl") is not None, "curl is not installed")
    settings = make_settings(tmp_path / "var", api={"usecases": ["credit", "iris"]})
    seed_and_train(settings, ["credit", "iris"])
    (tmp_path / "var" / "admin.key").write_text(ADMIN_KEY + "\n")  # as `make run` leaves it
    env = serve_env(settings, TABOPS_API__USECASES='["credit","iris"]')
    with ServerProcess(env, tmp_path / "serve.log") as server:
        base = server.base.removeprefix("http://")
        outputs: dict[str, str] = {}
        job_id = None
        for block in _curl_blocks():
            prelude: list[str] = []
            for command in block:
                if re.fullmatch(r"[A-Z_]+=.*", command):  # ADMIN="Authorization: ..."
                    prelude.append(command)
                    continue
                outputs[command] = _run(command, prelude, tmp_path, base, job_id)
                if "/train " in command:
                    job = json.loads(outputs[command])
                    assert job["state"] in ("queued", "running"), job
                    job_id = job["id"]
        assert job_id is not None
        _wait_for_job(tmp_path, base, job_id)  # not stopped in the middle of training
    command, documented = _documented_prediction()
    answered = json.loads(outputs[command])
    assert set(documented) <= set(answered)
    assert answered["label"] == documented["label"]
    assert answered["model_version"] == documented["model_version"]
    # the README rounds to 3 decimals (the threshold to 2)
    for label, p in documented["probabilities"].items():
        assert answered["probabilities"][label] == pytest.approx(p, abs=0.0005), answered
    assert answered["threshold"] == pytest.approx(documented["threshold"], abs=0.005), answered
    assert re.fullmatch(r"[0-9a-f-]{36}", answered["prediction_id"])
    listed = json.loads(
        next(o for c, o in outputs.items() if c.startswith("curl -s localhost:8000/usecases |"))
    )
    assert {u["name"] for u in listed} == {"credit", "iris"}


def _wait_for_job(cwd: Path, base: str, job_id: str) -> None:
    """Until the README's training job is over, and check that it succeeded."""
    script = (
        f'for _ in $(seq 1 600); do s=$(curl -sS {base}/jobs/{job_id} -H "Authorization: Bearer '
        f'$(cat var/admin.key)"); case "$s" in *\'"state":"succeeded"\'*|*\'"state":"failed"\'*) '
        'echo "$s"; exit 0;; esac; sleep 0.5; done; exit 1'
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=330
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["state"] == "succeeded", done.stdout
