"""Structured logs: the JSON and text lines carry their fields, and no secret gets through."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tabops.config import Settings
from tabops.telemetry.logging import (
    MASK,
    Redactor,
    RequestContext,
    bind_request,
    configure_logging,
    resolve_format,
    secrets_of,
)

_MANAGED = (
    "",
    "tabops",
    "gunicorn.error",
    "gunicorn.access",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "mlflow",
    "alembic",
    "sqlalchemy.engine",
    "huey",
)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure_logging changes process-wide loggers: put them back afterwards."""
    monkeypatch.setenv("MLFLOW_CONFIGURE_LOGGING", "false")  # it sets it; undone after
    saved = {}
    for name in _MANAGED:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate, logger.filters[:])
    yield
    for name, (handlers, level, propagate, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.filters[:] = filters


def _configure(fmt: Any, secrets: list[str] | None = None) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(fmt, "INFO", secrets or [], stream=stream)
    return stream


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_time_level_logger_and_the_request(restore_logging: None) -> None:
    stream = _configure("json")
    log = logging.getLogger("tabops.serving")
    log.info("outside any request")
    with bind_request(RequestContext("req-1", "credit", "7")):
        log.warning("scored %d records", 3)
    log.debug("below the level")
    outside, inside = _json_lines(stream)
    for line in (outside, inside):
        assert line["logger"] == "tabops.serving" and isinstance(line["process"], int)
        stamp = datetime.fromisoformat(line["timestamp"])
        assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0
    assert outside["level"] == "INFO" and outside["message"] == "outside any request"
    assert not {"request_id", "usecase", "model_version"} & set(outside)
    assert inside["level"] == "WARNING" and inside["message"] == "scored 3 records"
    request = (inside["request_id"], inside["usecase"], inside["model_version"])
    assert request == ("req-1", "credit", "7")


def test_exceptions_are_one_json_line(restore_logging: None) -> None:
    stream = _configure("json")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("tabops.api").exception("unexpected error")
    (line,) = _json_lines(stream)
    assert line["level"] == "ERROR" and "RuntimeError: boom" in line["exc_info"]


def test_text_lines_are_readable(restore_logging: None) -> None:
    stream = _configure("text")
    with bind_request(RequestContext("abc", "iris", None)):
        logging.getLogger("tabops.x").info("hello")
    logging.getLogger("tabops.x").info("bye")
    first, second = stream.getvalue().splitlines()
    stamp, level, rest = first.split(" ", 2)
    datetime.fromisoformat(stamp)
    assert level == "INFO" and rest == "tabops.x [req=abc usecase=iris]: hello"
    assert second.endswith(" INFO tabops.x: bye")


def test_auto_is_text_in_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", _Terminal()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", _Terminal()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"


def test_server_loggers_go_through_the_same_lines(restore_logging: None) -> None:
    stream = _configure("json")
    logging.getLogger("uvicorn.error").info("Started", extra={"color_message": "\x1b[36mS"})
    # the servers' own access lines are off (tabops writes its own, with the request)
    logging.getLogger("uvicorn.access").info("GET / 200")
    logging.getLogger("gunicorn.access").info("GET / 200")
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    logging.getLogger("gunicorn.error").info("Booting worker")
    logging.getLogger("some.library").info("chatter below WARNING")
    # MLflow gives its logger a handler of its own at import: ours replaces it
    logging.getLogger("mlflow.store.db.utils").info("below WARNING")
    logging.getLogger("mlflow.tracking").warning("a warning")
    loggers = [line["logger"] for line in _json_lines(stream)]
    assert loggers == ["uvicorn.error", "gunicorn.error", "mlflow.tracking"]
    assert "color_message" not in _json_lines(stream)[0]


ADMIN = "adm-0123456789abcdefXYZ"
PREDICT = "prd-0123456789abcdefXYZ"
PSEUDONYM = "pseudonym-key-0123456789"
DB_PASSWORD = "db-Pa55word-xyz"
MLFLOW_PASSWORD = "mlflow-pw-987654"
DB_KEY = "tabops_0a1b2c3d_Zm9vYmFyYmF6cXV4cXV1eGNvcmdl"  # the shape of a key from the key table


def _secret_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in {
        "TABOPS_AUTH__ADMIN_KEY": ADMIN,
        "TABOPS_AUTH__PREDICT_KEY": PREDICT,
        "TABOPS_AUDIT__PSEUDONYM_KEY": PSEUDONYM,
        "TABOPS_DATABASE_URL": f"postgresql+psycopg://tabops:{DB_PASSWORD}@db:5432/tabops",
        "TABOPS_MLFLOW__TRACKING_URI": f"https://ops:{MLFLOW_PASSWORD}@mlflow.internal",
    }.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_secrets_of_finds_every_secret_setting_and_url_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = set(secrets_of(_secret_settings(monkeypatch)))
    assert {ADMIN, PREDICT, PSEUDONYM, DB_PASSWORD, MLFLOW_PASSWORD} <= found


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_secret_is_ever_logged(
    fmt: str, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    settings = _secret_settings(monkeypatch)
    stream = _configure(fmt, secrets_of(settings))
    log = logging.getLogger("tabops.test")
    # every way a secret could reach a line: the message, its arguments, an extra field,
    # an exception's text, a header dump, a repr of the settings, a URL
    log.warning("admin key %s, predict key %s", ADMIN, PREDICT)
    log.warning("pseudonymising with %r", PSEUDONYM)
    log.warning("connecting to %s", settings.db.url)
    log.warning("tracking at %s", settings.mlflow.tracking_uri)
    log.warning("headers %s", {"authorization": f"Bearer {DB_KEY}"})
    log.warning("a caller sent %s", DB_KEY, extra={"key": ADMIN, "header": f"Bearer {PREDICT}"})
    log.warning("unknown url redis://:another-secret-pw@cache:6379/0")
    log.warning("settings %s", settings.model_dump())
    try:
        raise ConnectionError(f"could not reach {settings.db.url} with {PSEUDONYM}")
    except ConnectionError:
        log.exception("database down")
    with bind_request(RequestContext(ADMIN, None, None)):  # even as a request id
        log.warning("inside")
    text = stream.getvalue()
    assert len(text.splitlines()) >= 10
    for secret in (ADMIN, PREDICT, PSEUDONYM, DB_PASSWORD, MLFLOW_PASSWORD, "another-secret-pw"):
        assert secret not in text, secret
    assert "Zm9vYmFyYmF6cXV4cXV1eGNvcmdl" not in text
    # what is left says what was there, for whoever reads the log
    assert f"tabops_0a1b2c3d_{MASK}" in text and f"Bearer {MASK}" in text
    assert f"tabops:{MASK}@db:5432/tabops" in text
    if fmt == "json":
        lines = _json_lines(stream)
        assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)


_SECRET_CHARS = st.characters(
    codec="utf-8", exclude_categories=["Cs", "Zs"], exclude_characters="*"
)


@given(st.text(alphabet=_SECRET_CHARS, min_size=4))
def test_a_known_secret_is_masked_wherever_it_appears(secret: str) -> None:
    redact = Redactor([secret])
    assert secret not in redact(f"before {secret} after")
    for ascii_only in (True, False):
        line = json.dumps({"m": f"x {secret} x"}, ensure_ascii=ascii_only)
        escaped = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        assert escaped not in redact(line)
