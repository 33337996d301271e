"""What a prediction call carries in and out, whatever its transport: the JSON body
parser, who called, what was answered (the one place a prediction's response fields are
written), and a feedback item. No HTTP here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tabops.errors import MalformedRequestError
from tabops.scoring.base import Scores

__all__ = ["CallInfo", "FeedbackItem", "Predictions", "parse_json"]


def parse_json(body: bytes) -> Any:
    """Decode a request body.

    Raises:
        MalformedRequestError: empty or not JSON.
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
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise MalformedRequestError(f"request body is not valid JSON{where}") from None


@dataclass(frozen=True)
class CallInfo:
    """Who made a prediction call, and through which endpoint (for the audit trail)."""

    endpoint: str
    caller: str | None = None
    client_request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Predictions:
    """What one call answered: one prediction per record, all from one model version."""

    ids: list[str]
    scores: Scores
    probabilities: list[dict[str, float]]
    """Per record, rounded as answered and recorded."""
    model_version: str
    batch: bool
    """Whether the request was a batch (``{"records": [...]}``)."""

    def items(self) -> list[dict[str, Any]]:
        """The predictions, each with the fields of
        :class:`~tabops.spec.derive.Prediction` (built here and nowhere else)."""
        threshold, version = self.scores.threshold, self.model_version
        return [
            {
                "prediction_id": pid,
                "label": label,
                "probabilities": probabilities,
                "threshold": threshold,
                "model_version": version,
            }
            for pid, label, probabilities in zip(
                self.ids, self.scores.labels, self.probabilities, strict=True
            )
        ]

    def envelope(self) -> dict[str, Any]:
        """The response body: a :class:`~tabops.spec.derive.Prediction` for one record, a
        :class:`~tabops.spec.derive.PredictionBatch` for a batch."""
        items = self.items()
        if not self.batch:
            return items[0]
        return {"model_version": self.model_version, "predictions": items}


class FeedbackItem(BaseModel):
    """The actual outcome of a recorded prediction."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(description="The prediction_id returned by predict")
    actual: str = Field(description="The class that really happened")
    source: str | None = Field(default=None, description="Who or what observed it")
