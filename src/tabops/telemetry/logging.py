"""Application logs: one line per event, JSON for machines or text for people, never a secret.

``TABOPS_LOG__FORMAT=json`` writes one JSON object per line (python-json-logger) with
``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message`` and ``process``; lines
written while a request is handled also carry ``request_id``, ``usecase`` and
``model_version`` (bound by :func:`bind_request`, see :mod:`tabops.api.context`). ``text``
writes the same fields on one readable line. ``auto`` (the default) is text when standard
error is a terminal and JSON otherwise (a container, a service manager, a log shipper).

Every line passes through :class:`Redactor` after it is formatted, exception text included:
the values of every ``SecretStr`` setting and of the passwords in the configured URLs are
masked, and so are, by pattern, API keys (``tabops_<prefix>_<secret>`` keeps its public
prefix), bearer tokens and passwords in any URL.

The configuration is one :func:`logging.config.dictConfig` dictionary
(:func:`logging_config`): :func:`configure_logging` applies it to this process, and the
pre-fork server hands it to gunicorn, whose workers apply it after they fork.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.engine import make_url

__all__ = [
    "REQUEST_FIELDS",
    "ContextFilter",
    "JsonLineFormatter",
    "Redactor",
    "RequestContext",
    "TextLineFormatter",
    "bind_request",
    "configure_logging",
    "current_request",
    "logging_config",
    "resolve_format",
    "secrets_of",
]

REQUEST_FIELDS = ("request_id", "usecase", "model_version")
"""The fields of request-scoped lines, in the order the text format shows them."""

MASK = "***"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a log line written while handling one request says about that request."""

    request_id: str
    usecase: str | None = None
    model_version: str | None = None


_request: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "tabops_request", default=None
)


def current_request() -> RequestContext | None:
    """The request being handled in this task or thread, if any."""
    return _request.get()


@contextmanager
def bind_request(context: RequestContext) -> Iterator[RequestContext]:
    """Tag every line logged inside the block (and in tasks and threads it starts)."""
    token = _request.set(context)
    try:
        yield context
    finally:
        _request.reset(token)


