"""Reading the audit store: prediction listings, one prediction's story, feedback, export,
retention. Audit rows are read as :mod:`tabops.store.rows` types and converted to plain
dicts here and nowhere else."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, and_, bindparam, delete, exists, func, select
from sqlalchemy.orm import aliased

from tabops.errors import FieldIssue, InvalidFeaturesError, PredictionNotFoundError
from tabops.spec.schema import UseCase
from tabops.store.partitions import drop_months_before
from tabops.store.rows import PredictionRow, RequestRow
from tabops.store.schema import feedback, prediction_requests, predictions

__all__ = [
    "PredictionFilter",
    "PurgeCounts",
    "canonical_id",
    "export_predictions",
    "compare_shadow",
    "get_prediction",
    "latest_actual",
    "list_predictions",
    "purge",
    "record_feedback",
]


def _aware(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def canonical_id(value: str) -> str | None:
    """An id as the store holds it (lowercase, hyphenated), or None if it is no UUID.

    PostgreSQL's ``uuid`` columns refuse other text outright: an id a caller typed is
    checked here, and one that is no UUID is simply not recorded.
    """
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def latest_actual(prediction_id: Any) -> Any:
    """A scalar subquery: the latest feedback label of a prediction (the later one wins)."""
    return (
        select(feedback.c.actual)
        .where(feedback.c.prediction_id == prediction_id)
        .order_by(feedback.c.created_at.desc(), feedback.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _latest_actual() -> Any:
    return latest_actual(predictions.c.id)


def record_feedback(
    engine: Engine, spec: UseCase, items: list[tuple[str, str]], source: str | None
) -> int:
    """Store ground truth for recorded predictions, all or nothing.

    Args:
        engine: The database.
        spec: The use case the predictions belong to.
        items: ``(prediction_id, actual label)`` pairs.
        source: Who sent them (kept with each row).

    Returns:
        The number of feedback rows written. Earlier feedback is kept: the latest wins.

    Raises:
        InvalidFeaturesError: a label is not one of the use case's classes.
        PredictionNotFoundError: a prediction id is not recorded for this use case.
    """
    classes = spec.target.classes
    bad = [
        FieldIssue(f"[{i}].actual", f"'{actual}' is not one of {', '.join(classes)}")
        for i, (_, actual) in enumerate(items)
        if actual not in classes
    ]
    if bad:
        raise InvalidFeaturesError("invalid feedback", bad)
    stored = {pid: canonical_id(pid) for pid, _ in items}
    ids = sorted({c for c in stored.values() if c is not None})
    with engine.begin() as conn:
        found: set[str] = set(
            conn.execute(
                select(predictions.c.id).where(
                    predictions.c.id.in_(ids), predictions.c.usecase == spec.name
                )
            ).scalars()
        )
        missing = sorted({pid for pid, c in stored.items() if c not in found})
        if missing:
            raise PredictionNotFoundError(
                f"no recorded prediction of '{spec.name}' with id {', '.join(missing[:5])}"
                + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
            )
        now = datetime.now(UTC)
        conn.execute(
            feedback.insert(),
            [
                {
                    "prediction_id": stored[pid],
                    "usecase": spec.name,
                    "actual": actual,
                    "created_at": now,
                    "source": source,
                }
                for pid, actual in items
            ],
        )
    return len(items)


@dataclass(frozen=True)
class PredictionFilter:
    """Which recorded predictions to list."""

    since: datetime | None = None
    until: datetime | None = None
    model_version: str | None = None
    label: str | None = None
    has_feedback: bool | None = None
    entity_pseudonym: str | None = None
    """The keyed hash of an entity id (``Pseudonymizer.hash``), as the audit rows store it."""


def _conditions(usecase: str, where: PredictionFilter) -> list[Any]:
    conds: list[Any] = [predictions.c.usecase == usecase]
    if where.since is not None:
        conds.append(predictions.c.created_at >= where.since)
    if where.until is not None:
        conds.append(predictions.c.created_at < where.until)
    if where.model_version is not None:
        conds.append(predictions.c.model_version == where.model_version)
    if where.label is not None:
        conds.append(predictions.c.label == where.label)
    if where.entity_pseudonym is not None:
        conds.append(predictions.c.entity_id == where.entity_pseudonym)
    if where.has_feedback is not None:
        has = exists().where(feedback.c.prediction_id == predictions.c.id)
        conds.append(has if where.has_feedback else ~has)
    return conds


def _prediction(values: Mapping[Any, Any]) -> dict[str, Any]:
    """A listed prediction: its typed row, as the API shows it, and its latest feedback."""
    p = PredictionRow.from_columns(values)
    return {
        "prediction_id": p.id,
        "created_at": p.created_at,
        "model_version": p.model_version,
        "label": p.label,
        "probabilities": p.probabilities,
        "score": p.score,
        "threshold": p.threshold,
        "features": p.features,
        "entity_id": p.entity_id,
        "shadow": p.shadow,
        "explanation": p.explanation,
        "latency_ms": p.latency_ms,
        "request_id": p.request_id,
        "actual": values["actual"],
    }


def list_predictions(
    engine: Engine,
    usecase: str,
    where: PredictionFilter,
    limit: int = 100,
    after: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Recorded predictions, newest first, a page at a time.

    Ids are UUIDv7, ordered by time, so the last id of a page is the cursor of the next
    (keyset pagination: stable while new predictions arrive, and fast at any depth).

    Returns:
        The page, and the cursor of the next page (None at the end).
    """
    conds = _conditions(usecase, where)
    if after is not None:
        cursor = canonical_id(after)
        if cursor is None:
            raise InvalidFeaturesError(
                "invalid cursor", [FieldIssue("after", "not a cursor this listing returned")]
            )
        conds.append(predictions.c.id < cursor)
    query = (
        select(predictions, _latest_actual().label("actual"))
        .where(and_(*conds))
        .order_by(predictions.c.id.desc())
        .limit(limit + 1)
    )
    with engine.connect() as conn:
        rows = [_prediction(r._mapping) for r in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["prediction_id"] if more and rows else None)


