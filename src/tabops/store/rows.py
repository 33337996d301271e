"""The audit rows, typed: one :class:`RequestRow` per prediction call, one
:class:`PredictionRow` per scored record, carried together as an :class:`AuditRecord`.

They are built once from the scorer's output (:func:`audit_record`), written by the audit
writer (insert, or on PostgreSQL :mod:`tabops.store.pgwrite`), carried by the spool as
JSON lines and read back by the queries. Their fields are the tables' columns, in the
tables' order (the tests check :func:`column_mismatches`), so an audit column is added
here, in ``store/schema.py``, in a migration, and in ``pgwrite.copy_text``, which writes a
prediction row's fields in that order (the tests check its field count and each value).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table

from tabops.store.schema import prediction_requests, predictions

__all__ = ["AuditRecord", "PredictionRow", "RequestRow", "audit_record", "column_mismatches"]


@dataclass(slots=True)
class RequestRow:
    """One prediction call (a row of ``prediction_requests``)."""

    id: str
    created_at: datetime
    usecase: str
    endpoint: str
    caller: str | None
    n_records: int
    client_request_id: str | None
    """The caller's ``X-Request-ID`` (the column ``prediction_requests.request_id``)."""
    model_version: str
    latency_ms: float

    def columns(self) -> dict[str, Any]:
        """Column name -> value, for an insert or the spool."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "usecase": self.usecase,
            "endpoint": self.endpoint,
            "caller": self.caller,
            "n_records": self.n_records,
            "request_id": self.client_request_id,
            "model_version": self.model_version,
            "latency_ms": self.latency_ms,
        }

    def copy_row(self) -> tuple[Any, ...]:
        """The values in the table's column order, for PostgreSQL's COPY."""
        return (
            self.id,
            self.created_at,
            self.usecase,
            self.endpoint,
            self.caller,
            self.n_records,
            self.client_request_id,
            self.model_version,
            self.latency_ms,
        )

    @classmethod
    def from_columns(cls, data: Mapping[Any, Any]) -> RequestRow:
        """From a database row or a spooled mapping (column names)."""
        return cls(
            id=data["id"],
            created_at=_aware(data["created_at"]),
            usecase=data["usecase"],
            endpoint=data["endpoint"],
            caller=data["caller"],
            n_records=data["n_records"],
            client_request_id=data["request_id"],
            model_version=data["model_version"],
            latency_ms=data["latency_ms"],
        )


@dataclass(slots=True)
class PredictionRow:
    """One scored record (a row of ``predictions``)."""

    id: str
    """The prediction id returned to the caller (UUIDv7)."""
    request_id: str
    """The :class:`RequestRow` this prediction belongs to."""
    created_at: datetime
    usecase: str
    model_version: str
    features: dict[str, Any]
    """The inputs, personal data pseudonymised."""
    label: str
    probabilities: dict[str, float]
    score: float
    """Positive-class probability (binary) or top-class probability (multiclass)."""
    threshold: float | None
    latency_ms: float
    entity_id: str | None = None
    """Pseudonymised entity id, for predictions by id."""
    shadow: bool = False
    shadow_of: str | None = None
    """For a challenger's prediction: the champion prediction it shadows."""
    explanation: dict[str, Any] | None = None
    """The explanation returned with it (``Explanation.as_dict()``); None when none was."""

    def columns(self) -> dict[str, Any]:
        """Column name -> value, for an insert or the spool."""
        return {
            "id": self.id,
            "request_id": self.request_id,
            "created_at": self.created_at,
            "usecase": self.usecase,
            "model_version": self.model_version,
            "features": self.features,
            "label": self.label,
            "probabilities": self.probabilities,
            "score": self.score,
            "threshold": self.threshold,
            "latency_ms": self.latency_ms,
            "entity_id": self.entity_id,
            "shadow": self.shadow,
            "shadow_of": self.shadow_of,
            "explanation": self.explanation,
        }

    @classmethod
    def from_columns(cls, data: Mapping[Any, Any]) -> PredictionRow:
        """From a database row or a spooled mapping (column names). Spool files written
        before ``shadow_of`` or ``explanation`` existed have no such key."""
        return cls(
            id=data["id"],
            request_id=data["request_id"],
            created_at=_aware(data["created_at"]),
            usecase=data["usecase"],
            model_version=data["model_version"],
            features=data["features"],
            label=data["label"],
            probabilities=data["probabilities"],
            score=data["score"],
            threshold=data["threshold"],
            latency_ms=data["latency_ms"],
            entity_id=data.get("entity_id"),
            shadow=bool(data.get("shadow", False)),
            shadow_of=data.get("shadow_of"),
            explanation=data.get("explanation"),
        )


