"""Domain errors. The API maps each to a status code in ``tabops.api.errors``."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

__all__ = [
    "FieldIssue",
    "TabopsError",
    "SpecError",
    "UseCaseNotFoundError",
    "DataNotFoundError",
    "DataValidationError",
    "InvalidFeaturesError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "TrainingError",
    "TableNotEmptyError",
    "EntityNotFoundError",
    "PredictionNotFoundError",
    "InvalidRequestError",
    "ExplanationNotSupportedError",
]


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field: where it is and why it is wrong."""

    field: str
    reason: str
    row: int | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"field": self.field, "reason": self.reason}
        if self.row is not None:
            out["row"] = self.row
        return out


class TabopsError(Exception):
    """Base of every error tabops raises on purpose."""

    code = "tabops_error"

    def __init__(self, message: str, details: list[FieldIssue] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        if not self.details:
            return self.message
        shown = "; ".join(
            (f"row {d.row}: " if d.row is not None else "") + f"{d.field}: {d.reason}"
            for d in self.details[:5]
        )
        more = f" (and {len(self.details) - 5} more)" if len(self.details) > 5 else ""
        return f"{self.message}: {shown}{more}"


class SpecError(TabopsError):
    """A use-case spec is missing, unreadable or invalid."""

    code = "invalid_spec"


class UseCaseNotFoundError(TabopsError):
    """No use case of that name exists."""

    code = "usecase_not_found"


class DataNotFoundError(TabopsError):
    """A use case's data file is not where the spec and settings say."""

    code = "data_not_found"


class DataValidationError(TabopsError):
    """Rows of a data file do not satisfy the use case's spec."""

    code = "invalid_data"


class InvalidFeaturesError(TabopsError):
    """A prediction request's features do not satisfy the spec."""

    code = "invalid_features"


class ModelNotFoundError(TabopsError):
    """The registry holds no such model or version."""

    code = "model_not_found"


class ModelNotReadyError(TabopsError):
    """The use case has no loaded champion model to score with."""

    code = "model_not_ready"


class TrainingError(TabopsError):
    """Training could not run (for example, no or too little data)."""

    code = "training_failed"


class TableNotEmptyError(TabopsError):
    """Seeding was asked for a training table that already holds rows."""

    code = "table_not_empty"


class EntityNotFoundError(TabopsError):
    """No row of the use case's table has that entity id."""

    code = "entity_not_found"


class PredictionNotFoundError(TabopsError):
    """No recorded prediction has that id."""

    code = "prediction_not_found"


class InvalidRequestError(TabopsError):
    """A request's parameters are invalid (other than prediction features)."""

    code = "invalid_request"


class ExplanationNotSupportedError(InvalidRequestError):
    """Explanations were asked of a model family that has no exact method, or of a use
    case whose spec turns them off."""

    code = "explanation_not_supported"


class MalformedRequestError(TabopsError):
    """The request body is not valid JSON, or not a JSON object."""

    code = "malformed_request"


class JsonLimitError(InvalidFeaturesError):
    """A JSON body is nested too deeply or holds a number too long to read (422)."""

    code = "json_limit"


class EmptyBatchError(InvalidFeaturesError):
    """A batch request holds no records."""

    code = "empty_batch"


class BatchTooLargeError(TabopsError):
    """A batch request holds more records than the configured maximum."""

    code = "batch_too_large"


class SanityCheckError(TabopsError):
    """A model version failed the checks it must pass before it may serve."""

    code = "sanity_check_failed"


class ModelIntegrityError(TabopsError):
    """A model artifact does not match the hash recorded when it was registered."""

    code = "model_integrity"


class CompileError(TabopsError):
    """A fitted pipeline holds a step the compiled scorer cannot reproduce."""

    code = "compile_error"


def validation_issues(exc: ValidationError, prefix: str) -> list[FieldIssue]:
    """One :class:`FieldIssue` per pydantic error, in the words the API uses; ``prefix``
    names the record (``records[3]``) in a batch."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        field_name = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "(body)")
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        elif err["type"] == "missing":
            reason = "field required"
        elif err["type"] == "finite_number":
            reason = "must be a finite number (NaN and infinity are refused)"
        out.append(FieldIssue(field_name, reason))
    return out


class NotAuthenticatedError(TabopsError):
    """No API key, or one that is not valid."""

    code = "unauthorized"


class AuthUnavailableError(TabopsError):
    """A key could not be checked: the key table is unreachable and the key is not known
    from before the outage (503)."""

    code = "auth_unavailable"


class PermissionDeniedError(TabopsError):
    """The API key's role may not do this."""

    code = "forbidden"


class InvalidHeaderError(TabopsError):
    """A request header is malformed or too long."""

    code = "invalid_header"


class BodyTooLargeError(TabopsError):
    """A request body is larger than the configured limit (413)."""

    code = "body_too_large"


class JobConflictError(TabopsError):
    """A training job of this use case is already queued or running."""

    code = "job_conflict"

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message, [FieldIssue("job_id", job_id)])
        self.job_id = job_id


class JobNotFoundError(TabopsError):
    """No training job has that id."""

    code = "job_not_found"


class AuditRecordRejectedError(TabopsError):
    """A prediction could not be recorded because the audit store cannot hold its record."""

    code = "audit_record_rejected"


class AuditUnavailableError(TabopsError):
    """Neither the database nor the spool could record a prediction."""

    code = "audit_unavailable"


class KeyExistsError(TabopsError):
    """An API key with that name exists already."""

    code = "key_exists"