# built once: a lookup by id is the audit trail's most frequent read. The prediction
# comes with its feedback (usually none or one row) in one statement: the join is planned
# against the one partition the id names.
_ONE = (
    select(
        predictions,
        feedback.c.actual.label("feedback_actual"),
        feedback.c.created_at.label("feedback_created_at"),
        feedback.c.source.label("feedback_source"),
    )
    .outerjoin(feedback, feedback.c.prediction_id == predictions.c.id)
    .where(predictions.c.id == bindparam("pid"), predictions.c.usecase == bindparam("usecase"))
    .order_by(feedback.c.created_at, feedback.c.id)
)
_ITS_REQUEST = select(prediction_requests).where(prediction_requests.c.id == bindparam("rid"))


def get_prediction(engine: Engine, usecase: str, prediction_id: str) -> dict[str, Any]:
    """One prediction with its request and every feedback received (oldest first).

    Two statements by key, outside a transaction (no BEGIN and ROLLBACK round trips), each
    planned against one partition on PostgreSQL: the prediction with its feedback, then
    its request (a join of the request would be planned against every month). The last
    feedback is the latest ``actual``.

    Raises:
        PredictionNotFoundError: not recorded for this use case.
    """
    wanted = canonical_id(prediction_id)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        found = conn.execute(_ONE, {"pid": wanted, "usecase": usecase}) if wanted else None
        rows = found.all() if found is not None else []
        if not rows:
            raise PredictionNotFoundError(
                f"no recorded prediction of '{usecase}' with id {prediction_id}"
            )
        request = conn.execute(_ITS_REQUEST, {"rid": rows[0].request_id}).first()
    history = [
        {
            "actual": r.feedback_actual,
            "created_at": _aware(r.feedback_created_at),
            "source": r.feedback_source,
        }  # fmt: skip
        for r in rows
        if r.feedback_actual is not None
    ]
    out = _prediction({**rows[0]._mapping, "actual": history[-1]["actual"] if history else None})
    out["request"] = (
        RequestRow.from_columns(request._mapping).columns() if request is not None else {}
    )
    out["feedback"] = history
    return out


def export_predictions(engine: Engine, spec: UseCase, where: PredictionFilter) -> pd.DataFrame:
    """Recorded predictions as a flat table: one column per feature, class probabilities as
    ``p_<class>`` columns, and the latest feedback as ``actual``."""
    query = (
        select(predictions, _latest_actual().label("actual"))
        .where(and_(*_conditions(spec.name, where)))
        .order_by(predictions.c.id)
    )
    with engine.connect() as conn:
        rows = [_prediction(r._mapping) for r in conn.execute(query)]
    columns = [
        "prediction_id",
        "created_at",
        "model_version",
        "entity_id",
        "label",
        "score",
        "threshold",
    ]
    flat = []
    for r in rows:
        item = {c: r[c] for c in columns}
        item |= {f"p_{c}": r["probabilities"].get(c) for c in spec.target.classes}
        item |= {f.name: r["features"].get(f.name) for f in spec.features}
        item["actual"] = r["actual"]
        flat.append(item)
    names = [*columns, *(f"p_{c}" for c in spec.target.classes), *spec.feature_names, "actual"]
    return pd.DataFrame(flat, columns=names)


