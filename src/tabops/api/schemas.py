"""Response models of the routes that are not derived from a use case's spec."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "ErrorResponse",
    "Health",
    "Readiness",
    "UseCaseDetail",
    "UseCaseSummary",
]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: Literal["ok", "unreachable"]
    usecases: dict[str, str] = Field(
        description="Status of each use case: serving, untrained or failed"
    )


class UseCaseSummary(BaseModel):
    name: str
    title: str
    task: str
    status: str
    champion_version: str | None
    scoring_path: str | None = Field(
        description="Which implementation scores: pipeline, or a fast path"
    )
    metrics: dict[str, float] = Field(description="Hold-out metrics of the champion")


class UseCaseDetail(UseCaseSummary):
    description: str
    error: str | None
    threshold: float | None
    loaded_at: datetime | None
    cv_metrics: dict[str, float]
    example: dict[str, Any] | None = Field(description="A real record from the training data")
    spec: dict[str, Any]


class ErrorDetail(BaseModel):
    field: str
    reason: str
    row: int | None = None


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_features")
    message: str
    details: list[ErrorDetail] = []


class ErrorResponse(BaseModel):
    """Every error: status code, a code, a message and the fields at fault."""

    error: ErrorInfo
