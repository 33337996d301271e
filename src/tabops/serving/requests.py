"""What callers send, checked before anything is scored: JSON bodies, entity ids, feedback."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tabops.errors import (
    FieldIssue,
    InvalidRequestError,
    JsonLimitError,
    MalformedRequestError,
)
from tabops.spec.schema import UseCase


def parse_json(body: bytes) -> Any:
    """Decode a request body.

    Raises:
        MalformedRequestError: empty or not JSON.
        JsonLimitError: nested over 1,024 levels, or a number over 4,300 digits (422).
    """
    if not body.strip():
        raise MalformedRequestError("request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses the NaN and Infinity that Python's json module writes by default:
    # read them here, so that the record model names the field instead of a vague 400
    try:
        return json.loads(body)
    except RecursionError:  # orjson stops at 1,024 levels; Python's parser overflows
        raise JsonLimitError(
            "request body is nested too deeply", [FieldIssue("(body)", "at most 1024 levels")]
        ) from None
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
            # an integer of over 4,300 digits (Python's int-from-string limit)
            raise JsonLimitError(
                "request body holds a number too long to read",
                [FieldIssue("(body)", "numbers of at most 4300 digits")],
            ) from None
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise MalformedRequestError(f"request body is not valid JSON{where}") from None


ENTITY_ID_MAX = 255
"""Longest entity id accepted (string ids; integer ids are bounded by 64 bits)."""


_INTEGER = re.compile(r"-?[0-9]{1,20}")


_INT64 = (-(1 << 63), (1 << 63) - 1)


def check_entity_id(spec: UseCase, entity_id: str) -> None:
    """Refuse an entity id that no row can have.

    Raises:
        InvalidRequestError: not an ASCII integer within 64 bits (integer ids), or too
            long, or holding a NUL character.
    """
    assert spec.entity_id is not None
    reason = None
    if spec.entity_id.type == "integer":
        if not _INTEGER.fullmatch(entity_id) or not (_INT64[0] <= int(entity_id) <= _INT64[1]):
            reason = "must be an integer (ASCII digits) within 64 bits"
    elif len(entity_id) > ENTITY_ID_MAX or "\x00" in entity_id:
        reason = f"at most {ENTITY_ID_MAX} characters, without NUL"
    if reason is not None:
        raise InvalidRequestError(
            f"invalid {spec.entity_id.name}", [FieldIssue("entity_id", reason)]
        )


class FeedbackItem(BaseModel):
    """The actual outcome of a recorded prediction."""

    model_config = ConfigDict(extra="forbid")

    # bounded like the columns they are stored in (store/schema.py): a clear 422, never a
    # database error; NUL is refused by PostgreSQL in text, so it is refused here
    prediction_id: str = Field(
        description="The prediction_id returned by predict",
        max_length=64,
        pattern=r"^[^\x00]*$",
    )
    actual: str = Field(
        description="The class that really happened", max_length=255, pattern=r"^[^\x00]*$"
    )
    source: str | None = Field(
        default=None,
        description="Who or what observed it (at most 255 characters)",
        max_length=255,
        pattern=r"^[^\x00]*$",
    )
