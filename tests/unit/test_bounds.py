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
