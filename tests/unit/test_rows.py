"""Typed audit rows: the tables' columns in order, the spool's line format (also as the
previous version wrote it), and the one response envelope of a prediction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from tabops.scoring.base import Scores
from tabops.serving.dataplane import Predictions
from tabops.spec.derive import PREDICTION_FIELDS, batch_model, prediction_model
from tabops.spec.files import parse_spec
from tabops.store.pgwrite import copy_text
from tabops.store.privacy import Pseudonymizer
from tabops.store.rows import AuditRecord, PredictionRow, audit_record, column_mismatches
from tabops.store.schema import prediction_requests, predictions
from tabops.store.spool import Spool
from tests.conftest import empty_audit_engine
from tests.factories import spec_dict

SPEC = parse_spec(spec_dict())


def test_rows_hold_the_columns_of_their_tables_in_order() -> None:
    assert column_mismatches() == []
    # PostgreSQL's COPY text has one field per column (tests/integration/test_pgwrite.py
    # reads each one back)
    line = next(copy_text([_record(1)])).rstrip("\n")
    assert len(line.split("\t")) == len(predictions.columns)


def test_orjson_encodes_a_prediction_row_as_its_columns() -> None:
    """The PostgreSQL writer encodes the dataclass itself (store/pgwrite.py)."""
    for explained in (False, True):
        for row in _record(3, explained=explained).predictions:
            assert orjson.loads(orjson.dumps(row)) == orjson.loads(orjson.dumps(row.columns()))
            assert list(orjson.loads(orjson.dumps(row))) == list(row.columns())


EXPLANATION = {
    "method": "linear",
    "scale": "log_odds",
    "class": "yes",
    "base_value": -0.25,
    "value": 1.0,
    "contributions": {"age": 0.75, "plan": 0.5},
    "reasons": ["Age: 20 (low) raised the chance that y is yes"],
}


def _record(n: int, shadow_of: list[str] | None = None, explained: bool = False) -> AuditRecord:
    return audit_record(
        request_id="r-1",
        created_at=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        usecase="toy",
        endpoint="/usecases/toy/predict",
        caller="anonymous",
        client_request_id="x-7",
        model_version="3",
        latency_ms=0.4,
        ids=[f"p-{i}" for i in range(n)],
        features=[{"age": 20 + i, "plan": "pro"} for i in range(n)],
        labels=["yes"] * n,
        probabilities=[{"no": 0.25, "yes": 0.75}] * n,
        scores=[0.75] * n,
        threshold=0.5,
        shadow_of=shadow_of,
        explanations=[EXPLANATION] * n if explained else None,
    )


@given(n=st.integers(1, 5), shadow=st.booleans(), explained=st.booleans())
def test_a_record_survives_the_spool_line_format(n: int, shadow: bool, explained: bool) -> None:
    record = _record(n, [f"c-{i}" for i in range(n)] if shadow else None, explained)
    assert record.request.n_records == n
    assert all(p.shadow is shadow for p in record.predictions)
    line = json.dumps(record.to_json(), default=lambda d: {"$dt": d.isoformat()})
    decoded = json.loads(
        line, object_hook=lambda o: datetime.fromisoformat(o["$dt"]) if set(o) == {"$dt"} else o
    )
    assert AuditRecord.from_json(decoded) == record


def test_a_spool_file_of_the_previous_version_replays(tmp_path: Path) -> None:
    """Lines written before the typed rows (and before ``shadow_of`` existed) replay."""
    engine = empty_audit_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    spool = tmp_path / "spool"
    spool.mkdir()
    when = {"$dt": "2026-11-30T12:00:00+00:00"}
    line = {
        "request": {
            "id": "r-old",
            "created_at": when,
            "usecase": "toy",
            "endpoint": "/usecases/toy/predict",
            "caller": "anonymous",
            "n_records": 1,
            "request_id": None,
            "model_version": "2",
            "latency_ms": 0.5,
        },
        "predictions": [
            {
                "id": "p-old",
                "request_id": "r-old",
                "created_at": when,
                "usecase": "toy",
                "model_version": "2",
                "features": {"age": 30},
                "label": "no",
                "probabilities": {"no": 0.9, "yes": 0.1},
                "score": 0.1,
                "threshold": 0.5,
                "latency_ms": 0.5,
                "entity_id": None,
                "shadow": False,
            }
        ],
    }
    (spool / "spool-1-0123abcd.jsonl").write_text(json.dumps(line) + "\n")
    assert Spool(spool, 1 << 20).replay(engine) == 1
    with engine.connect() as conn:
        row = conn.execute(select(predictions).where(predictions.c.id == "p-old")).one()
    stored = PredictionRow.from_columns(row._mapping)
    assert (stored.label, stored.score, stored.shadow_of) == ("no", 0.1, None)
    assert stored.created_at == datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    engine.dispose()


def test_explanations_are_stored_and_unexplained_rows_hold_sql_null(tmp_path: Path) -> None:
    engine = empty_audit_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    explained, plain = _record(2, explained=True), _record(1)
    plain.request.id = "r-2"
    for p in plain.predictions:
        p.id, p.request_id = "q-0", "r-2"
    with engine.begin() as conn:
        for record in (explained, plain):
            conn.execute(prediction_requests.insert(), [record.request.columns()])
            conn.execute(predictions.insert(), [p.columns() for p in record.predictions])
    with engine.connect() as conn:
        rows = {
            r.id: PredictionRow.from_columns(r._mapping) for r in conn.execute(select(predictions))
        }
        nulls = (
            conn.execute(select(predictions.c.id).where(predictions.c.explanation.is_(None)))
            .scalars()
            .all()
        )
    assert rows["p-0"].explanation == EXPLANATION and rows["p-1"].explanation == EXPLANATION
    assert nulls == ["q-0"]  # SQL NULL, not a JSON null
    # PostgreSQL's COPY text: the explanation's JSON last, and \N (NULL) without one
    explained_line, plain_line = (next(copy_text([r])).splitlines()[0] for r in (explained, plain))
    assert explained_line.split("\t")[-1] == json.dumps(EXPLANATION, separators=(",", ":"))
    assert plain_line.split("\t")[-1] == "\\N"
    engine.dispose()


def test_reasons_do_not_quote_personal_data() -> None:
    spec = parse_spec(spec_dict())
    pii = spec.model_copy(
        update={"features": [f.model_copy(update={"pii": f.name == "age"}) for f in spec.features]}
    )
    out = Pseudonymizer("k" * 32).explanation(pii, EXPLANATION)
    assert out["reasons"] == ["age: personal data raised the chance that y is yes"]
    assert out["contributions"] == EXPLANATION["contributions"]
    assert Pseudonymizer("k" * 32).explanation(spec, EXPLANATION) is EXPLANATION


def _scores(positive: list[float]) -> Scores:
    proba = np.array([[1 - p, p] for p in positive])
    labels = ["yes" if p >= 0.5 else "no" for p in positive]
    return Scores(labels=labels, probabilities=proba, classes=("no", "yes"), threshold=0.5)


def test_the_score_column_is_computed_once_per_call() -> None:
    scores = _scores([0.2, 0.9])
    column = scores.positive_scores(1)
    assert column.tolist() == [0.2, 0.9]
    assert scores.positive_scores(1) is column  # the audit rows and the metrics share it
    assert scores.positive_scores(None).tolist() == [0.8, 0.9]  # multiclass: top class


def test_the_response_envelope_is_the_prediction_model() -> None:
    scores = _scores([0.2, 0.9])
    answer = Predictions(["a", "b"], scores, scores.probability_dicts(), "3", batch=True)
    model = prediction_model(SPEC)
    items = answer.items()
    assert all(tuple(item) == PREDICTION_FIELDS for item in items)
    assert [model.model_validate(item).label for item in items] == ["no", "yes"]
    batch = batch_model(model).model_validate(answer.envelope())
    assert [p.prediction_id for p in batch.predictions] == ["a", "b"]
    single = Predictions(["a"], _scores([0.7]), [{"no": 0.3, "yes": 0.7}], "3", batch=False)
    assert model.model_validate(single.envelope()).probabilities == {"no": 0.3, "yes": 0.7}
    explained = Predictions(
        ["a"], _scores([0.7]), [{"no": 0.3, "yes": 0.7}], "3", False, [EXPLANATION]
    )
    item = explained.envelope()
    assert tuple(item) == (*PREDICTION_FIELDS, "explanation")
    assert model.model_validate(item).explanation.contributions == {"age": 0.75, "plan": 0.5}
