"""What the audit tables would refuse is found before a record is acknowledged, however
the check is made fast."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tabops.ids import uuid7_many
from tabops.store.bounds import record_problems
from tabops.store.rows import AuditRecord, audit_record


def _record(features: dict[str, Any], label: str = "good") -> AuditRecord:
    ids = uuid7_many(3)
    return audit_record(
        request_id=ids[0],
        created_at=datetime.now(UTC),
        usecase="credit",
        endpoint="/usecases/credit/predict",
        caller=None,
        client_request_id=None,
        model_version="1",
        latency_ms=1.0,
        ids=ids[1:],
        features=[{"Age": 30}, features],
        labels=["good", label],
        probabilities=[{"bad": 0.2, "good": 0.8}] * 2,
        scores=[0.2, 0.2],
        threshold=0.5,
    )


def test_a_clean_record_has_no_problem_even_with_escapes_typed_as_text() -> None:
    assert record_problems(_record({"Note": "a typed \\u0000, not a NUL", "Age": 41})) == []
    assert record_problems(_record({"Name": "Zoë Ådne 李"})) == []


def test_each_refused_value_is_named_where_it_is() -> None:
    assert record_problems(_record({"Note": "a\x00b"})) == [
        "predictions[1].features.Note: contains a NUL character"
    ]
    assert record_problems(_record({"bad\x00key": 1})) == [
        "predictions[1].features: contains a NUL character"
    ]
    assert record_problems(_record({"Tags": ["ok", "\ud800"]})) == [
        "predictions[1].features.Tags[1]: contains a lone surrogate (not valid UTF-8)"
    ]
    assert record_problems(_record({}, label="x" * 300)) == [
        "predictions[1].label: 300 characters, the column holds 255"
    ]


def test_every_bounded_column_of_both_rows_is_checked() -> None:
    """The quick pass over a record (one encoding, the bounded lengths) lets none of these
    through: each reaches the full check, which names it."""
    cases: list[tuple[str, Any, str]] = [
        ("request.caller", "x" * 300, "request.caller: 300 characters, the column holds 255"),
        (
            "request.client_request_id",
            "r" * 200,
            "request.request_id: 200 characters, the column holds 128",
        ),
        ("request.endpoint", "/a\x00b", "request.endpoint: contains a NUL character"),
        (
            "prediction.entity_id",
            "e" * 70,
            "predictions[1].entity_id: 70 characters, the column holds 64",
        ),
        (
            "prediction.label",
            "bad\ud800",
            "predictions[1].label: contains a lone surrogate (not valid UTF-8)",
        ),
    ]
    for where, value, problem in cases:
        record = _record({"Age": 41})
        row, name = where.split(".")
        target = record.request if row == "request" else record.predictions[1]
        setattr(target, name, value)
        assert record_problems(record) == [problem], where
