"""Every page of the web UI driven by Streamlit's own harness (AppTest) against a real API
process: what a user fills in goes over HTTP to the API, and what the API answers (or
refuses) is what the page shows."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ADMIN, ADMIN_KEY
from tests.liveapi import APP, LiveApi

pytestmark = pytest.mark.slow

CREDIT_CSV_HEADER = (
    "row_id,Seniority,Home,Time,Age,Marital,Records,Job,Expenses,Income,Assets,Debt,Amount,Price"
)


def _app(live_api: LiveApi, monkeypatch: pytest.MonkeyPatch, usecase: str = "credit") -> AppTest:
    monkeypatch.setenv("TABOPS_UI__API_URL", live_api.base)
    monkeypatch.delenv("TABOPS_UI__API_KEY", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["usecase"] = usecase
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _button(at: AppTest, label: str) -> Any:
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r} in {[b.label for b in at.button]}"
    return found[0]


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in (*at.error, *at.warning, *at.success, *at.info)]
    return "\n".join(str(p) for p in parts)


def _admin(at: AppTest, key: str = ADMIN_KEY) -> AppTest:
    at.sidebar.text_input(key="api_key").set_value(key).run()
    return at


def test_predict_form_scores_the_example_and_the_result_is_recorded(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(live_api, monkeypatch)
    assert at.title[0].value == "Credit scoring: will an applicant default?"
    # one widget per feature, each built from the spec: no list of fields in the UI
    assert at.toggle(key="field:credit:prior_records") is not None
    home = at.selectbox(key="field:credit:Home")
    assert home.options[0] == "unknown" and "owner" in home.options  # optional category
    age = at.number_input(key="field:credit:Age")
    assert (age.min, age.max) == (18, 100)
    age.set_value(30)
    _button(at, "Predict").click().run()
    assert not at.exception
    prediction_id = at.code[0].value
    shown = _texts(at)
    assert "Model version 1" in shown
    assert "Refused" in shown or "Approved" in shown  # display labels
    assert "decision threshold" in shown
    recorded = httpx.get(
        f"{live_api.base}/usecases/credit/predictions/{prediction_id}", headers=ADMIN
    ).json()
    assert recorded["features"]["Age"] == 30
    assert at.markdown[[m.value.startswith("## ") for m in at.markdown].index(True)].value == (
        "## " + {"bad": "Refused", "good": "Approved"}[recorded["label"]]
    )
    # the page asked for the explanation: its reasons as sentences, recorded as shown
    explanation = recorded["explanation"]
    assert explanation is not None and len(explanation["reasons"]) == 3
    assert "#### Why" in shown
    for reason in explanation["reasons"]:
        assert f"- {reason}" in shown
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2  # the probability and the contributions
    contributions = charts[1].proto.spec  # type: ignore[attr-defined]
    assert "contribution" in contributions and "raises" in contributions
    assert "add up to" in shown


def test_a_value_out_of_bounds_is_never_scored(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the number inputs carry the spec's bounds: Streamlit keeps a value outside them out
    # of the form (a browser marks the field invalid: see tests/e2e), so what is scored
    # is always within the bounds the API accepts
    at = _app(live_api, monkeypatch)
    at.number_input(key="field:credit:Age").set_value(7)
    _button(at, "Predict").click().run()
    assert not at.error
    recorded = httpx.get(
        f"{live_api.base}/usecases/credit/predictions/{at.code[0].value}", headers=ADMIN
    ).json()
    assert 18 <= recorded["features"]["Age"] <= 100


def test_an_unknown_id_is_refused_beside_its_field(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(live_api, monkeypatch)
    at.text_input(key="entity:credit").set_value("not-a-row")
    _button(at, "Predict by id").click().run()
    errors = [e.value for e in at.error]
    # row_id is an integer id: the API refuses a value no row can have, with the reason
    assert errors == ["invalid row_id: must be an integer (ASCII digits) within 64 bits"], errors
    assert not at.code


def test_predict_by_id_and_an_unknown_id(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(live_api, monkeypatch)
    at.text_input(key="entity:credit").set_value("17")
    _button(at, "Predict by id").click().run()
    assert not at.exception
    assert "row_id 17" in _texts(at) and at.code
    at.text_input(key="entity:credit").set_value("999999")
    _button(at, "Predict by id").click().run()
    # the id is personal data: the API does not echo it back
    assert any("no such row_id in the 'credit' table" in e.value for e in at.error)


def test_iris_multiclass_form(live_api: LiveApi, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(live_api, monkeypatch, "iris")
    assert len(at.number_input) == 4 and not at.tabs  # no entity id: no predict by id
    _button(at, "Predict").click().run()
    assert "The most likely class is" in _texts(at)


def test_batch_with_bad_rows(live_api: LiveApi, monkeypatch: pytest.MonkeyPatch) -> None:
    # six rows, two of them bad, against an API taking at most four per call (above that:
    # 422 batch_too_large, and the page sends halves)
    at = _open(_app(live_api, monkeypatch), "batch")
    rows = [
        "1,9,rent,60,30,married,no,freelance,73,129,0,0,800,846",
        "2,17,rent,60,58,widow,no,fixed,48,131,0,0,1000,1658",
        "3,10,owner,36,7,married,no,freelance,90,200,3000,0,2000,2985",  # Age 7
        "4,0,rent,60,24,single,no,fixed,63,182,2500,0,900,1325",
        "5,0,rent,36,26,single,maybe,fixed,46,107,0,0,310,910",  # Records: not yes/no
        "6,1,owner,60,36,married,no,fixed,75,214,3500,0,650,1645",
    ]
    content = "\n".join([CREDIT_CSV_HEADER, *rows]).encode()
    at.file_uploader[0].set_value(("applications.csv", content, "text/csv")).run()
    assert not at.exception
    _button(at, "Score the file").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Rows scored": "4", "Rows not scored": "2"}
    scored, refused = at.dataframe[0].value, at.dataframe[1].value
    assert list(scored["row"]) == [1, 2, 4, 6]
    assert set(scored["prediction"]) <= {"Approved", "Refused"}
    assert scored["prediction_id"].str.len().min() == 36
    assert list(refused["row"]) == [3, 5]
    reasons = dict(zip(refused["field"], refused["reason"], strict=True))
    assert "greater than or equal to 18" in reasons["Age"]
    assert "yes/no" in reasons["prior_records"]
    assert {d.label for d in at.get("download_button")} >= {
        "Download the predictions (CSV)",
        "Download the refused rows (CSV)",
    }


def test_batch_file_missing_a_column(live_api: LiveApi, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _open(_app(live_api, monkeypatch), "batch")
    at.file_uploader[0].set_value(("bad.csv", b"Age,Income\n30,100\n", "text/csv")).run()
    assert any("has no column for: Seniority" in e.value for e in at.error)


def test_monitoring_renders_with_data(live_api: LiveApi, monkeypatch: pytest.MonkeyPatch) -> None:
    with httpx.Client(base_url=live_api.base, timeout=30) as client:
        example = client.get("/usecases/credit").json()["example"]
        answers = [
            client.post("/usecases/credit/predict", json=example | {"Age": 20 + i % 60}).json()
            for i in range(120)
        ]
        client.post(f"/usecases/credit/predict/{12}")
        explained = client.post(
            "/usecases/credit/predict", params={"explain": "true"}, json={"records": [example] * 4}
        )
        assert explained.status_code == 200, explained.text
        feedback = [{"prediction_id": a["prediction_id"], "actual": "good"} for a in answers[:30]]
        assert client.post("/usecases/credit/feedback", json=feedback).status_code == 201
        summary = client.get("/usecases/credit/summary", params={"window": "24h"}).json()
    at = _open(_app(live_api, monkeypatch), "monitoring")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Predictions"] == f"{summary['predictions']:,}"
    assert summary["predictions"] >= 121
    assert "Latency p50" in metrics and "Latency p95" in metrics and "Error rate" in metrics
    assert any(label in metrics for label in ("Approved", "Refused"))
    html = "\n".join(h.value for h in at.get("html")) + _texts(at)
    assert "features drifted" in html  # the tier banner
    drift_table = at.dataframe[0].value
    assert set(drift_table["feature"]) >= {"Age", "Income", "(score)", "(label)"}
    quality = at.dataframe[1].value
    assert "hold-out (at training)" in quality.columns
    shown = _texts(at)
    assert "explained predictions of version 1" in shown and "shift" in shown
    assert "permutation importance" in shown
    specs = [c.proto.spec for c in at.get("vega_lite_chart")]  # type: ignore[attr-defined]
    assert any('"live"' in spec and '"training"' in spec for spec in specs)  # the global view
    # recent predictions need an admin key: a clear message without one
    assert any("admin key" in e.value or "API key" in e.value for e in at.error)
    _admin(at)
    assert not at.exception
    recent = at.dataframe[2].value
    assert len(recent) == 100 and {"prediction", "score", "Age"} <= set(recent.columns)
    # a client's history, matched through the audit store's keyed hash
    at.text_input(key="history:credit").set_value("12").run()
    history = at.dataframe[2].value
    assert len(history) >= 1 and len(history) < 100


def test_models_train_promote_and_roll_back(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _open(_app(live_api, monkeypatch), "models")
    assert any("admin key" in e.value or "API key" in e.value for e in at.error)
    _admin(at)
    assert not at.exception
    assert "champion" in _texts(at)
    _button(at, "Train a new version").click().run()
    deadline = time.monotonic() + 240
    while not any("Version 2 trained" in s.value for s in at.success):
        assert not any("Training failed" in e.value for e in at.error), _texts(at)
        assert time.monotonic() < deadline, _texts(at)
        time.sleep(1)
        at.run()
    assert [p for p in at.get("progress")]
    at.run()
    versions = at.dataframe[0].value
    assert list(versions["version"]) == ["2", "1"]
    # make version 2 champion, then roll back to version 1
    at.selectbox(key="version:credit").set_value("2").run()
    _button(at, "Make champion").click().run()
    assert any("Version 2 is champion" in s.value for s in at.success), _texts(at)
    served = httpx.get(f"{live_api.base}/usecases/credit").json()
    assert served["champion_version"] == "2"
    at.selectbox(key="version:credit").set_value("1").run()
    _button(at, "Roll back to this version").click().run()
    assert any("Version 1 is champion (was 2)" in s.value for s in at.success), _texts(at)
    assert httpx.get(f"{live_api.base}/usecases/credit").json()["champion_version"] == "1"
    # challenger in the shadow, compared on live requests
    at.selectbox(key="version:credit").set_value("2").run()
    _button(at, "Make challenger (shadow)").click().run()
    example = httpx.get(f"{live_api.base}/usecases/credit").json()["example"]
    for _ in range(5):
        httpx.post(f"{live_api.base}/usecases/credit/predict", json=example)
    deadline = time.monotonic() + 30
    while (
        httpx.get(f"{live_api.base}/usecases/credit/models/compare", headers=ADMIN).json()["pairs"]
        < 5
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    at.run()
    assert {m.label: m.value for m in at.metric}["Same label"] == "100.0%"
    _button(at, "Stop shadow scoring").click().run()
    assert any("Shadow scoring stopped" in s.value for s in at.success)


def test_feedback_one_and_a_file(live_api: LiveApi, monkeypatch: pytest.MonkeyPatch) -> None:
    example = httpx.get(f"{live_api.base}/usecases/credit").json()["example"]
    ids = [
        httpx.post(f"{live_api.base}/usecases/credit/predict", json=example).json()["prediction_id"]
        for _ in range(3)
    ]
    at = _open(_app(live_api, monkeypatch), "feedback")
    at.text_input(key="feedback-id:credit").set_value(ids[0])
    at.selectbox(key="feedback-actual:credit").set_value("bad")
    _button(at, "Send").click().run()
    assert any(f"prediction {ids[0]} was **bad**" in s.value for s in at.success)
    content = f"prediction_id,actual\n{ids[1]},good\n{ids[2]},bad\n".encode()
    at.file_uploader[0].set_value(("outcomes.csv", content, "text/csv")).run()
    _button(at, "Send all").click().run()
    assert any("Recorded 2 outcomes" in s.value for s in at.success)
    story = httpx.get(f"{live_api.base}/usecases/credit/predictions/{ids[1]}", headers=ADMIN).json()
    assert story["actual"] == "good"
    # an unknown prediction id: all or nothing, and said so
    at.file_uploader[0].set_value(
        ("outcomes.csv", b"prediction_id,actual\nnot-an-id,good\n", "text/csv")
    ).run()
    _button(at, "Send all").click().run()
    assert any("not-an-id" in e.value for e in at.error)


def test_a_wrong_key_shows_a_clear_message(
    live_api: LiveApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(live_api, monkeypatch)
    _admin(at, "not-a-real-key")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("the API refused the key" in e and "invalid or revoked API key" in e for e in errors)


def test_an_unreachable_api_is_said_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.serverproc import free_port

    monkeypatch.setenv("TABOPS_UI__API_URL", f"http://127.0.0.1:{free_port()}")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert any("cannot reach the API" in e.value for e in at.error)
    assert any("Connect to the API" in i.value for i in at.info)
