"""Response models of the routes that are not derived from a use case's spec."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from tabops.serving.requests import FeedbackItem
from tabops.spec.schema import FamilyName

__all__ = [
    "AuditedPrediction",
    "ErrorResponse",
    "FeedbackItem",
    "FeedbackReceipt",
    "JobView",
    "ModelOverride",
    "ModelVersionView",
    "PromotionResult",
    "TrainRequest",
    "PredictionPage",
    "RecordedPrediction",
    "ShadowComparison",
    "Health",
    "ModelHealth",
    "RecentLatencySummary",
    "Readiness",
    "UseCaseDetail",
    "UseCaseSummary",
]


class RecentLatencySummary(BaseModel):
    window_s: float = Field(description="How far back the figures look")
    requests: int = Field(description="Prediction requests this process answered in the window")
    p50_ms: float | None = Field(description="Median latency (None without requests)")
    p95_ms: float | None = Field(description="95th percentile latency (None without requests)")


class ModelHealth(BaseModel):
    status: str = Field(description="serving, untrained or failed")
    version: str | None = Field(description="The champion version this process serves")


class Health(BaseModel):
    """Liveness, and what a person checking on the process wants to see at a glance. Every
    figure is this process's own (one worker of a replica), read from memory."""

    status: Literal["ok"] = "ok"
    version: str = Field(description="The tabops version")
    uptime_s: float = Field(description="Seconds since this process started serving")
    started_at: str | None = Field(description="When this process started serving (UTC)")
    models: dict[str, ModelHealth] = Field(description="Each use case and its loaded version")
    latency: RecentLatencySummary


class Readiness(BaseModel):
    status: Literal["ready", "not ready", "draining"]
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
    scoring_reason: str | None = Field(
        description="Why this scoring path: the fast path's parity check, or why it fell back"
    )
    error: str | None
    threshold: float | None
    loaded_at: datetime | None
    cv_metrics: dict[str, float]
    example: dict[str, Any] | None = Field(description="A real record from the training data")
    spec: dict[str, Any]
    explainable: bool = Field(
        default=False, description="Predictions can be explained (`explain=true`)"
    )
    explanation_reason: str | None = Field(
        default=None, description="The explanation method, or why there is none"
    )


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


class FeedbackReceipt(BaseModel):
    recorded: int


class FeedbackEntry(BaseModel):
    actual: str
    created_at: datetime
    source: str | None


class AuditedPrediction(BaseModel):
    prediction_id: str
    created_at: datetime
    model_version: str
    label: str
    probabilities: dict[str, float]
    score: float
    threshold: float | None
    features: dict[str, Any] = Field(description="Inputs as recorded (personal data pseudonymised)")
    entity_id: str | None = Field(description="Pseudonymised entity id (predict by id)")
    shadow: bool
    explanation: dict[str, Any] | None = Field(
        default=None,
        description="The explanation returned with the prediction (null: none was asked)",
    )
    latency_ms: float
    request_id: str
    actual: str | None = Field(description="Latest feedback, if any")


class PredictionPage(BaseModel):
    items: list[AuditedPrediction]
    next: str | None = Field(description="Cursor of the next page (pass as `after`)")


class RecordedPrediction(AuditedPrediction):
    request: dict[str, Any]
    feedback: list[FeedbackEntry]


class ModelOverride(BaseModel):
    """Train with another model family or hyperparameters than the spec's."""

    model_config = {"extra": "forbid"}

    family: FamilyName | None = None
    params: dict[str, Any] = {}


class TrainRequest(BaseModel):
    model_config = {"extra": "forbid"}

    model: ModelOverride | None = None
    force: bool = Field(default=False, description="Promote even if the gate says no")


class JobView(BaseModel):
    """A training job: its state, progress and outcome."""

    id: str
    usecase: str
    state: Literal["queued", "running", "succeeded", "failed"]
    stage: str | None
    progress: float = Field(description="0 to 1")
    percent: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    requested_by: str | None
    trigger: str
    params: dict[str, Any] | None
    force: bool
    run_id: str | None
    version: str | None = Field(description="The version the job registered")
    promoted: bool | None
    reason: str | None = Field(description="Why it was promoted, or why not")
    metrics: dict[str, float] | None = Field(description="Hold-out metrics of the new version")
    champion_version: str | None = Field(description="The champion it was compared with")
    champion_metrics: dict[str, float] | None
    n_rows: int | None = Field(description="Training rows used")
    data_sha256: str | None = Field(description="Hash of the training rows used")
    error: str | None


class ModelVersionView(BaseModel):
    version: str
    created_at: datetime
    aliases: list[str]
    metrics: dict[str, float] = Field(description="Hold-out metrics")
    cv_metrics: dict[str, float]
    params: dict[str, str]
    run_id: str
    run_url: str | None = Field(description="The run in the MLflow UI, when tracking is a server")
    sha256: str | None
    n_rows: int | None
    gate: str | None = Field(description="The promotion decision recorded at training")


class PromotionResult(BaseModel):
    usecase: str
    version: str
    previous: str | None
    serving: str | None = Field(description="The version this replica serves now")


class ShadowComparison(BaseModel):
    """Champion and challenger on the same live requests."""

    usecase: str
    pairs: int = Field(description="Requests scored by both (most recent first, up to window)")
    champion_versions: list[str]
    challenger_versions: list[str]
    agreement: float | None = Field(description="Share of identical labels")
    mean_abs_score_diff: float | None
    max_abs_score_diff: float | None
    labelled: int = Field(description="Pairs with feedback")
    champion_accuracy: float | None
    challenger_accuracy: float | None
