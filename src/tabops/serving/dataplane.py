"""What a serving process holds: per use case, the loaded champion, its scorer and the
request models derived from the spec it was trained with. No HTTP here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from tabops.errors import (
    MalformedRequestError,
)
from tabops.ids import uuid7, uuid7_many
from tabops.scoring.base import Scores
from tabops.scoring.coalesce import Coalescer
from tabops.serving.models import ServedModel
from tabops.store.audit import AuditWriter, build_record
from tabops.store.privacy import Pseudonymizer

if TYPE_CHECKING:
    from tabops.telemetry.metrics import Metrics

__all__ = [
    "Predictor",
    "parse_json",
]

log = logging.getLogger(__name__)

_INLINE_ROWS = 32
"""Compiled scoring of up to this many rows runs on the event loop (well under 1 ms)."""


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


class Predictor:
    """Scores validated records and records every prediction before returning it."""

    def __init__(
        self,
        writer: AuditWriter | None,
        pseudonymizer: Pseudonymizer,
        metrics: Metrics | None = None,
        coalesce_us: int = 0,
    ) -> None:
        self.writer = writer
        self.pseudonymizer = pseudonymizer
        self.metrics = metrics
        self.coalescer = Coalescer(coalesce_us / 1e6) if coalesce_us > 0 else None
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    async def predict(
        self,
        served: ServedModel,
        records: list[dict[str, Any]],
        call: CallInfo,
        entity_id: str | None = None,
        shadow: ServedModel | None = None,
    ) -> list[dict[str, Any]]:
        """Score records with the served model and audit them; a challenger given as
        ``shadow`` scores them too, off the response path.

        Returns:
            One prediction per record: prediction_id, label, probabilities, threshold and
            model_version.

        Raises:
            AuditUnavailableError: the predictions could not be recorded.
        """
        scorer = served.scorer  # one reference: the whole call uses the same version
        started = time.perf_counter()
        if self.coalescer is not None and len(records) == 1:
            scores = await self.coalescer.score(scorer, records[0])
        elif scorer.path != "pipeline" and len(records) <= _INLINE_ROWS:
            # microseconds of numpy: a thread hop would cost more than the work
            scores = scorer.score(records)
        else:
            # the pipeline (milliseconds) or a big batch: keep the event loop free
            scores = await asyncio.to_thread(scorer.score, records)
        latency_ms = (time.perf_counter() - started) * 1000
        version = scorer.version
        ids = uuid7_many(len(records))
        out = [
            {
                "prediction_id": pid,
                "label": label,
                "probabilities": probabilities,
                "threshold": scores.threshold,
                "model_version": version,
            }
            for pid, label, probabilities in zip(
                ids, scores.labels, scores.probability_dicts(), strict=True
            )
        ]
        if self.writer is not None:
            await self.writer.record(
                self._audit_record(served, records, scores, out, call, latency_ms, entity_id)
            )
        if self.metrics is not None:  # after the audit: only predictions actually served
            positive = served.loaded.decision.positive_index
            self.metrics.record_predictions(
                served.spec.name, version, scores, positive, latency_ms / 1000
            )
        if shadow is not None and self.writer is not None:
            # never awaited by the response: a slow or failing challenger changes nothing
            task = asyncio.create_task(self._shadow(shadow, records, out, call, entity_id))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return out

    async def _shadow(
        self,
        shadow: ServedModel,
        records: list[dict[str, Any]],
        champion: list[dict[str, Any]],
        call: CallInfo,
        entity_id: str | None,
    ) -> None:
        try:
            started = time.perf_counter()
            scores = await asyncio.to_thread(shadow.scorer.score, records)
            latency_ms = (time.perf_counter() - started) * 1000
            out = [
                {
                    "prediction_id": pid,
                    "label": label,
                    "probabilities": probabilities,
                    "threshold": scores.threshold,
                    "model_version": shadow.scorer.version,
                }
                for pid, label, probabilities in zip(
                    uuid7_many(len(records)),
                    scores.labels,
                    scores.probability_dicts(),
                    strict=True,
                )
            ]
            shadow_call = CallInfo(f"shadow:{call.endpoint}", call.caller, call.client_request_id)
            record = self._audit_record(
                shadow, records, scores, out, shadow_call, latency_ms, entity_id
            )
            for row, original in zip(record["predictions"], champion, strict=True):
                row["shadow"], row["shadow_of"] = True, original["prediction_id"]
            assert self.writer is not None
            await self.writer.record(record)
        except Exception:
            log.exception("use case %s: shadow scoring failed", shadow.spec.name)

    def _audit_record(
        self,
        served: ServedModel,
        records: list[dict[str, Any]],
        scores: Scores,
        out: list[dict[str, Any]],
        call: CallInfo,
        latency_ms: float,
        entity_id: str | None,
    ) -> dict[str, Any]:
        spec = served.spec
        now = datetime.now(UTC)
        request_id = uuid7()
        positive = served.loaded.decision.positive_index
        column = (
            scores.probabilities[:, positive]
            if positive is not None
            else scores.probabilities.max(axis=1)
        )
        hashed_entity = self.pseudonymizer.hash(entity_id) if entity_id is not None else None
        rows = [
            {
                "id": o["prediction_id"],
                "request_id": request_id,
                "created_at": now,
                "usecase": spec.name,
                "model_version": o["model_version"],
                "features": self.pseudonymizer.features(spec, record),
                "label": o["label"],
                "probabilities": o["probabilities"],
                "score": float(score),
                "threshold": o["threshold"],
                "latency_ms": latency_ms,
                "entity_id": hashed_entity,
                "shadow": False,
                "shadow_of": None,
            }
            for record, o, score in zip(records, out, column, strict=True)
        ]
        return build_record(
            request_id=request_id,
            created_at=now,
            usecase=spec.name,
            endpoint=call.endpoint,
            caller=call.caller,
            client_request_id=call.client_request_id,
            model_version=out[0]["model_version"],
            latency_ms=latency_ms,
            rows=rows,
        )
