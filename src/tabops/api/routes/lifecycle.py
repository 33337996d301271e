"""The model lifecycle: training jobs, versions, promotion and rollback."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from tabops.api.deps import (
    CallerDep,
    EngineDep,
    JobsDep,
    ModelsDep,
    RegistryDep,
    SettingsDep,
    UseCaseDep,
)
from tabops.api.schemas import (
    JobView,
    ModelVersionView,
    PromotionResult,
    ShadowComparison,
    TrainRequest,
)
from tabops.errors import FieldIssue, InvalidRequestError, SpecError
from tabops.lifecycle.gate import promote_version
from tabops.lifecycle.registry import CHALLENGER
from tabops.lifecycle.versions import ModelVersionInfo
from tabops.store.jobs import get_job, list_jobs
from tabops.store.queries import compare_shadow
from tabops.training.card import card_markdown
from tabops.training.pipeline import build_pipeline

router = APIRouter(tags=["lifecycle"])


def _job(row: dict[str, Any]) -> JobView:
    return JobView(**row, percent=round(100 * (row.get("progress") or 0.0)))


@router.post("/usecases/{name}/train", status_code=202, response_model=JobView)
async def train(
    name: str, body: TrainRequest, state: UseCaseDep, jobs: JobsDep, caller: CallerDep
) -> JobView:
    """Start a training job and return at once (202). Follow it with `GET /jobs/{id}`.

    One job per use case at a time: a second request gets 409 with the running job's id.
    The new version becomes champion only if it passes the gate (or `force`)."""
    spec = state.spec
    model = body.model.model_dump(exclude_none=True) if body.model else None
    if model:
        # refuse bad hyperparameters now (422), not minutes later in the job
        update = {k: v for k, v in model.items() if k in ("family", "params")}
        try:
            build_pipeline(spec.model_copy(update={"model": spec.model.model_copy(update=update)}))
        except SpecError as exc:
            raise InvalidRequestError(
                exc.message, exc.details or [FieldIssue("model.params", exc.message)]
            ) from None
    job = await jobs.submit(name, model=model, force=body.force, requested_by=caller)
    return _job(job)


@router.get("/jobs/{job_id}", response_model=JobView)
async def job(job_id: str, engine: EngineDep) -> JobView:
    """A training job: state, stage and percentage, and its outcome."""
    return _job(await run_in_threadpool(get_job, engine, job_id))


@router.get("/jobs", response_model=list[JobView])
async def jobs_list(
    engine: EngineDep,
    usecase: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JobView]:
    """Training jobs, newest first."""
    return [_job(r) for r in await run_in_threadpool(list_jobs, engine, usecase, limit)]


def _version(
    info: ModelVersionInfo, tracking_uri: str, experiment_id: str | None
) -> ModelVersionView:
    run_url = None
    if tracking_uri.startswith(("http://", "https://")) and experiment_id:
        run_url = f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{info.run_id}"
    return ModelVersionView(
        version=info.version,
        created_at=info.created_at,
        aliases=info.aliases,
        metrics=info.holdout_metrics,
        cv_metrics=info.cv_metrics,
        params=info.params,
        run_id=info.run_id,
        run_url=run_url,
        sha256=info.sha256,
        n_rows=info.n_rows,
        gate=info.gate,
    )


@router.get("/usecases/{name}/models", response_model=list[ModelVersionView])
async def versions(
    name: str, _usecase: UseCaseDep, registry: RegistryDep, settings: SettingsDep
) -> list[ModelVersionView]:
    """Every registered version, newest first: metrics, params, dates, aliases, MLflow run."""
    found = await run_in_threadpool(registry.versions, name)
    experiment = await run_in_threadpool(registry.experiment_id, name) if found else None
    return [_version(v, settings.tracking_uri, experiment) for v in found]


@router.get(
    "/usecases/{name}/models/{version}/card",
    response_model=None,
    responses={200: {"content": {"text/markdown": {}}}},
)
async def card(
    name: str,
    version: str,
    models: ModelsDep,
    registry: RegistryDep,
    format: Annotated[
        Literal["json", "markdown"], Query(description="json (default) or markdown")
    ] = "json",
) -> dict[str, Any] | PlainTextResponse:
    """A version's model card: data, rows and class balance, metrics against the prior
    baseline, decision threshold and its policy, feature importances, the gate's decision
    and any leakage warnings. `?format=markdown` gives it as a markdown document."""
    models.state(name)
    found: dict[str, Any] = await run_in_threadpool(registry.card, name, version)
    if format == "markdown":
        return PlainTextResponse(card_markdown(found), media_type="text/markdown")
    return found


@router.post("/usecases/{name}/models/{version}/promote", response_model=PromotionResult)
async def promote(
    name: str,
    version: str,
    state: UseCaseDep,
    models: ModelsDep,
    registry: RegistryDep,
    alias: Annotated[
        Literal["champion", "challenger"],
        Query(description="champion (served) or challenger (scores in the shadow)"),
    ] = "champion",
) -> PromotionResult:
    """Make a version champion (manual promotion, or rollback to any earlier version), or
    challenger: then every live request is also scored by it, off the response path.

    The version is loaded, its hash verified and its reference sample scored first; this
    replica then serves it at once, and others within their polling interval."""
    loaded, previous = await run_in_threadpool(promote_version, registry, name, version, alias)
    current = await models.install(state.name, loaded, alias)
    return PromotionResult(
        usecase=name, version=version, previous=previous, serving=current.version
    )


@router.delete("/usecases/{name}/models/challenger", status_code=204)
async def drop_challenger(
    name: str, _usecase: UseCaseDep, models: ModelsDep, registry: RegistryDep
) -> None:
    """Stop shadow scoring: remove the challenger alias."""
    await run_in_threadpool(registry.delete_alias, name, CHALLENGER)
    await models.refresh(registry, [name])


@router.get("/usecases/{name}/models/compare", response_model=ShadowComparison)
async def compare(
    name: str,
    _usecase: UseCaseDep,
    engine: EngineDep,
    window: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> dict[str, Any]:
    """Champion against challenger on the same live requests: agreement, score differences
    and, where feedback exists, the live accuracy of both."""
    return await run_in_threadpool(compare_shadow, engine, name, window)
