"""Use cases: what is served, with which version and how good it is."""

from __future__ import annotations

from fastapi import APIRouter

from tabops.api.deps import ModelsDep, UseCaseDep
from tabops.api.schemas import UseCaseDetail, UseCaseSummary
from tabops.serving.models import UseCaseState

router = APIRouter(tags=["use cases"])


def _holdout(state: UseCaseState) -> dict[str, float]:
    if state.served is None:
        return {}
    return state.served.loaded.holdout_metrics


def _summary(state: UseCaseState) -> UseCaseSummary:
    return UseCaseSummary(
        name=state.name,
        title=state.spec.title,
        task=state.spec.task,
        status=state.status,
        champion_version=state.served.version if state.served else None,
        scoring_path=state.served.scorer.path if state.served else None,
        metrics=_holdout(state),
    )


@router.get("/usecases", response_model=list[UseCaseSummary])
async def list_usecases(models: ModelsDep) -> list[UseCaseSummary]:
    """Every use case this service knows, its champion version and hold-out metrics."""
    return [_summary(models.states[name]) for name in sorted(models.states)]


@router.get("/usecases/{name}", response_model=UseCaseDetail)
async def get_usecase(name: str, state: UseCaseDep) -> UseCaseDetail:
    """One use case: its spec, champion version and metrics, and an example record."""
    served = state.served
    return UseCaseDetail(
        **_summary(state).model_dump(),
        description=state.spec.description,
        scoring_reason=served.scorer_reason if served else None,
        error=state.error,
        threshold=served.loaded.decision.threshold if served else None,
        loaded_at=served.loaded.loaded_at if served else None,
        cv_metrics=served.loaded.cv_metrics if served else {},
        example=served.example if served else None,
        spec=state.spec.model_dump(mode="json"),
        explainable=served is not None and served.explainer is not None,
        explanation_reason=served.explainer_reason if served else None,
    )
