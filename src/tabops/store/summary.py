"""Aggregates of the audit store over a time window, computed by the database.

What a monitoring dashboard shows at a glance: how many predictions, how they split by
label, how the scores are distributed, how the traffic moved over time and how long
scoring took. Everything is a SQL aggregate (``COUNT``, ``GROUP BY``, ordered offsets for
percentiles) that runs the same on SQLite and PostgreSQL: no audit row leaves the
database. Predictions scored in the shadow by a challenger are left out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Integer, and_, case, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from tabops.errors import FieldIssue, InvalidRequestError
from tabops.store.schema import feedback, prediction_requests, predictions

__all__ = ["SCORE_BINS", "Window", "parse_window", "summarize"]

SCORE_BINS = 20
"""Equal-width bins of the score histogram over [0, 1]."""

_WINDOW = re.compile(r"^(\d{1,4})([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
# the bucket of the timeline: about 12 to 60 points whatever the window
_BUCKETS_S = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


@dataclass(frozen=True)
class Window:
    """A time window ending now: ``24h``, ``7d``, or ``all`` (no start)."""

    name: str
    length: timedelta | None

    def since(self, now: datetime) -> datetime | None:
        """Where the window starts, or None for the whole history."""
        return None if self.length is None else now - self.length

    def bucket_s(self, span: timedelta) -> int:
        """Width of the timeline's buckets for a window (or a history) this long."""
        seconds = (self.length or span).total_seconds()
        for bucket in _BUCKETS_S:
            if seconds / bucket <= 60:
                return bucket
        return _BUCKETS_S[-1]


def parse_window(text: str) -> Window:
    """Read a window: a number and a unit (``30m``, ``24h``, ``7d``), or ``all``.

    Raises:
        InvalidRequestError: anything else, naming the ``window`` field.
    """
    value = text.strip().lower()
    if value == "all":
        return Window("all", None)
    match = _WINDOW.match(value)
    if match is None or int(match.group(1)) == 0:
        raise InvalidRequestError(
            "invalid window",
            [FieldIssue("window", f"'{text}' is not a window: use e.g. 30m, 24h, 7d or all")],
        )
    return Window(value, timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)]))


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _epoch(column: Any, dialect: str) -> ColumnElement[Any]:
    """Seconds since 1970 of a timestamp column, as an integer, in this database's SQL."""
    if dialect == "sqlite":
        # SQLAlchemy stores UTC timestamps as ISO text; strftime('%s') reads them as UTC
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), Integer)


def _percentiles(
    conn: Any, conds: list[Any], count: int, quantiles: tuple[float, ...]
) -> dict[str, float | None]:
    """Nearest-rank percentiles of request latency: one ordered, offset read each."""
    out: dict[str, float | None] = {}
    for q in quantiles:
        key = f"p{round(q * 100)}"
        if count == 0:
            out[key] = None
            continue
        rank = max(math.ceil(q * count), 1) - 1
        query = (
            select(prediction_requests.c.latency_ms)
            .where(and_(*conds))
            .order_by(prediction_requests.c.latency_ms)
            .offset(rank)
            .limit(1)
        )
        out[key] = float(conn.execute(query).scalar_one())
    return out


def summarize(
    engine: Engine,
    usecase: str,
    classes: list[str],
    positive: str | None,
    window: Window,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The dashboard figures of one use case over a window.

    Args:
        engine: The audit database.
        usecase: The use case.
        classes: Its target classes (every one is listed, seen or not).
        positive: Its positive class (binary tasks), for the positive rate.
        window: The time window, ending at ``now``.
        now: The end of the window (default: the current time).

    Returns:
        Counts (predictions, requests, labels, feedback), the positive rate, latency
        percentiles of the scoring calls, the score histogram and a timeline of
        predictions per label.
    """
    now = now or datetime.now(UTC)
    since = window.since(now)
    p = predictions.c
    conds: list[Any] = [p.usecase == usecase, p.shadow.is_(False)]
    r = prediction_requests.c
    req_conds: list[Any] = [r.usecase == usecase, ~r.endpoint.startswith("shadow:")]
    fb_conds: list[Any] = [feedback.c.usecase == usecase]
    if since is not None:
        conds.append(p.created_at >= since)
        req_conds.append(r.created_at >= since)
        fb_conds.append(feedback.c.created_at >= since)
    dialect = engine.dialect.name
    bin_index = cast(func.floor(p.score * SCORE_BINS), Integer)
    score_bin = case((bin_index >= SCORE_BINS, SCORE_BINS - 1), else_=bin_index)
    with engine.connect() as conn:
        totals = conn.execute(
            select(func.count(), func.min(p.created_at), func.max(p.created_at), func.avg(p.score))
            .select_from(predictions)
            .where(and_(*conds))
        ).one()
        n, first, last, mean_score = int(totals[0]), _aware(totals[1]), _aware(totals[2]), totals[3]
        by_label: dict[str, int] = dict(
            conn.execute(select(p.label, func.count()).where(and_(*conds)).group_by(p.label)).all()
        )
        bins: dict[int, int] = dict(
            conn.execute(
                select(score_bin, func.count()).where(and_(*conds)).group_by(score_bin)
            ).all()
        )
        requests = conn.execute(
            select(func.count(), func.avg(r.latency_ms), func.max(r.latency_ms))
            .select_from(prediction_requests)
            .where(and_(*req_conds))
        ).one()
        n_requests = int(requests[0])
        latency = _percentiles(conn, req_conds, n_requests, (0.5, 0.95, 0.99))
        latency |= {
            "mean": float(requests[1]) if requests[1] is not None else None,
            "max": float(requests[2]) if requests[2] is not None else None,
        }
        n_feedback = int(
            conn.execute(
                select(func.count()).select_from(feedback).where(and_(*fb_conds))
            ).scalar_one()
        )
        span = (now - first) if first is not None else timedelta(hours=1)
        bucket_s = window.bucket_s(span)
        epoch = _epoch(p.created_at, dialect)
        bucket = (epoch // bucket_s) * bucket_s
        timeline_rows = conn.execute(
            select(bucket.label("bucket"), p.label, func.count())
            .where(and_(*conds))
            .group_by(bucket, p.label)
            .order_by(bucket)
        ).all()
    labels = {c: int(by_label.get(c, 0)) for c in classes}
    labels |= {k: int(v) for k, v in by_label.items() if k not in labels}  # older specs
    return {
        "usecase": usecase,
        "window": window.name,
        "since": since,
        "until": now,
        "predictions": n,
        "requests": n_requests,
        "first_at": first,
        "last_at": last,
        "labels": labels,
        "positive_class": positive,
        "positive_rate": (labels.get(positive, 0) / n) if positive is not None and n else None,
        "mean_score": float(mean_score) if mean_score is not None else None,
        "latency_ms": latency,
        "feedback": n_feedback,
        "score_histogram": {
            "edges": [round(i / SCORE_BINS, 4) for i in range(SCORE_BINS + 1)],
            "counts": [int(bins.get(i, 0)) for i in range(SCORE_BINS)],
        },
        "bucket_s": bucket_s,
        "timeline": [
            {
                "start": datetime.fromtimestamp(int(row[0]), UTC),
                "label": row[1],
                "count": int(row[2]),
            }
            for row in timeline_rows
        ],
    }
