"""Models derived from a spec: the request record model and the prediction response."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
)

from tabops.spec.features import kind_of
from tabops.spec.schema import Feature, UseCase


def _class_name(spec: UseCase) -> str:
    return "".join(part.capitalize() for part in spec.name.split("_"))


def _feature_annotation(feature: Feature) -> tuple[Any, Any]:
    kwargs: dict[str, Any] = {}
    desc = feature.description
    if feature.unit:
        desc = f"{desc} ({feature.unit})" if desc else feature.unit
    if desc:
        kwargs["description"] = desc
    ann, constraints = kind_of(feature).annotation(feature)
    kwargs.update(constraints)
    if feature.required:
        return ann, Field(..., **kwargs)
    return ann | None, Field(None, **kwargs)


def record_model(spec: UseCase, example: dict[str, Any] | None = None) -> type[BaseModel]:
    """The pydantic model of one input record: fields, types, bounds and allowed values.

    Unknown fields, values of the wrong JSON type, NaN and infinity are refused.

    Args:
        spec: The use case.
        example: A record shown in the OpenAPI docs, normally taken from the data.
    """
    fields = {f.name: _feature_annotation(f) for f in spec.features}
    extra: dict[str, Any] = {"examples": [example]} if example else {}
    config = ConfigDict(
        extra="forbid",
        strict=True,
        title=f"{_class_name(spec)}Record",
        json_schema_extra=extra,
    )
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{_class_name(spec)}Record",
        __config__=config,
        __doc__=f"One {spec.title} case to score.",
        **fields,
    )
    return model


class PredictionExplanation(BaseModel):
    """Why a prediction came out as it did: ``value = base_value + sum(contributions)``,
    the model's raw output for ``class`` on ``scale`` (see docs/explanations.md)."""

    model_config = ConfigDict(populate_by_name=True)

    method: Literal["linear", "tree_shap"] = Field(
        description="Exact linear terms, or TreeSHAP for tree models"
    )
    scale: Literal["log_odds", "class_logit", "probability"] = Field(
        description="What base_value, value and the contributions are in"
    )
    output_class: str = Field(alias="class", description="The class whose output is explained")
    base_value: float = Field(description="The output for an average input")
    value: float = Field(description="The model's raw output: base_value + sum(contributions)")
    contributions: dict[str, float] = Field(
        description="Each feature's contribution, in spec order (one-hot and missing-value "
        "columns folded into their feature)"
    )
    reasons: list[str] = Field(description="The largest contributions in plain words")


class Prediction(BaseModel):
    """The model's answer for one record: the one definition of a prediction in a
    response. Each use case narrows it (:func:`prediction_model`) for its docs."""

    prediction_id: str = Field(description="Id of this prediction, for feedback and audit")
    label: str = Field(description="Predicted class")
    probabilities: dict[str, float] = Field(description="Probability of each class")
    threshold: float | None = Field(
        description="Probability of the positive class from which it is predicted"
    )
    model_version: str = Field(description="Registered model version that answered")
    explanation: PredictionExplanation | None = Field(
        default=None,
        description="Present when explained: asked with `explain=true`, or the use case's "
        "spec says `explain: always`",
    )


class PredictionBatch(BaseModel):
    """The answer to a batch: one prediction per record, in order."""

    model_version: str = Field(description="Registered model version that answered")
    predictions: list[Prediction]


PREDICTION_FIELDS = tuple(k for k in Prediction.model_fields if k != "explanation")
"""The keys of every prediction in a response, in order (an explained one adds
``explanation`` last)."""


def prediction_model(spec: UseCase) -> type[Prediction]:
    """The prediction of one use case: :class:`Prediction` with its labels and classes."""
    labels: Any = Literal[tuple(spec.target.classes)]
    model: type[Prediction] = create_model(
        f"{_class_name(spec)}Prediction",
        __base__=Prediction,
        __doc__=f"The model's answer for one {spec.title} case.",
        label=(labels, Field(description=f"Predicted {spec.target.name}")),
        probabilities=(
            dict[str, float],
            Field(description=f"Probability of each class: {', '.join(spec.target.classes)}"),
        ),
    )
    return model


def batch_model(prediction: type[Prediction]) -> type[PredictionBatch]:
    """The batch answer of one use case, made of its :func:`prediction_model`."""
    model: type[PredictionBatch] = create_model(
        f"{prediction.__name__}Batch",
        __base__=PredictionBatch,
        __doc__=PredictionBatch.__doc__,
        predictions=(list[prediction], Field(description="One prediction per record, in order")),  # type: ignore[valid-type]
    )
    return model