@dataclass(frozen=True)
class PurgeCounts:
    requests: int
    predictions: int
    feedback: int


def purge(
    engine: Engine, usecase: str | None, older_than: datetime, batch_size: int = 5000
) -> PurgeCounts:
    """Delete audit rows older than a date, of one use case or (``usecase`` None) of all.

    On PostgreSQL, a month wholly older than the date whose partitions hold no other use
    case's rows is dropped, partition by partition (:mod:`tabops.store.partitions`): a
    month of millions of rows goes in well under a second, and its index entries with it.
    What is left (the month the date falls in, months shared with other use cases, rows of
    the default partition, and everything on SQLite) is deleted in batches: short
    transactions, so the service keeps writing meanwhile.

    Returns:
        How many rows of each table were deleted.
    """
    dropped = drop_months_before(engine, usecase, older_than)
    n_feedback, n_predictions, n_requests = (
        dropped["feedback"],
        dropped["predictions"],
        dropped["requests"],
    )
    scope = [] if usecase is None else [predictions.c.usecase == usecase]
    while True:
        with engine.begin() as conn:
            ids: list[str] = list(
                conn.execute(
                    select(predictions.c.id)
                    .where(*scope, predictions.c.created_at < older_than)
                    .limit(batch_size)
                ).scalars()
            )
            if not ids:
                break
            n_feedback += conn.execute(
                delete(feedback).where(feedback.c.prediction_id.in_(ids))
            ).rowcount
            n_predictions += conn.execute(
                delete(predictions).where(predictions.c.id.in_(ids))
            ).rowcount
    request_scope = [] if usecase is None else [prediction_requests.c.usecase == usecase]
    while True:
        with engine.begin() as conn:
            orphans: list[str] = list(
                conn.execute(
                    select(prediction_requests.c.id)
                    .where(
                        *request_scope,
                        prediction_requests.c.created_at < older_than,
                        ~exists().where(predictions.c.request_id == prediction_requests.c.id),
                    )
                    .limit(batch_size)
                ).scalars()
            )
            if not orphans:
                break
            n_requests += conn.execute(
                delete(prediction_requests).where(prediction_requests.c.id.in_(orphans))
            ).rowcount
    return PurgeCounts(requests=n_requests, predictions=n_predictions, feedback=n_feedback)


def count_predictions(engine: Engine, usecase: str | None = None) -> int:
    """Recorded predictions (of one use case, or all)."""
    query = select(func.count()).select_from(predictions)
    if usecase is not None:
        query = query.where(predictions.c.usecase == usecase)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def compare_shadow(engine: Engine, usecase: str, window: int = 1000) -> dict[str, Any]:
    """Champion against challenger on the same live requests: the last ``window`` pairs
    of a prediction and its shadow.

    Returns:
        Pair count and versions; label agreement; score differences; and, where feedback
        exists, the accuracy of each on the same labelled cases.
    """
    champion = aliased(predictions, name="champion")
    shadow = aliased(predictions, name="shadow")
    actual = latest_actual(champion.c.id)
    query = (
        select(
            champion.c.model_version,
            champion.c.label,
            champion.c.score,
            shadow.c.model_version,
            shadow.c.label,
            shadow.c.score,
            actual,
        )
        .join(champion, champion.c.id == shadow.c.shadow_of)
        .where(shadow.c.usecase == usecase, shadow.c.shadow.is_(True))
        .order_by(shadow.c.id.desc())
        .limit(window)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out: dict[str, Any] = {
        "usecase": usecase,
        "pairs": len(rows),
        "champion_versions": sorted({r[0] for r in rows}),
        "challenger_versions": sorted({r[3] for r in rows}),
        "agreement": None,
        "mean_abs_score_diff": None,
        "max_abs_score_diff": None,
        "labelled": 0,
        "champion_accuracy": None,
        "challenger_accuracy": None,
    }
    if not rows:
        return out
    diffs = [abs(r[2] - r[5]) for r in rows]
    out["agreement"] = sum(r[1] == r[4] for r in rows) / len(rows)
    out["mean_abs_score_diff"] = sum(diffs) / len(diffs)
    out["max_abs_score_diff"] = max(diffs)
    labelled = [r for r in rows if r[6] is not None]
    out["labelled"] = len(labelled)
    if labelled:
        out["champion_accuracy"] = sum(r[1] == r[6] for r in labelled) / len(labelled)
        out["challenger_accuracy"] = sum(r[4] == r[6] for r in labelled) / len(labelled)
    return out
