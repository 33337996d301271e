"""Feedback: the ground truth of recorded predictions, sent when it becomes known."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from tabops.api.deps import EngineDep, ModelsDep
from tabops.api.schemas import FeedbackItem, FeedbackReceipt
from tabops.errors import FieldIssue, InvalidFeaturesError
from tabops.serving.dataplane import parse_json
from tabops.store.queries import record_feedback

router = APIRouter(tags=["feedback"])


@router.post(
    "/usecases/{name}/feedback",
    status_code=201,
    response_model=FeedbackReceipt,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/FeedbackItem"},
                            {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/FeedbackItem"},
                            },
                        ]
                    }
                }
            },
        }
    },
)
async def send_feedback(
    name: str, request: Request, models: ModelsDep, engine: EngineDep
) -> JSONResponse:
    """Record the actual outcome of one prediction, or of a list of them (all or nothing).

    Feedback sent twice for the same prediction is kept twice; the later one counts."""
    spec = models.state(name).spec
    payload = parse_json(await request.body())
    raw = payload if isinstance(payload, list) else [payload]
    items: list[FeedbackItem] = []
    issues: list[FieldIssue] = []
    for i, entry in enumerate(raw):
        try:
            items.append(FeedbackItem.model_validate(entry))
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                issues.append(FieldIssue(f"[{i}].{loc}" if loc else f"[{i}]", err["msg"]))
    if issues or not items:
        raise InvalidFeaturesError(
            "invalid feedback", issues or [FieldIssue("(body)", "no feedback given")]
        )
    source = items[0].source or getattr(request.state, "caller", None)
    count = await run_in_threadpool(
        record_feedback, engine, spec, [(i.prediction_id, i.actual) for i in items], source
    )
    return JSONResponse(FeedbackReceipt(recorded=count).model_dump(), status_code=201)
