"""The codec between Open Inference Protocol tensors and a use case's records (see
:mod:`tabops.serving.v2` for the protocol's types). No HTTP here.

Inputs come as JSON, or as JSON followed by binary tensor data (Triton's clients' default),
either as one named tensor per feature (columnar, as MLServer's pandas codec sends them),
or as a single row-major tensor of shape ``[n, n_features]`` in the spec's feature order.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from tabops.errors import FieldIssue, InvalidFeaturesError, MalformedRequestError, validation_issues
from tabops.serving.v2 import (
    EXPLANATION,
    LABEL,
    OUTPUTS,
    PROBABILITIES,
    InferenceRequest,
    InferenceResponse,
    RequestInput,
    ResponseOutput,
)
from tabops.spec.schema import Feature, UseCase

__all__ = ["decode_records", "encode_response", "explain_requested", "parse_request"]


def _flatten(data: Sequence[Any]) -> list[Any]:
    """V2 JSON data may be nested (row-major) or flat: flat, either way."""
    if not any(isinstance(v, list) for v in data):
        return list(data)
    out: list[Any] = []
    for value in data:
        if isinstance(value, list):
            out.extend(_flatten(value))
        else:
            out.append(value)
    return out


def _cast(feature: Feature, value: Any) -> Any:
    """A tensor element as the JSON value the record model expects for this feature.

    Tensors carry types the JSON API would refuse (an ``INT64`` 1 for a boolean, a ``BYTES``
    "30" for an integer in a row-major tensor of mixed types): what converts without loss
    is converted; anything else is left as it came, and validation names the field.
    """
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    kind = feature.type
    if value is None or kind == "category":
        return value
    if kind == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if type(value) is int and value in (0, 1):
            return bool(value)
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, bool):
        return value
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "number" and type(value) is int:
        return float(value)
    if kind == "number" and isinstance(value, float) and not math.isfinite(value):
        return value  # refused by the record model, which names the field
    return value


_NUMPY = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
"""Little-endian element types of binary tensor data."""


def parse_request(body: bytes, header_length: int | None = None) -> InferenceRequest:
    """An inference request from its HTTP body: JSON, or JSON followed by binary tensor
    data (``Inference-Header-Content-Length`` gives the JSON's length), as Triton's
    clients send it by default.

    Raises:
        MalformedRequestError: not an inference request, or binary data that does not
            match the inputs that announce it.
    """
    if header_length is not None and not 0 < header_length <= len(body):
        raise MalformedRequestError(
            f"Inference-Header-Content-Length {header_length} is outside the body"
        )
    head = body if header_length is None else body[:header_length]
    try:
        request = InferenceRequest.model_validate(orjson.loads(head))
    except orjson.JSONDecodeError:
        raise MalformedRequestError("request body is not valid JSON") from None
    except ValidationError as exc:
        raise MalformedRequestError(
            "not an inference request: "
            + "; ".join(f"{i.field}: {i.reason}" for i in validation_issues(exc, ""))
        ) from None
    offset = len(head)
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(body):
            raise MalformedRequestError(
                f"input '{tensor.name}': binary_data_size {size} does not fit the body"
            )
        tensor.data = _binary(tensor, body[offset : offset + size])
        offset += size
    if offset != len(body):
        raise MalformedRequestError(f"{len(body) - offset} bytes of binary data are unclaimed")
    return request


def _binary(tensor: RequestInput, chunk: bytes) -> list[Any]:
    if tensor.datatype == "BYTES":  # each element: a 4-byte little-endian length, then bytes
        out: list[Any] = []
        at = 0
        while at < len(chunk):
            if at + 4 > len(chunk):
                raise MalformedRequestError(f"input '{tensor.name}': torn BYTES element")
            (length,) = struct.unpack_from("<I", chunk, at)
            out.append(chunk[at + 4 : at + 4 + length].decode("utf-8", errors="replace"))
            at += 4 + length
        return out
    dtype = np.dtype(_NUMPY[tensor.datatype])
    if len(chunk) % dtype.itemsize:
        raise MalformedRequestError(
            f"input '{tensor.name}': {len(chunk)} bytes are not whole {tensor.datatype} values"
        )
    values: list[Any] = np.frombuffer(chunk, dtype=dtype).tolist()
    return values


def _rows(tensor: RequestInput) -> int:
    if not tensor.shape:
        raise MalformedRequestError(f"input '{tensor.name}' has an empty shape")
    if tensor.data is None:
        raise MalformedRequestError(f"input '{tensor.name}' has no data")
    size = math.prod(tensor.shape)
    data = _flatten(tensor.data)
    if any(d < 0 for d in tensor.shape) or len(data) != size:
        raise MalformedRequestError(
            f"input '{tensor.name}': {len(data)} values do not fill shape {tensor.shape}"
        )
    tensor.data = data
    return tensor.shape[0]


def decode_records(spec: UseCase, request: InferenceRequest) -> list[dict[str, Any]]:
    """The records an inference request holds.

    Raises:
        MalformedRequestError: a tensor's data does not fill its shape, or the tensors
            disagree on the number of rows.
        InvalidFeaturesError: an input is not a feature of the use case.
    """
    features = {f.name: f for f in spec.features}
    inputs = request.inputs
    first = inputs[0]
    if len(inputs) == 1 and first.name not in features:
        # one row-major tensor, a column per feature in the spec's order
        n = _rows(first)
        width = len(spec.features)
        if len(first.shape) != 2 or first.shape[1] != width:
            raise MalformedRequestError(
                f"input '{first.name}' is not a feature: as a row-major tensor it needs shape "
                f"[n, {width}] (features in this order: {', '.join(spec.feature_names)}), "
                f"not {first.shape}"
            )
        data = first.data or []
        order = spec.features
        return [
            {f.name: _cast(f, data[row * width + j]) for j, f in enumerate(order)}
            for row in range(n)
        ]
    unknown = [t.name for t in inputs if t.name not in features]
    if unknown:
        raise InvalidFeaturesError(
            "unknown inputs",
            [FieldIssue(name, f"not a feature of '{spec.name}'") for name in unknown],
        )
    rows = {t.name: _rows(t) for t in inputs}
    if len(set(rows.values())) > 1:
        raise MalformedRequestError(
            "inputs have different numbers of rows: "
            + ", ".join(f"{k}={v}" for k, v in rows.items())
        )
    n = rows[first.name]
    for tensor in inputs:
        if math.prod(tensor.shape[1:]) != 1:
            raise MalformedRequestError(
                f"input '{tensor.name}' must hold one value per row (shape [n] or [n, 1]), "
                f"not {tensor.shape}"
            )
    columns = [(features[t.name], t.data or []) for t in inputs]
    return [{f.name: _cast(f, data[row]) for f, data in columns} for row in range(n)]


def explain_requested(request: InferenceRequest) -> bool:
    """Whether an inference request asks for explanations: ``parameters.explain`` is
    true, or the ``explanation`` output is named.

    Raises:
        InvalidFeaturesError: ``parameters.explain`` is not a boolean.
    """
    flag = (request.parameters or {}).get("explain", False)
    if not isinstance(flag, bool):
        raise InvalidFeaturesError(
            "invalid parameters", [FieldIssue("parameters.explain", "must be true or false")]
        )
    return flag or any(o.name == EXPLANATION for o in request.outputs or [])


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request: InferenceRequest,
    labels: Sequence[str],
    probabilities: Sequence[Sequence[float]],
    classes: Sequence[str],
    prediction_ids: Sequence[str],
    explanations: Sequence[dict[str, Any]] | None = None,
) -> InferenceResponse:
    """The inference response: the requested outputs (every one when none are named).

    Args:
        explanations: Per row, its explanation (``Explanation.as_dict()``), sent as the
            ``explanation`` output, whatever ``outputs`` names: a BYTES tensor of shape
            ``[n]``, one JSON text per row.

    Raises:
        InvalidFeaturesError: an output asked for is not one of ``label``,
            ``probabilities`` (and ``explanation`` when explained).
    """
    known = [*OUTPUTS, EXPLANATION] if explanations is not None else list(OUTPUTS)
    wanted = [o.name for o in request.outputs] if request.outputs else known
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise InvalidFeaturesError(
            "unknown outputs",
            [FieldIssue(name, f"outputs are {', '.join(known)}") for name in unknown],
        )
    if explanations is not None and EXPLANATION not in wanted:
        wanted.append(EXPLANATION)  # what is explained is recorded, so it is returned
    n = len(labels)
    outputs = []
    for name in wanted:
        if name == EXPLANATION:
            assert explanations is not None
            data = [orjson.dumps(e).decode() for e in explanations]
            outputs.append(
                ResponseOutput(
                    name=EXPLANATION,
                    shape=[n],
                    datatype="BYTES",
                    parameters={"content_type": "application/json"},
                    data=data,
                )
            )
        elif name == LABEL:
            outputs.append(
                ResponseOutput(name=LABEL, shape=[n], datatype="BYTES", data=list(labels))
            )
        else:
            flat = [p for row in probabilities for p in row]
            outputs.append(
                ResponseOutput(
                    name=PROBABILITIES,
                    shape=[n, len(classes)],
                    datatype="FP64",
                    parameters={"classes": list(classes)},
                    data=flat,
                )
            )
    return InferenceResponse(
        model_name=model_name,
        model_version=model_version,
        id=request.id,
        parameters={"prediction_ids": list(prediction_ids)},
        outputs=outputs,
    )
