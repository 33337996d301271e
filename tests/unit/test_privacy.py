"""Personal data stays out of public documents, and drift does not compare pseudonyms
with raw values."""

from __future__ import annotations

import copy

from tabops.monitoring.drift import compute_drift
from tabops.spec.files import parse_spec
from tabops.spec.schema import UseCase
from tabops.store.privacy import Pseudonymizer, mask_example
from tests.factories import BASE_SPEC, spec_dict, toy_frame


def _pii_spec() -> UseCase:
    features = copy.deepcopy(BASE_SPEC["features"])
    features[0]["pii"] = True  # age
    features[2]["pii"] = True  # plan
    return parse_spec(spec_dict(features=features))


def test_the_docs_example_masks_personal_data() -> None:
    spec = _pii_spec()
    reference = toy_frame(400)
    row = {"age": 77, "income": 1234.5, "plan": "pro", "active": True}
    masked = mask_example(spec, row, reference)
    assert masked["age"] == int(round(reference["age"].median())) and masked["age"] != 77
    assert masked["plan"] == "basic"  # the first allowed value, not the person's
    assert masked["income"] == 1234.5 and masked["active"] is True  # not personal data
    assert row["age"] == 77  # the input is not changed


def test_drift_leaves_pseudonymised_features_out() -> None:
    spec = _pii_spec()
    reference = toy_frame(400, seed=1)
    live = toy_frame(400, seed=2)
    hasher = Pseudonymizer("k" * 32)
    stored = live.assign(  # as the audit store holds them
        age=[hasher.hash(v) for v in live["age"]], plan=[hasher.hash(v) for v in live["plan"]]
    )
    report = compute_drift(spec, reference, stored)
    assert [f.name for f in report.features] == ["income", "active"]
    assert report.tier == "stable", report.message
    assert "not compared, personal data: age, plan" in report.message