class ContextFilter(logging.Filter):
    """Copies the bound request's fields onto each record (lines outside requests get none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _request.get()
        if context is not None:
            for name in REQUEST_FIELDS:
                value = getattr(context, name)
                if value is not None and not hasattr(record, name):
                    setattr(record, name, value)
        return True


# --- secrets ------------------------------------------------------------------------------

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # an API key: the prefix is public (it names the key), the secret is not
    (re.compile(r"\btabops_([0-9a-f]{8})_[A-Za-z0-9_-]{8,}"), rf"tabops_\1_{MASK}"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), rf"\1{MASK}"),
    # user:password@ in any URL (database, MLflow, Redis)
    (re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@\"']*:)[^@/\s\"']+@"), rf"\1{MASK}@"),
]


class Redactor:
    """Masks known secret values and secret-shaped text in a formatted line.

    Args:
        secrets: Literal values to mask wherever they appear (shorter than 4 characters
            are ignored: masking them would garble ordinary text and hide nothing).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values: set[str] = set()
        for secret in secrets:
            if len(secret) >= 4:
                values.add(secret)
                # as it appears inside a JSON string, escaped to ASCII or not
                values.add(json.dumps(secret)[1:-1])
                values.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        self._literals = sorted(values, key=len, reverse=True)  # longest first

    def __call__(self, text: str) -> str:
        for value in self._literals:
            if value in text:
                text = text.replace(value, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def _url_password(url: str) -> str | None:
    if "://" not in url or "@" not in url:
        return None
    try:
        password = make_url(url).password
        return None if password is None else str(password)
    except Exception:  # not a URL SQLAlchemy reads: the pattern still masks it
        return None


def secrets_of(settings: BaseModel) -> list[str]:
    """Every secret a settings object holds: each ``SecretStr`` value, and the password of
    every URL-shaped string (database, MLflow, Redis URLs), at any depth."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            password = _url_password(value)
            if password:
                found.append(password)

    walk(settings)
    return [s for s in found if s]


# --- formatters ---------------------------------------------------------------------------


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, process, and the
    request's fields on request-scoped lines; secrets masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(
            "{levelname}{name}{message}{process}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
            # uvicorn repeats some messages with terminal colours in this extra field
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
        self.redact = Redactor(secrets)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["timestamp"] = _iso(record.created)
        super().add_fields(log_data, record, message_dict)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class TextLineFormatter(logging.Formatter):
    """``2026-12-01T09:30:00.123+00:00 INFO tabops.serving [req=… usecase=credit v=3] …``;
    secrets masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s")
        self.redact = Redactor(secrets)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _iso(record.created)

    def format(self, record: logging.LogRecord) -> str:
        tags = [
            f"{label}={getattr(record, name)}"
            for name, label in zip(REQUEST_FIELDS, ("req", "usecase", "v"), strict=True)
            if getattr(record, name, None) is not None
        ]
        record.request = f" [{' '.join(tags)}]" if tags else ""
        return self.redact(super().format(record))


# --- configuration ------------------------------------------------------------------------

LogFormat = Literal["auto", "json", "text"]

# Loggers whose libraries install handlers of their own: routed through ours instead.
# uvicorn's gunicorn worker copies gunicorn's handlers onto uvicorn's loggers.
_SERVER_LOGGERS = ("gunicorn.error", "uvicorn", "uvicorn.error")
# The servers' access lines are off: tabops writes its own (``tabops.access``, with the
# request's fields and latency) when TABOPS_API__ACCESS_LOG is on. uvicorn writes its lines
# only while its logger has a handler, and a line per request costs about 3% of a worker.
_ACCESS_LOGGERS = ("gunicorn.access", "uvicorn.access")


# Libraries that give their loggers handlers of their own at import (MLflow does, for these
# four): routed through ours too, at WARNING, so that no line escapes the format or the mask.
_LIBRARY_LOGGERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey")


def resolve_format(fmt: LogFormat, stream: Any = None) -> Literal["json", "text"]:
    """``auto`` is text in a terminal and JSON anywhere else."""
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def logging_config(
    fmt: LogFormat, level: str, secrets: Iterable[str] = (), stream: Any = None
) -> dict[str, Any]:
    """The :func:`logging.config.dictConfig` dictionary of a tabops process.

    Args:
        fmt: ``json``, ``text`` or ``auto``.
        level: The level of the ``tabops`` loggers (libraries stay at WARNING, servers at INFO).
        secrets: Values to mask in every line (see :func:`secrets_of`).
        stream: Where lines go; standard error by default.
    """
    chosen = resolve_format(fmt, stream)
    formatter = JsonLineFormatter if chosen == "json" else TextLineFormatter
    handler: dict[str, Any] = {
        "class": "logging.StreamHandler",
        "formatter": "tabops",
        "filters": ["request"],
    }
    if stream is None:
        handler["stream"] = "ext://sys.stderr"
    else:
        handler["stream"] = stream
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": ContextFilter}},
        "formatters": {"tabops": {"()": formatter, "secrets": list(secrets)}},
        "handlers": {"tabops": handler},
        "root": {"level": "WARNING", "handlers": ["tabops"]},
        "loggers": {
            "tabops": {"level": level.upper(), "handlers": [], "propagate": True},
            **{
                name: {"level": "INFO", "handlers": ["tabops"], "propagate": False}
                for name in _SERVER_LOGGERS
            },
            **{
                name: {"level": "WARNING", "handlers": ["tabops"], "propagate": False}
                for name in _LIBRARY_LOGGERS
            },
            **{name: {"handlers": [], "propagate": False} for name in _ACCESS_LOGGERS},
        },
    }


def configure_logging(
    fmt: LogFormat, level: str = "INFO", secrets: Iterable[str] = (), stream: Any = None
) -> None:
    """Send this process's logs through the tabops formatter (replaces earlier handlers).

    Also tells MLflow, if it is imported later (here or in a child process), to leave the
    logging configuration alone (``MLFLOW_CONFIGURE_LOGGING=false``).
    """
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    logging.config.dictConfig(logging_config(fmt, level, secrets, stream))