@dataclass(slots=True)
class AuditRecord:
    """What one prediction call leaves in the audit store: its request and predictions."""

    request: RequestRow
    predictions: list[PredictionRow]

    def to_json(self) -> dict[str, Any]:
        """The spool's line format: ``{"request": {columns}, "predictions": [{columns}]}``
        (the format earlier versions wrote, so their spool files still replay)."""
        return {
            "request": self.request.columns(),
            "predictions": [p.columns() for p in self.predictions],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditRecord:
        """From a spooled line (see :meth:`to_json`)."""
        return cls(
            RequestRow.from_columns(data["request"]),
            [PredictionRow.from_columns(p) for p in data["predictions"]],
        )


def audit_record(
    *,
    request_id: str,
    created_at: datetime,
    usecase: str,
    endpoint: str,
    caller: str | None,
    client_request_id: str | None,
    model_version: str,
    latency_ms: float,
    ids: Sequence[str],
    features: Sequence[dict[str, Any]],
    labels: Sequence[str],
    probabilities: Sequence[dict[str, float]],
    scores: Sequence[float],
    threshold: float | None,
    entity_id: str | None = None,
    shadow_of: Sequence[str] | None = None,
    explanations: Sequence[dict[str, Any]] | None = None,
) -> AuditRecord:
    """The audit record of one call, from what the scorer returned for its records.

    Args:
        request_id: Id of the call's request row.
        created_at: When the call was scored.
        usecase: The use case.
        endpoint: Path of the endpoint called (``shadow:<path>`` for a challenger).
        caller: API key name or client address.
        client_request_id: The caller's ``X-Request-ID``.
        model_version: The version that scored.
        latency_ms: Scoring time of the whole call.
        ids: One prediction id per record.
        features: The records, pseudonymised.
        labels: The predicted labels.
        probabilities: Class probabilities, per record.
        scores: The positive-class (or top-class) probability of each record.
        threshold: The decision threshold (binary), or None.
        entity_id: Pseudonymised entity id (predictions by id).
        shadow_of: For a challenger: the champion prediction each record shadows.
        explanations: The explanation returned for each record (``Explanation.as_dict()``),
            or None when the call was not explained.
    """
    shadow = shadow_of is not None
    rows = [
        PredictionRow(
            pid,
            request_id,
            created_at,
            usecase,
            model_version,
            record,
            label,
            proba,
            float(score),
            threshold,
            latency_ms,
            entity_id,
            shadow,
            shadow_of[i] if shadow_of is not None else None,
            explanations[i] if explanations is not None else None,
        )
        for i, (pid, record, label, proba, score) in enumerate(
            zip(ids, features, labels, probabilities, scores, strict=True)
        )
    ]
    request = RequestRow(
        request_id,
        created_at,
        usecase,
        endpoint,
        caller,
        len(rows),
        client_request_id,
        model_version,
        latency_ms,
    )
    return AuditRecord(request, rows)


def _aware(value: Any) -> Any:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def column_mismatches() -> list[str]:
    """Rows whose fields are not their table's columns in order (COPY relies on it)."""
    pairs: tuple[tuple[type[Any], Table, dict[str, str]], ...] = (
        (RequestRow, prediction_requests, {"client_request_id": "request_id"}),
        (PredictionRow, predictions, {}),
    )
    wrong = []
    for row, table, renamed in pairs:
        names = [renamed.get(f.name, f.name) for f in fields(row)]
        if names != [c.name for c in table.columns]:
            wrong.append(f"{row.__name__} against {table.name}: {names}")
    return wrong
