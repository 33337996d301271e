"""Feedback: the ground truth of recorded predictions, sent when it becomes known.
Transport only: the data plane validates and records it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tabops.api.deps import CallerDep, DataPlaneDep
from tabops.api.schemas import FeedbackReceipt

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
    name: str, request: Request, dataplane: DataPlaneDep, caller: CallerDep
) -> JSONResponse:
    """Record the actual outcome of one prediction, or of a list of them (all or nothing).

    Feedback sent twice for the same prediction is kept twice; the later one counts."""
    count = await dataplane.feedback(name, await request.body(), caller)
    return JSONResponse(FeedbackReceipt(recorded=count).model_dump(), status_code=201)
