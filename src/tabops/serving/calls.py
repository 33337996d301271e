"""What a prediction call carries, whatever its transport: who called, and what was
answered (the one place a prediction's response fields are written). No HTTP here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tabops.scoring.base import Scores

__all__ = ["CallInfo", "Predictions"]


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
    explanations: list[dict[str, Any]] | None = None
    """Per record, its explanation (``Explanation.as_dict()``); None when not explained."""

    def items(self) -> list[dict[str, Any]]:
        """The predictions, each with the fields of
        :class:`~tabops.spec.derive.Prediction` (built here and nowhere else)."""
        threshold, version = self.scores.threshold, self.model_version
        items = [
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
        if self.explanations is not None:  # the key only when explained
            for item, explanation in zip(items, self.explanations, strict=True):
                item["explanation"] = explanation
        return items

    def envelope(self) -> dict[str, Any]:
        """The response body: a :class:`~tabops.spec.derive.Prediction` for one record, a
        :class:`~tabops.spec.derive.PredictionBatch` for a batch."""
        items = self.items()
        if not self.batch:
            return items[0]
        return {"model_version": self.model_version, "predictions": items}
