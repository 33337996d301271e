"""The Open Inference Protocol (V2, KServe/Triton/MLServer) types, and a use case's model
metadata in its terms. No HTTP here: the routes in ``api/routes/v2.py`` carry these over
REST, :mod:`tabops.serving.tensors` turns tensors into records and back, the data plane
scores them.

Inputs come as JSON, or as JSON followed by binary tensor data (Triton's clients' default),
either as one named tensor per feature (columnar, as MLServer's pandas codec
sends them: ``BYTES`` for categories, ``FP64``/``INT64``/``BOOL`` for the rest), or as a
single row-major tensor of shape ``[n, n_features]`` in the spec's feature order. Outputs
are ``label`` (``BYTES``, ``[n]``) and ``probabilities`` (``FP64``, ``[n, k]``, columns in
the class order given in the model metadata); the response's ``parameters`` carry the
``prediction_ids``, for feedback and the audit trail.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tabops.spec.schema import UseCase

__all__ = [
    "InferenceRequest",
    "InferenceResponse",
    "MetadataModelResponse",
    "MetadataServerResponse",
    "MetadataTensor",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "model_metadata",
]

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]

LABEL, PROBABILITIES = "label", "probabilities"
OUTPUTS = (LABEL, PROBABILITIES)
EXPLANATION = "explanation"
"""The output of explained rows: one BYTES element per row, the explanation as JSON."""
_DATATYPE: dict[str, Datatype] = {
    "category": "BYTES",
    "boolean": "BOOL",
    "integer": "INT64",
    "number": "FP64",
}
"""The tensor type of each feature type (as MLServer's pandas codec would send it)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class RequestInput(_Model):
    """One input tensor."""

    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None
    """The values, flat or nested row-major; absent when they follow the JSON as binary
    (``parameters.binary_data_size``, the binary tensor data extension)."""


class RequestOutput(_Model):
    """An output the caller asks for."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Model):
    """``POST /v2/models/{name}[/versions/{v}]/infer``."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Model):
    """One output tensor."""

    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceResponse(_Model):
    """The answer to an inference request."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(_Model):
    """Name, type and shape of a model input or output (``-1``: any size)."""

    name: str
    datatype: Datatype
    shape: list[int]
    parameters: dict[str, Any] | None = None


class MetadataModelResponse(_Model):
    """``GET /v2/models/{name}[/versions/{v}]``."""

    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[MetadataTensor] | None = None
    outputs: list[MetadataTensor] | None = None
    parameters: dict[str, Any] | None = None


class MetadataServerResponse(_Model):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


def model_metadata(spec: UseCase, version: str, threshold: float | None) -> MetadataModelResponse:
    """What a use case's model takes and gives, in the protocol's terms."""
    classes = list(spec.target.classes)
    return MetadataModelResponse(
        name=spec.name,
        versions=[version],
        platform="tabops",
        inputs=[
            MetadataTensor(
                name=f.name,
                datatype=_DATATYPE[f.type],
                shape=[-1],
                parameters={"required": f.required},
            )
            for f in spec.features
        ],
        outputs=[
            MetadataTensor(name=LABEL, datatype="BYTES", shape=[-1]),
            MetadataTensor(
                name=PROBABILITIES,
                datatype="FP64",
                shape=[-1, len(classes)],
                parameters={"classes": classes},
            ),
        ],
        parameters={
            "classes": classes,
            "positive": spec.target.positive,
            "threshold": threshold,
            "feature_order": spec.feature_names,
        },
    )
