"""The audit store as monitoring reads it: windows of recent live predictions with their
latest feedback, and the drift runs recorded over them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Engine, and_, func, select

from tabops.store.queries import latest_actual
from tabops.store.schema import drift_runs, predictions

if TYPE_CHECKING:
    from tabops.monitoring.drift import DriftReport

__all__ = [
    "drift_history",
    "last_drift_run_at",
    "live_explanations",
    "live_window",
    "record_drift_run",
]


def live_window(
    engine: Engine, usecase: str, model_version: str | None, window: int
) -> pd.DataFrame:
    """The most recent served (non-shadow) predictions: features, score, label, latest
    feedback (``actual``), oldest first."""
    actual = latest_actual(predictions.c.id)
    conds = [predictions.c.usecase == usecase, predictions.c.shadow.is_(False)]
    if model_version is not None:
        conds.append(predictions.c.model_version == model_version)
    query = (
        select(
            predictions.c.id,
            predictions.c.model_version,
            predictions.c.features,
            predictions.c.probabilities,
            predictions.c.score,
            predictions.c.label,
            actual.label("actual"),
        )
        .where(and_(*conds))
        .order_by(predictions.c.id.desc())
        .limit(window)
    )
    with engine.connect() as conn:
        rows = list(conn.execute(query).all())
    rows.reverse()
    frame = pd.DataFrame([r.features for r in rows])
    frame["_id"] = [r.id for r in rows]
    frame["_version"] = [r.model_version for r in rows]
    frame["_probabilities"] = [r.probabilities for r in rows]
    frame["_score"] = [r.score for r in rows]
    frame["_label"] = [r.label for r in rows]
    frame["_actual"] = [r.actual for r in rows]
    return frame


def live_explanations(
    engine: Engine, usecase: str, model_version: str | None, window: int
) -> list[dict[str, Any]]:
    """The explanations recorded with the most recent explained, served (non-shadow)
    predictions (``Explanation.as_dict()`` forms), oldest first."""
    conds = [
        predictions.c.usecase == usecase,
        predictions.c.shadow.is_(False),
        predictions.c.explanation.is_not(None),
    ]
    if model_version is not None:
        conds.append(predictions.c.model_version == model_version)
    query = (
        select(predictions.c.explanation)
        .where(and_(*conds))
        .order_by(predictions.c.id.desc())
        .limit(window)
    )
    with engine.connect() as conn:
        # a JSON null (as opposed to SQL NULL) is not an explanation either
        found: list[dict[str, Any] | None] = list(conn.execute(query).scalars())
    rows = [e for e in found if e is not None]
    rows.reverse()
    return rows


def record_drift_run(engine: Engine, report: DriftReport, window_size: int) -> None:
    """Store one drift run (its summary columns and the whole report as JSON)."""
    with engine.begin() as conn:
        conn.execute(
            drift_runs.insert(),
            {
                "created_at": datetime.now(UTC),
                "usecase": report.usecase,
                "model_version": report.model_version,
                "window_size": window_size,
                "n_live": report.n_live,
                "tier": report.tier,
                "level": report.level,
                "n_drifted": report.n_drifted,
                "report": report.as_dict(),
            },
        )


def last_drift_run_at(engine: Engine, usecase: str) -> datetime | None:
    """When the use case's last drift run was recorded, if ever."""
    with engine.connect() as conn:
        last: datetime | None = conn.execute(
            select(func.max(drift_runs.c.created_at)).where(drift_runs.c.usecase == usecase)
        ).scalar()
    if last is None:
        return None
    return last if last.tzinfo is not None else last.replace(tzinfo=UTC)


def drift_history(engine: Engine, usecase: str, limit: int = 100) -> list[dict[str, Any]]:
    """Stored drift runs, newest first (without their per-feature detail)."""
    query = (
        select(
            drift_runs.c.id,
            drift_runs.c.created_at,
            drift_runs.c.model_version,
            drift_runs.c.window_size,
            drift_runs.c.n_live,
            drift_runs.c.tier,
            drift_runs.c.level,
            drift_runs.c.n_drifted,
        )
        .where(drift_runs.c.usecase == usecase)
        .order_by(drift_runs.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        if row["created_at"].tzinfo is None:
            row["created_at"] = row["created_at"].replace(tzinfo=UTC)
    return rows
