"""The container and orchestration files in deploy/ agree with the code and with each other.

No Docker engine or cluster is needed. The files are parsed and checked against what the
code really has: the settings pydantic-settings reads, the app's routes, the CLI's commands
and options, and the files in the repository.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, get_origin
from urllib.parse import urlsplit

import pytest
import typer.main
import yaml
from pydantic import BaseModel
from starlette.routing import Match

from tabops.api.app import create_app
from tabops.cli import app as cli_app
from tabops.config import AuditSettings, Settings
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SINGLE_ENTRYPOINT = DEPLOY / "single" / "entrypoint.sh"
KUMA = DEPLOY / "uptime-kuma"
DOCKERIGNORE = REPO / ".dockerignore"
SECRET_EXAMPLE = "secret.example.yaml"
"""Not in kustomization.yaml on purpose: `apply -k` must not overwrite the real Secret."""

_TABOPS_VAR = re.compile(r"(?<![A-Za-z0-9_])TABOPS_[A-Za-z0-9_]*[A-Za-z0-9]")
_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
_SECRET_NAME = re.compile(r"PASSWORD|_KEY$|SECRET")


# `tabops ui`, `tabops up` and the TABOPS_UI__* settings come with the web UI branch (issue
# 15), built in parallel with this one. While the CLI and Settings lack them, the deployment
# files may name them; once they exist, they are checked like every other command and setting.
_UI_BRANCH_COMMANDS = {"ui", "up"}
_UI_BRANCH_PREFIX = "TABOPS_UI__"


class MissingVariableError(Exception):
    """A ${VAR:?message} interpolation without a value: compose refuses to start."""


# --- reading the files ----------------------------------------------------------------------


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dockerfile_all() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of every stage, continuation lines joined and comments
    dropped."""
    instructions, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, args = (current + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's own instructions (its FROM first), by stage name, in file order."""
    stages: dict[str, list[tuple[str, str]]] = {}
    name = None  # global ARGs before the first FROM belong to no stage
    for keyword, args in _dockerfile_all():
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            stages[name] = []
        if name is not None:
            stages[name].append((keyword, args))
    return stages


def _dockerfile(stage: str | None = None) -> list[tuple[str, str]]:
    """The instructions that make a stage (default: the last one, which a plain `docker
    build` makes), with those of the stages it is built FROM before its own."""
    stages = _stages()
    name = stage or list(stages)[-1]
    own = stages[name]
    parent = own[0][1].split()[0]
    return (_dockerfile(parent) if parent in stages else []) + own


def _instructions(keyword: str, stage: str | None = None) -> list[str]:
    return [args for kw, args in _dockerfile(stage) if kw == keyword]


def _dockerfile_env(stage: str | None = None) -> dict[str, str]:
    pairs = (
        token.split("=", 1) for args in _instructions("ENV", stage) for token in shlex.split(args)
    )
    return dict((pair[0], pair[1]) for pair in pairs)


def _dockerfile_command(stage: str | None = None) -> list[str]:
    """What the image runs by default: ENTRYPOINT followed by CMD (both in exec form)."""
    entrypoint = json.loads(_instructions("ENTRYPOINT", stage)[-1])
    cmd = json.loads(_instructions("CMD", stage)[-1])
    assert isinstance(entrypoint, list) and isinstance(cmd, list), "use the exec (JSON) form"
    return [str(part) for part in entrypoint + cmd]


def _healthcheck_url() -> str:
    (args,) = _instructions("HEALTHCHECK")
    exec_form = json.loads(args[args.index("CMD") + len("CMD") :])
    assert exec_form[0] == "python", "slim images have no curl: the check must use python"
    match = re.search(r"https?://[^'\"\s]+", " ".join(exec_form))
    assert match is not None, f"no URL in HEALTHCHECK {args}"
    return match.group(0)


def _compose() -> dict[str, Any]:
    data = _yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def _service(name: str) -> dict[str, Any]:
    service = _compose()["services"][name]
    assert isinstance(service, dict)
    return service


def _env_example() -> dict[str, str]:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, over ``env`` only."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        found = env.get(name)
        if found is None or (found == "" and op is not None and op.startswith(":")):
            if op is not None and op.endswith("?"):
                raise MissingVariableError(f"{name}: {arg}")
            return arg if op is not None else ""
        return found

    return _INTERPOLATION.sub(substitute, value)


def _compose_environment(service: str, env: dict[str, str]) -> dict[str, str]:
    environment = _service(service).get("environment") or {}
    assert isinstance(environment, dict), "write environment as a mapping"
    return {key: _interpolate(str(value), env) for key, value in environment.items()}


def _k8s(name: str) -> dict[str, Any]:
    data = _yaml(K8S / name)
    assert isinstance(data, dict)
    return data


def _pod_spec(name: str) -> dict[str, Any]:
    spec = _k8s(name)["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def _api_container() -> dict[str, Any]:
    (container,) = _pod_spec("deployment.yaml")["containers"]
    assert isinstance(container, dict)
    return container


def _script_commands(script: str) -> list[list[str]]:
    """The `tabops ...` lines of a shell script (`exec tabops ...` too), as argument lists
    without `tabops`; ``${VAR:-default}`` is read as its default."""
    found = []
    for line in script.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = shlex.split(re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", line))
        if words[0] == "exec":
            words = words[1:]
        if words and words[0] == "tabops":
            # "$@" forwards the container's arguments: none by default (CMD [])
            found.append([w for w in words[1:] if w != "$@"])
    return found


def _option(args: list[str], name: str) -> str:
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {args}")


def _k8s_quantity(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


# --- what the code has ----------------------------------------------------------------------


def _setting_names(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, bool]]:
    """(name, free-form) per variable pydantic-settings reads: TABOPS_<FIELD>, and
    TABOPS_<FIELD>__<SUBFIELD> for nested models; a dict field takes any sub-name."""
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        yield variable, False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _setting_names(annotation, f"{variable}__")
        elif get_origin(annotation) is dict:
            yield f"{variable}__", True


def _is_setting(variable: str) -> bool:
    names = list(_setting_names(Settings, "TABOPS_"))
    upper = variable.upper()  # pydantic-settings is case-insensitive by default
    if upper.startswith(_UI_BRANCH_PREFIX) and "ui" not in Settings.model_fields:
        return True  # see _UI_BRANCH_COMMANDS
    return any(upper == n if not free else upper.startswith(n) and upper != n for n, free in names)


@cache
def _app() -> Any:
    return create_app(Settings())  # built, not started: the lifespan does not run


def _app_serves(path: str) -> bool:
    """Whether a GET of ``path`` reaches one of the app's routes, matched as the app does."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] == Match.FULL for route in _app().routes)


def _check_cli(args: list[str]) -> None:
    """Fail unless `tabops ARGS` names a real command and its options parse."""
    command: Any = typer.main.get_command(cli_app)
    name, rest = "tabops", list(args)
    if rest and rest[0] in _UI_BRANCH_COMMANDS and rest[0] not in command.commands:
        return  # see _UI_BRANCH_COMMANDS
    while hasattr(command, "commands"):  # a group: the next word is a sub-command
        assert rest, f"`tabops {' '.join(args)}` names no command"
        sub = command.commands.get(rest[0])
        assert sub is not None, f"`tabops {' '.join(args)}`: no command {rest[0]!r}"
        name, command, rest = rest[0], sub, rest[1:]
    try:
        command.make_context(name, rest)
    except Exception as exc:  # click's UsageError (typer may vendor click)
        pytest.fail(f"`tabops {' '.join(args)}`: {exc}")


def _tabops_invocations() -> dict[str, list[str]]:
    """Every tabops command line the deployment files run, by where it is."""
    found = {"Dockerfile ENTRYPOINT + CMD": _dockerfile_command()[1:]}
    found["compose api"] = [str(arg) for arg in _service("api")["command"]]
    found["compose ui"] = [str(arg) for arg in _service("ui")["command"]]
    for i, args in enumerate(_script_commands(SINGLE_ENTRYPOINT.read_text(encoding="utf-8"))):
        found[f"single image #{i}"] = args
    for i, args in enumerate(_script_commands(_service("init")["command"][0])):
        found[f"compose init #{i}"] = args
    found["k8s deployment"] = [str(arg) for arg in _api_container()["args"]]
    (job,) = _pod_spec("job.yaml")["containers"]
    for i, args in enumerate(_script_commands(job["args"][0])):
        found[f"k8s job #{i}"] = args
    return found


@pytest.fixture
def no_tabops_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read only what the test sets, not the developer's TABOPS_* variables."""
    for name in [n for n in os.environ if n.upper().startswith("TABOPS_")]:
        monkeypatch.delenv(name)


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.rglob("*.y*ml")), ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_every_yaml_file_parses(path: Path) -> None:
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert documents and all(isinstance(d, dict) for d in documents)


_NAMING_SETTINGS = [DOCKERFILE, COMPOSE, ENV_EXAMPLE, K8S / "configmap.yaml", K8S / SECRET_EXAMPLE]


@pytest.mark.parametrize(
    "path",
    sorted({*_NAMING_SETTINGS, *K8S.glob("*.yaml"), REPO / "docs/deployment.md"}),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_every_tabops_variable_named_is_a_setting(path: Path) -> None:
    named = set(_TABOPS_VAR.findall(path.read_text(encoding="utf-8")))
    assert named or path not in _NAMING_SETTINGS, f"{path.name} names no TABOPS_ variable"
    assert sorted(v for v in named if not _is_setting(v)) == []


def test_the_setting_names_follow_pydantic_settings() -> None:
    # the check above is only as good as this: nested, dict and case-insensitive names
    assert _is_setting("TABOPS_DB__URL") and _is_setting("tabops_api__workers")
    assert _is_setting("TABOPS_DATA_DIRS__SCHOOL") and _is_setting("TABOPS_DATABASE_URL")
    assert not _is_setting("TABOPS_API_WORKERS") and not _is_setting("TABOPS_DB__PASSWORD")


def test_the_dockerfile_builds_from_python_slim_as_a_non_root_user() -> None:
    args = dict(a.split("=", 1) for kw, a in _dockerfile_all() if kw == "ARG" and "=" in a)

    def resolve(match: re.Match[str]) -> str:
        return args[match.group(1)]

    froms = [args for kw, args in _dockerfile_all() if kw == "FROM"]
    images = {re.sub(r"\$\{(\w+)\}", resolve, f.split()[0]) for f in froms}
    assert images - set(_stages()) == {"python:3.11-slim"}
    assert list(_stages()) == ["build", "base", "single", "runtime"]
    user = _instructions("USER")[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "a numeric uid, so runAsNonRoot can check it"
    assert _dockerfile_command()[0] == "tabops"
    installs = [r for kw, r in _dockerfile_all() if kw == "RUN" and "pip install" in r]
    assert installs and not any("[" in r or " -e " in r for r in installs), "no extras, no -e"
    assert _dockerfile_env()["TABOPS_VAR_DIR"] == "/var/lib/tabops"


def test_every_file_the_dockerfile_copies_exists() -> None:
    copied = []
    for args in (a for kw, a in _dockerfile_all() if kw == "COPY"):
        words = shlex.split(args)
        if any(w.startswith("--from") for w in words):
            continue  # from an earlier stage, not from the build context
        copied += [w for w in words[:-1] if not w.startswith("--")]
    assert {"pyproject.toml", "LICENSE", "src/", "usecases/"} <= set(copied)
    assert [c for c in copied if not (REPO / c).exists()] == []


def test_dockerignore_keeps_what_the_image_needs_and_nothing_else() -> None:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    patterns = [p.strip().strip("/") for p in lines if p.strip() and not p.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "this check does not handle '!'"

    def ignored(path: str) -> bool:  # a path is out when it or a parent folder matches
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatchcase(c, p) for c in prefixes for p in patterns)

    needed = [
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "deploy/Dockerfile",
        "deploy/single/entrypoint.sh",
    ]
    for folder in ("src", "usecases"):
        for file in (REPO / folder).rglob("*"):
            path = file.relative_to(REPO).as_posix()
            skip = "__pycache__" in path or ".egg-info" in path or path.endswith(".csv")
            if file.is_file() and not skip:
                needed.append(path)
    assert any(p.endswith("data.csv.gz") for p in needed), "the shipped data sets"
    assert [p for p in needed if ignored(p)] == []
    for out in (".venv", "var", ".git", "bench/results", "tests", "deploy/.env"):
        assert ignored(f"{out}/x") or ignored(out), f"{out} is in the build context"
    assert ignored("usecases/school/student-mat.csv"), "data that may not be redistributed"


def test_the_healthcheck_and_probes_use_routes_the_app_has(no_tabops_env: None) -> None:
    container = _api_container()
    probes = {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"] == "/health" and probes["readinessProbe"] == "/ready"
    annotations = _k8s("deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    paths = {*probes.values(), urlsplit(_healthcheck_url()).path, annotations["prometheus.io/path"]}
    assert sorted(p for p in paths if not _app_serves(p)) == []
    assert not _app_serves("/no-such-route")  # the check can fail


def test_container_ports_agree() -> None:
    (exposed,) = _instructions("EXPOSE")
    port = int(exposed.split("/")[0])
    assert int(_option(_dockerfile_command(), "--port")) == port
    assert urlsplit(_healthcheck_url()).port == port
    api = _service("api")
    assert int(_option([str(a) for a in api["command"]], "--port")) == port
    assert {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in api["ports"]} == {port}
    # Prometheus finds the replicas by the compose service's DNS name
    (scrape,) = _yaml(DEPLOY / "prometheus/prometheus.yml")["scrape_configs"]
    (discovery,) = scrape["dns_sd_configs"]
    assert discovery["names"] == ["api"] and discovery["port"] == port

    container = _api_container()
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(named.values()) == {port}
    assert int(_option([str(a) for a in container["args"]], "--port")) == port
    annotations = _k8s("deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port
    probe_ports = {container[k]["httpGet"]["port"] for k in container if k.endswith("Probe")}
    for target in {*probe_ports, *(p["targetPort"] for p in _k8s("service.yaml")["spec"]["ports"])}:
        assert named.get(target, target) == port


def test_every_command_run_is_a_real_cli_command() -> None:
    invocations = _tabops_invocations()
    for args in invocations.values():
        _check_cli(args)
    assert invocations["compose init #0"] == ["db", "upgrade"]
    assert invocations["k8s job #0"] == ["db", "upgrade"]
    assert ["train", "--all", "--only-missing"] in invocations.values()
    assert _option(invocations["compose api"], "--workers") == "2"


def _published(service: str) -> set[int]:
    return {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in _service(service)["ports"]}


def _check_url(service: str) -> str:
    match = re.search(r"https?://[^'\"\s]+", " ".join(_service(service)["healthcheck"]["test"]))
    assert match is not None, f"{service}: no URL in its health check"
    return match.group(0)


def test_the_ui_service_runs_tabops_ui_against_the_api() -> None:
    ui = _service("ui")
    args = [str(a) for a in ui["command"]]
    assert args[0] == "ui" and ui["build"]["dockerfile"] == "deploy/Dockerfile"
    port = int(_option(args, "--port"))
    assert port == 8501 and _published("ui") == {port}
    assert urlsplit(_check_url("ui")).port == port
    api_url = urlsplit(ui["environment"]["TABOPS_UI__API_URL"])
    api_port = int(_option([str(a) for a in _service("api")["command"]], "--port"))
    assert (api_url.hostname, api_url.port) == ("api", api_port)
    assert ui["depends_on"]["api"]["condition"] == "service_healthy"


def test_every_service_has_a_health_check_and_every_dependency_a_condition() -> None:
    one_shots = set()
    for name, service in _compose()["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        if check.get("disable"):
            assert service.get("restart") == "no", f"{name}: only one-shot services skip it"
            one_shots.add(name)
        else:
            assert check["test"][0] in ("CMD", "CMD-SHELL") and check["interval"]
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for target, how in depends_on.items():
            assert target in _compose()["services"], f"{name} -> {target}"
            wanted = "service_completed_successfully" if target in one_shots else None
            assert how["condition"] in ("service_healthy", "service_completed_successfully")
            if wanted:
                assert how["condition"] == wanted
    assert one_shots == {"init", "kuma-setup"}
    # the API's check is the image's, and the paths the checks call are routes it has
    assert _check_url("api") == _healthcheck_url()


def test_the_stack_has_every_service_of_the_demo_on_its_port() -> None:
    ports = {name: _published(name) for name, s in _compose()["services"].items() if "ports" in s}
    assert ports == {
        "mlflow": {5000},
        "api": {8000},
        "ui": {8501},
        "adminer": {8080},
        "prometheus": {9090},
        "grafana": {3000},
        "uptime-kuma": {3001},
    }
    assert [p for p in _service("api")["ports"]] == ["127.0.0.1:8000-8001:8000"]
    for service in _compose()["services"].values():
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", []))


def test_adminer_opens_the_compose_database() -> None:
    adminer = _service("adminer")
    assert adminer["image"].startswith("adminer:")
    assert adminer["environment"]["ADMINER_DEFAULT_SERVER"] == "postgres"
    assert adminer["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_school_data_is_mounted_where_the_settings_read_it(
    monkeypatch: pytest.MonkeyPatch, no_tabops_env: None
) -> None:
    env = {name: f"{name.lower()}-0123456789abcdef" for name in _env_example()}
    env["SCHOOL_DATA_DIR"] = ""  # the example leaves it empty: the default applies
    for name, value in _compose_environment("api", env).items():
        monkeypatch.setenv(name, value)
    target = Settings().data_dirs["school"]
    for name in ("init", "api"):
        (mount,) = [v for v in _service(name)["volumes"] if isinstance(v, dict)]
        assert Path(mount["target"]) == target and mount["read_only"] is True
        source = _interpolate(mount["source"], env)
        assert (COMPOSE.parent / source).resolve() == REPO / "usecases" / "school"
    # the image never holds it
    assert ".csv" not in " ".join(a for kw, a in _dockerfile_all() if kw == "COPY")


def test_the_single_container_runs_tabops_up_on_port_7860() -> None:
    env = _dockerfile_env("single")
    assert env["PORT"] == "7860" and env["TABOPS_ENV"] == "dev"
    assert env["TABOPS_AUTH__ANONYMOUS_PREDICT"] == "true"
    assert "TABOPS_DATABASE_URL" not in env and "TABOPS_MLFLOW__TRACKING_URI" not in env
    assert _instructions("EXPOSE", "single")[-1] == env["PORT"]
    entrypoint = json.loads(_instructions("ENTRYPOINT", "single")[-1])
    copied = [a for a in _instructions("COPY", "single") if "entrypoint.sh" in a]
    assert copied and Path(copied[0].split()[-1]).name == entrypoint[0]
    assert SINGLE_ENTRYPOINT.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    commands = _script_commands(SINGLE_ENTRYPOINT.read_text(encoding="utf-8"))
    assert commands[-1][:1] == ["up"] and _option(commands[-1], "--ui-port") == env["PORT"]
    assert _option(commands[-1], "--api-port") == env["TABOPS_API__PORT"]
    assert ["train", "--all", "--only-missing"] in commands
    # the build trains the bundled use cases, so a Space starts in seconds
    assert any("tabops train --all" in r for r in _instructions("RUN", "single"))
    # its health check reaches the API inside the container
    (check,) = _instructions("HEALTHCHECK", "single")
    assert "/health" in check and "TABOPS_API__PORT" in check
    assert env["TABOPS_API__PORT"] == "8000"
    # the default target is still the API image
    assert list(_stages())[-1] == "runtime" and _dockerfile_command()[1] == "serve"


def _kuma_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("kuma_provision", KUMA / "provision.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_uptime_kuma_monitors_are_valid_for_the_client_and_reach_compose_services() -> None:
    import inspect

    from uptime_kuma_api import UptimeKumaApi

    monitors = _kuma_module().load_monitors(KUMA / "monitors.yml")
    accepted = set(inspect.signature(UptimeKumaApi._build_monitor_data).parameters) - {"self"}
    services = _compose()["services"]
    container_ports = {
        "api": int(_option([str(a) for a in services["api"]["command"]], "--port")),
        "ui": int(_option([str(a) for a in services["ui"]["command"]], "--port")),
        "mlflow": int(_option([str(a) for a in services["mlflow"]["command"]], "--port")),
        "postgres": 5432,
    }
    for monitor in monitors:
        assert set(monitor) <= accepted, set(monitor) - accepted
        if "url" in monitor:
            url = urlsplit(monitor["url"])
            host, port, path = url.hostname, url.port, url.path
        else:
            host, port, path = monitor["hostname"], monitor["port"], None
        assert port == container_ports[host], monitor["name"]
        if host == "api":
            assert _app_serves(path), path
    by_name = {m["name"]: m for m in monitors}
    assert by_name["tabops API alive"]["url"].endswith("/health")
    assert by_name["tabops API alive"]["expectedValue"] == "ok"  # Health().status
    assert by_name["tabops API ready"]["keyword"] == '"status":"ready"'
    setup = _service("kuma-setup")
    assert (DEPLOY / setup["build"]["context"] / "Dockerfile").is_file()
    assert setup["environment"]["KUMA_URL"] == "http://uptime-kuma:3001"
    assert setup["depends_on"]["uptime-kuma"]["condition"] == "service_healthy"


def test_kuma_setup_adds_missing_monitors_updates_changed_ones_and_leaves_the_rest() -> None:
    module = _kuma_module()
    wanted = module.load_monitors(KUMA / "monitors.yml")
    assert [step[0] for step in module.plan([], wanted)] == ["add"] * len(wanted)
    same = [
        {"id": i, **{k: getattr(v, "value", v) for k, v in m.items()}} for i, m in enumerate(wanted)
    ]
    handmade = {"id": 99, "name": "made by hand", "type": "http", "url": "http://x"}
    assert module.plan([*same, handmade], wanted) == []  # run again: nothing changes
    changed = [dict(m) for m in same]
    changed[0]["interval"] = 999
    ((action, monitor_id, monitor),) = module.plan(changed, wanted)
    assert (action, monitor_id, monitor["name"]) == ("edit", 0, wanted[0]["name"])


def test_the_kuma_setup_image_copies_what_exists() -> None:
    text = (KUMA / "Dockerfile").read_text(encoding="utf-8")
    (copy,) = [line for line in text.splitlines() if line.startswith("COPY ")]
    assert all((KUMA / name).is_file() for name in copy.split()[1:-1])
    installs = re.findall(r'"([\w-]+)==[\d.]+"', text)
    assert "uptime-kuma-api" in installs, "pinned, as the suite's copy is tested"


def test_the_api_waits_for_init_and_a_healthy_database() -> None:
    depends = _service("api")["depends_on"]
    assert depends["init"]["condition"] == "service_completed_successfully"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(_service("postgres")["healthcheck"]["test"])
    for name, service in _compose()["services"].items():
        depends_on = service.get("depends_on") or {}
        for target in depends_on:
            how = depends_on[target] if isinstance(depends_on, dict) else {}
            if how.get("condition") == "service_healthy":
                check = _service(target).get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{name} -> {target}"


def test_compose_secrets_come_from_the_env_file_without_defaults() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    used = {m.group("name") for m in _INTERPOLATION.finditer(text) if m.group("name")}
    example = _env_example()
    assert set(example) == used, "deploy/.env.example documents exactly the variables used"
    assert all(value == "" for value in example.values()), "no secret in the example"
    for match in _INTERPOLATION.finditer(text):
        if match.group("name") and _SECRET_NAME.search(match.group("name")):
            assert match.group("op") == ":?", f"{match.group(0)}: a secret needs no default"
    with pytest.raises(MissingVariableError):
        _compose_environment("api", {})


def test_compose_settings_load_and_point_at_the_compose_services(
    monkeypatch: pytest.MonkeyPatch, no_tabops_env: None
) -> None:
    env = {name: f"{name.lower()}-0123456789abcdef" for name in _env_example()}
    for name in _compose()["services"]:
        if "build" in _service(name) and name != "kuma-setup":  # its own small image
            assert _service(name)["build"]["dockerfile"] == "deploy/Dockerfile"
    variables = {**_dockerfile_env(), **_compose_environment("api", env)}
    # init seeds and trains where the API reads: the same database and MLflow
    assert variables == {**_dockerfile_env(), **_compose_environment("init", env)}
    for name, value in variables.items():
        if name.startswith("TABOPS_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.env == "prod"
    assert urlsplit(settings.database_url_resolved).hostname == "postgres"
    tracking = urlsplit(settings.tracking_uri)
    mlflow = [str(a) for a in _service("mlflow")["command"]]
    assert tracking.hostname == "mlflow" and tracking.port == int(_option(mlflow, "--port"))
    assert "--serve-artifacts" in mlflow
    # MLflow's own database (both keep an Alembic `alembic_version` table), created on the
    # first start of PostgreSQL by an init script of the mounted folder
    store = urlsplit(_compose_environment("mlflow", env)["MLFLOW_BACKEND_STORE_URI"])
    assert (store.hostname, store.path) != ("postgres", urlsplit(settings.db.url).path)
    (initdb,) = [v.split(":")[0] for v in _service("postgres")["volumes"] if "initdb" in v]
    scripts = " ".join(
        p.read_text(encoding="utf-8") for p in (COMPOSE.parent / initdb).glob("*.sql")
    )
    assert f"CREATE DATABASE {store.path.lstrip('/')};" in scripts
    # MLflow answers 403 to a Host header it does not allow (default: localhost, private IPs)
    allowed = _option(mlflow, "--allowed-hosts").split(",")
    assert any(fnmatch.fnmatchcase(tracking.netloc, host) for host in allowed)
    # the spool is on an anonymous volume: one per replica (never shared), and it outlives
    # a restart or recreation of the container
    assert str(settings.spool_dir.parent) in _service("api")["volumes"]


def test_kustomization_lists_every_manifest() -> None:
    listed = _k8s("kustomization.yaml")["resources"]
    manifests = {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml", SECRET_EXAMPLE}
    assert sorted(listed) == sorted(manifests)
    assert SECRET_EXAMPLE not in listed


def test_k8s_pods_take_their_settings_from_the_configmap_and_secret() -> None:
    names = {
        _k8s(f)["kind"]: _k8s(f)["metadata"]["name"] for f in ("configmap.yaml", SECRET_EXAMPLE)
    }
    for manifest in ("deployment.yaml", "job.yaml"):
        for container in _pod_spec(manifest)["containers"]:
            refs = {
                next(iter(ref)): next(iter(ref.values()))["name"] for ref in container["envFrom"]
            }
            assert refs == {"configMapRef": names["ConfigMap"], "secretRef": names["Secret"]}
    data = {**_k8s("configmap.yaml")["data"], **_k8s(SECRET_EXAMPLE)["stringData"]}
    assert all(k.startswith("TABOPS_") and isinstance(v, str) for k, v in data.items())


def test_the_k8s_secret_example_cannot_run_as_it_is(
    monkeypatch: pytest.MonkeyPatch, no_tabops_env: None
) -> None:
    data = {**_k8s("configmap.yaml")["data"], **_k8s(SECRET_EXAMPLE)["stringData"]}
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="PSEUDONYM_KEY"):
        Settings()
    monkeypatch.setenv("TABOPS_AUDIT__PSEUDONYM_KEY", "a-real-key-0123456789")
    settings = Settings()
    assert settings.env == "prod" and settings.api.workers == 2


def test_k8s_pods_run_non_root_on_a_read_only_root_with_writable_volumes() -> None:
    uid = int(_instructions("USER")[-1].split(":")[0])
    var_dir = _k8s("configmap.yaml")["data"]["TABOPS_VAR_DIR"]
    tmp = str(Path(_dockerfile_env()["MPLCONFIGDIR"]).parent)  # matplotlib writes there
    for manifest in ("deployment.yaml", "job.yaml"):
        pod = _pod_spec(manifest)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            # emptyDir: survives a container restart in the pod, so the spool is replayed
            assert "emptyDir" in mounts[var_dir] and tmp in mounts
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), manifest


def test_the_spool_fits_its_volume() -> None:
    # past the emptyDir's sizeLimit the kubelet evicts the pod, spool and all
    config = _k8s("configmap.yaml")["data"]
    spool_max = int(config.get("TABOPS_AUDIT__SPOOL_MAX_BYTES", AuditSettings().spool_max_bytes))
    volumes = {v["name"]: v for v in _pod_spec("deployment.yaml")["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _api_container()["volumeMounts"]}
    size_limit = volumes[mounts[config["TABOPS_VAR_DIR"]]]["emptyDir"]["sizeLimit"]
    assert spool_max < _k8s_quantity(size_limit)


def test_the_autoscaler_and_disruption_budget_select_the_api() -> None:
    deployment = _k8s("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    hpa = _k8s("hpa.yaml")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] >= hpa["minReplicas"]
    for selector in (
        _k8s("pdb.yaml")["spec"]["selector"]["matchLabels"],
        _k8s("service.yaml")["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()


def _hadolint(dockerfile: Path) -> Any:
    import subprocess
    import sys

    hadolint = Path(sys.executable).parent / "hadolint"
    return subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, KUMA / "Dockerfile"], ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    done = _hadolint(dockerfile)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nUSER root\n")
    done = _hadolint(bad)
    assert done.returncode == 1 and "DL3007" in done.stdout


def test_every_stage_ends_as_a_numeric_non_root_user() -> None:
    for stage in ("single", "runtime"):
        user = _instructions("USER", stage)[-1].split(":")[0]
        assert user.isdigit() and int(user) != 0, stage
