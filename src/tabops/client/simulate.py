"""Realistic traffic for demos and tests: rows sampled from a use case's data, optionally
shifted, sent to a running server (with their true labels as feedback, if asked)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

from tabops.errors import FieldIssue, InvalidRequestError
from tabops.scoring.records import api_records
from tabops.spec.features import kind_of
from tabops.spec.schema import UseCase

__all__ = ["Shift", "SimulationResult", "apply_shifts", "parse_shift", "sample_records", "simulate"]


@dataclass(frozen=True)
class Shift:
    """A change applied to one feature: ``+2sd``, ``+100``, ``*1.5``, a category, ``null``."""

    feature: str
    op: str
    value: Any


def parse_shift(spec: UseCase, text: str) -> Shift:
    """Parse ``FEATURE=CHANGE``.

    Raises:
        InvalidRequestError: unknown feature or a change that does not fit its type.
    """
    name, sep, change = text.partition("=")
    if not sep or name not in spec.feature_names:
        raise InvalidRequestError(
            f"invalid drift '{text}': use FEATURE=CHANGE, FEATURE one of "
            + ", ".join(spec.feature_names),
            [FieldIssue("drift", "unknown feature")],
        )
    feature = spec.feature(name)
    change = change.strip()
    if change.lower() == "null":
        return Shift(name, "null", None)
    try:
        is_value, value = kind_of(feature).value_of(feature, change)
    except ValueError as exc:
        raise InvalidRequestError(
            f"invalid drift '{text}': {exc}", [FieldIssue("drift", str(exc))]
        ) from None
    if is_value:
        return Shift(name, "set", value)
    try:
        if change.endswith("sd"):
            return Shift(name, "sd", float(change[:-2]))
        if change.startswith("*"):
            return Shift(name, "scale", float(change[1:]))
        return Shift(name, "add", float(change))
    except ValueError:
        raise InvalidRequestError(
            f"invalid drift '{text}': a number change is +2sd, -1.5sd, *1.2, +100 or null"
        ) from None


def sample_records(
    spec: UseCase, frame: pd.DataFrame, n: int, seed: int = 0
) -> tuple[list[dict[str, Any]], list[str]]:
    """``n`` rows drawn with replacement: records as the API takes them, and true labels."""

    rows = frame.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
    records = api_records(spec, rows)
    return records, [str(v) for v in rows[spec.target.name]]


def apply_shifts(
    spec: UseCase, frame: pd.DataFrame, records: list[dict[str, Any]], shifts: list[Shift]
) -> None:
    """Shift records in place, keeping numbers inside the spec's bounds."""
    for shift in shifts:
        feature = spec.feature(shift.feature)
        sd = float(pd.to_numeric(frame[shift.feature], errors="coerce").std() or 0.0)
        for record in records:
            value = record[shift.feature]
            if shift.op == "null":
                if not feature.required:
                    record[shift.feature] = None
                continue
            if shift.op == "set":
                record[shift.feature] = shift.value
                continue
            if value is None:
                continue
            new = {
                "sd": value + shift.value * sd,
                "scale": value * shift.value,
                "add": value + shift.value,
            }[shift.op]
            low = feature.min if feature.min is not None else -np.inf
            high = feature.max if feature.max is not None else np.inf
            new = min(max(new, low), high)
            record[shift.feature] = kind_of(feature).api_value(new)


@dataclass
class SimulationResult:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    feedback: int = 0
    labels: dict[str, int] = field(default_factory=dict)


async def simulate(
    base_url: str,
    spec: UseCase,
    records: list[dict[str, Any]],
    truths: list[str] | None,
    *,
    api_key: str | None = None,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Send each record as one prediction request (and its true label as feedback when
    ``truths`` is given), ``concurrency`` at a time. Talks to ``base_url`` only."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    result = SimulationResult()
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def one(i: int) -> None:
            async with gate:
                result.sent += 1
                response = await client.post(f"/usecases/{spec.name}/predict", json=records[i])
                if response.status_code != 200:
                    result.failed += 1
                else:
                    result.ok += 1
                    body = response.json()
                    result.labels[body["label"]] = result.labels.get(body["label"], 0) + 1
                    if truths is not None:
                        sent = await client.post(
                            f"/usecases/{spec.name}/feedback",
                            json={
                                "prediction_id": body["prediction_id"],
                                "actual": truths[i],
                                "source": "simulate",
                            },
                        )
                        result.feedback += sent.status_code == 201
                if progress is not None:
                    progress(1)

        await asyncio.gather(*(one(i) for i in range(len(records))))
    return result
