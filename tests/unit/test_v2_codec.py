"""The Open Inference Protocol codec: tensors to records and back, binary tensor data."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from tabops.errors import InvalidFeaturesError, MalformedRequestError
from tabops.serving.tensors import decode_records, encode_response, parse_request
from tabops.serving.v2 import InferenceRequest, model_metadata
from tabops.spec.files import parse_spec
from tests.factories import spec_dict

SPEC = parse_spec(spec_dict())  # age integer, income number (optional), plan category, active


def _request(*inputs: dict[str, Any], **extra: Any) -> InferenceRequest:
    return InferenceRequest.model_validate({"inputs": list(inputs), **extra})


def test_one_tensor_per_feature() -> None:
    request = _request(
        {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 41]},
        {"name": "income", "shape": [2, 1], "datatype": "FP64", "data": [[2500.5], [3000]]},
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["pro", "basic"]},
        {"name": "active", "shape": [2], "datatype": "BOOL", "data": [True, 0]},
    )
    assert decode_records(SPEC, request) == [
        {"age": 30, "income": 2500.5, "plan": "pro", "active": True},
        {"age": 41, "income": 3000.0, "plan": "basic", "active": False},
    ]


def test_one_row_major_tensor_in_feature_order() -> None:
    request = _request(
        {
            "name": "input-0",
            "shape": [2, 4],
            "datatype": "BYTES",
            "data": ["30", "2500.5", "pro", "true", "41.0", "3000", "basic", "false"],
        }
    )
    assert decode_records(SPEC, request) == [
        {"age": 30, "income": 2500.5, "plan": "pro", "active": True},
        {"age": 41, "income": 3000.0, "plan": "basic", "active": False},
    ]


def test_tensors_that_do_not_fit_are_refused() -> None:
    with pytest.raises(MalformedRequestError, match="do not fill shape"):
        decode_records(
            SPEC, _request({"name": "age", "shape": [3], "datatype": "INT64", "data": [1]})
        )
    with pytest.raises(MalformedRequestError, match="different numbers of rows"):
        decode_records(
            SPEC,
            _request(
                {"name": "age", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["pro", "pro"]},
            ),
        )
    with pytest.raises(MalformedRequestError, match=r"\[n, 4\]"):
        decode_records(
            SPEC, _request({"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]})
        )
    with pytest.raises(InvalidFeaturesError) as info:
        decode_records(
            SPEC,
            _request(
                {"name": "age", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "zip", "shape": [1], "datatype": "BYTES", "data": ["x"]},
            ),
        )
    assert [d.field for d in info.value.details] == ["zip"]


def _bytes_tensor(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def test_binary_tensor_data_after_the_json() -> None:
    """As Triton's client sends it: the JSON, then each tensor's raw little-endian bytes."""
    ages = np.array([30, 41], dtype="<i8").tobytes()
    plans = _bytes_tensor(["pro", "basic"])
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "age",
                    "shape": [2],
                    "datatype": "INT64",
                    "parameters": {"binary_data_size": len(ages)},
                },
                {
                    "name": "plan",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(plans)},
                },
                {"name": "active", "shape": [2], "datatype": "BOOL", "data": [True, False]},
            ]
        }
    ).encode()
    request = parse_request(head + ages + plans, len(head))
    assert [(r["age"], r["plan"], r["active"]) for r in decode_records(SPEC, request)] == [
        (30, "pro", True),
        (41, "basic", False),
    ]
    with pytest.raises(MalformedRequestError, match="unclaimed"):
        parse_request(head + ages + plans + b"!", len(head))
    with pytest.raises(MalformedRequestError, match="does not fit"):
        parse_request(head + ages, len(head))
    with pytest.raises(MalformedRequestError, match="outside the body"):
        parse_request(head, len(head) + 5)
    with pytest.raises(MalformedRequestError, match="not an inference request"):
        parse_request(b'{"inputs": "none"}')


def test_outputs_and_metadata_name_the_classes() -> None:
    request = _request({"name": "age", "shape": [1], "datatype": "INT64", "data": [30]})
    answer = encode_response(
        model_name="toy",
        model_version="3",
        request=request,
        labels=["yes", "no"],
        probabilities=[[0.25, 0.75], [0.9, 0.1]],
        classes=["no", "yes"],
        prediction_ids=["a", "b"],
    )
    label, proba = answer.outputs
    assert (label.datatype, label.shape, label.data) == ("BYTES", [2], ["yes", "no"])
    assert (proba.datatype, proba.shape, proba.data) == ("FP64", [2, 2], [0.25, 0.75, 0.9, 0.1])
    assert answer.parameters == {"prediction_ids": ["a", "b"]}
    asked = _request(
        {"name": "age", "shape": [1], "datatype": "INT64", "data": [30]},
        outputs=[{"name": "score"}],
    )
    with pytest.raises(InvalidFeaturesError, match="unknown outputs"):
        encode_response(
            model_name="toy",
            model_version="3",
            request=asked,
            labels=["yes"],
            probabilities=[[0.25, 0.75]],
            classes=["no", "yes"],
            prediction_ids=["a"],
        )
    meta = model_metadata(SPEC, "3", 0.4)
    assert [(t.name, t.datatype) for t in meta.inputs or []] == [
        ("age", "INT64"),
        ("income", "FP64"),
        ("plan", "BYTES"),
        ("active", "BOOL"),
    ]
    assert meta.parameters == {
        "classes": ["no", "yes"],
        "positive": "yes",
        "threshold": 0.4,
        "feature_order": ["age", "income", "plan", "active"],
    }
