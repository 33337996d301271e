"""What a serving process holds: per use case, the loaded champion (and a shadow challenger),
its scorer and the request models derived from the spec it was trained with; hot swaps by
following the registry's aliases. No HTTP here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from tabops.errors import (
    BatchTooLargeError,
    EmptyBatchError,
    FieldIssue,
    InvalidFeaturesError,
    MalformedRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    UseCaseNotFoundError,
    validation_issues,
)
from tabops.lifecycle.gate import check_version
from tabops.lifecycle.registry import CHALLENGER, CHAMPION, Registry
from tabops.lifecycle.versions import LoadedModel
from tabops.scoring.base import PipelineScorer, Scorer
from tabops.scoring.columnar import ColumnChecker
from tabops.scoring.explain import Explainer, load_explainer
from tabops.scoring.parity import compile_scorer
from tabops.spec.derive import (
    Prediction,
    PredictionBatch,
    batch_model,
    prediction_model,
    record_model,
)
from tabops.spec.files import list_usecases, load_usecase
from tabops.spec.schema import UseCase

log = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """A champion ready to answer: loaded model, scorer, derived request models."""

    loaded: LoadedModel
    scorer: Scorer
    record_model: type[BaseModel]
    prediction_model: type[Prediction]
    batch_model: type[PredictionBatch]
    example: dict[str, Any]
    checker: ColumnChecker
    scorer_reason: str = ""
    """Why this scoring path: parity figures of the compiled path, or why it fell back."""
    explainer: Explainer | None = None
    """Explains its predictions (None: the family has no exact method, or the spec says
    ``explain: never``)."""
    explainer_reason: str = ""
    """The explanation method and its additivity error, or why there is none."""

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, compiled: bool = True) -> ServedModel:
        """Prepare a loaded version for serving: compile its fast path (kept only if it
        matches the pipeline on the reference sample; not tried if ``compiled`` is False)
        and derive its request models."""
        example = loaded.example()
        scorer: Scorer
        if compiled:
            scorer, reason = compile_scorer(
                loaded.spec, loaded.pipeline, loaded.decision, loaded.version, loaded.reference
            )
        else:
            scorer = PipelineScorer(loaded.spec, loaded.pipeline, loaded.decision, loaded.version)
            reason = "pipeline: the compiled path is switched off (TABOPS_API__COMPILED=false)"
        log.info("use case %s v%s: %s", loaded.spec.name, loaded.version, reason)
        if loaded.spec.explain == "never":  # never asked for: not worth its check at load
            explainer, why = None, "no explanations: the spec says explain: never"
        else:
            explainer, why = load_explainer(loaded)
        log.info("use case %s v%s: %s", loaded.spec.name, loaded.version, why)
        prediction = prediction_model(loaded.spec)
        return cls(
            loaded=loaded,
            scorer=scorer,
            record_model=record_model(loaded.spec, example),
            prediction_model=prediction,
            batch_model=batch_model(prediction),
            example=example,
            checker=ColumnChecker(loaded.spec),
            scorer_reason=reason,
            explainer=explainer,
            explainer_reason=why,
        )

    @property
    def spec(self) -> UseCase:
        return self.loaded.spec

    @property
    def version(self) -> str:
        return self.loaded.version

    def parse_records(self, payload: Any, max_batch: int) -> tuple[list[dict[str, Any]], bool]:
        """Validate a request payload: one record, or ``{"records": [...]}``.

        Returns:
            The records as dicts (None for missing optional values), and whether the
            request was a batch.

        Raises:
            MalformedRequestError: the payload is not a JSON object.
            EmptyBatchError, BatchTooLargeError: the batch size is out of range.
            InvalidFeaturesError: with one detail per bad field.
        """
        if not isinstance(payload, dict):
            raise MalformedRequestError(
                'request body must be a JSON object: one record, or {"records": [...]}'
            )
        if "records" in payload:
            if set(payload) != {"records"}:
                extra = sorted(set(payload) - {"records"})
                raise InvalidFeaturesError(
                    "invalid batch request", [FieldIssue(k, "unknown field") for k in extra]
                )
            records = payload["records"]
            if not isinstance(records, list):
                raise InvalidFeaturesError(
                    "invalid batch request", [FieldIssue("records", "must be a list of records")]
                )
            if not records:
                raise EmptyBatchError(
                    "empty batch", [FieldIssue("records", "must hold at least one record")]
                )
            if len(records) > max_batch:
                raise BatchTooLargeError(
                    f"batch of {len(records)} records is over the limit of {max_batch}",
                    [FieldIssue("records", f"at most {max_batch} records per request")],
                )
            checked = self.checker.check(records)
            if checked is not None:
                return checked, True
            return [self._validate(r, f"records[{i}]") for i, r in enumerate(records)], True
        checked = self.checker.check([payload])
        return checked if checked is not None else [self._validate(payload, "")], False

    def _validate(self, record: Any, prefix: str) -> dict[str, Any]:
        try:
            return self.record_model.model_validate(record).model_dump()
        except ValidationError as exc:
            raise InvalidFeaturesError(
                f"invalid record for '{self.spec.name}'", validation_issues(exc, prefix)
            ) from None


@dataclass
class UseCaseState:
    """The serving state of one use case."""

    name: str
    spec: UseCase
    status: Literal["serving", "untrained", "failed"]
    served: ServedModel | None = None
    error: str | None = None
    refused_version: str | None = None
    """A champion version that failed to load or verify; not retried until the alias moves."""
    challenger: ServedModel | None = None
    """The version under the ``challenger`` alias, scoring live requests in the shadow."""
    refused_challenger: str | None = None
    swapping: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)
    """Held from reading an alias to swapping its version in, by the poller and by a
    promotion alike, so that a poll that read the alias before a promotion moved it can
    never swap the older version back in over the promoted one."""


@dataclass
class ModelSet:
    """Every use case a process serves, by name."""

    states: dict[str, UseCaseState] = field(default_factory=dict)
    default: str | None = None
    compiled: bool = True
    """Try the compiled fast path of each model (``TABOPS_API__COMPILED``)."""

    @classmethod
    def load(
        cls,
        registry: Registry,
        usecases_dir: Any,
        names: list[str],
        default: str,
        compiled: bool = True,
    ) -> ModelSet:
        """Load the champion of each use case (all of ``usecases_dir`` when ``names`` is empty).

        A use case with no registered champion is 'untrained'; one whose champion fails to
        load or verify is 'failed'. Neither stops the others from serving.
        """
        states: dict[str, UseCaseState] = {}
        for name in names or list_usecases(usecases_dir):
            spec = load_usecase(usecases_dir, name)
            try:
                loaded = registry.load(name)
            except ModelNotFoundError:
                states[name] = UseCaseState(name, spec, "untrained")
                log.warning(
                    "use case %s has no champion; train it with `tabops train %s`", name, name
                )
                continue
            except Exception as exc:  # a broken artifact must not stop the other use cases
                log.exception("use case %s: loading the champion failed", name)
                states[name] = UseCaseState(name, spec, "failed", error=str(exc))
                continue
            states[name] = UseCaseState(
                name, loaded.spec, "serving", ServedModel.from_loaded(loaded, compiled)
            )
            log.info("use case %s: serving version %s", name, loaded.version)
        chosen = default or next(iter(sorted(states)), None)
        if default and default not in states:
            raise UseCaseNotFoundError(
                f"default use case '{default}' is not among {sorted(states)}"
            )
        return cls(states=states, default=chosen, compiled=compiled)

    def state(self, name: str) -> UseCaseState:
        """The state of a use case.

        Raises:
            UseCaseNotFoundError: not served by this process.
        """
        try:
            return self.states[name]
        except KeyError:
            known = ", ".join(sorted(self.states)) or "none"
            raise UseCaseNotFoundError(f"unknown use case '{name}' (served: {known})") from None

    def served(self, name: str) -> ServedModel:
        """The model answering for a use case.

        Raises:
            UseCaseNotFoundError: not served by this process.
            ModelNotReadyError: no champion loaded.
        """
        state = self.state(name)
        if state.served is None:
            why = state.error or f"no champion; train it with `tabops train {name}`"
            raise ModelNotReadyError(f"use case '{name}' has no model to answer with: {why}")
        return state.served

    async def refresh(self, registry: Registry, names: list[str] | None = None) -> list[str]:
        """Follow moved ``champion`` aliases: load, verify and compile each new version in
        the background, then swap a single reference. Requests already running keep the
        version they started with; a version that fails is refused and the old one serves.

        Returns:
            The use cases that now serve a new version.
        """
        swapped = []
        for name in names or sorted(self.states):
            state = self.states[name]
            async with state.swapping:
                if await self._follow_champion(registry, state):
                    swapped.append(name)
                await self._follow_challenger(registry, state)
        return swapped

    async def _follow_champion(self, registry: Registry, state: UseCaseState) -> bool:
        """Serve the version under the ``champion`` alias if it moved (under the state's
        lock); True when a new version now serves."""
        name = state.name
        try:
            champion = await asyncio.to_thread(registry.champion, name)
        except Exception as exc:  # registry unreachable: keep serving what we have
            log.warning("use case %s: cannot reach the registry: %s", name, exc)
            return False
        if champion is None or champion.version == state.refused_version:
            return False
        if state.served is not None and state.served.version == champion.version:
            return False
        try:
            loaded = await asyncio.to_thread(registry.load, name, champion.version)
            await asyncio.to_thread(check_version, loaded)
            served = await asyncio.to_thread(ServedModel.from_loaded, loaded, self.compiled)
        except Exception as exc:
            state.refused_version = champion.version
            state.error = f"version {champion.version} refused: {exc}"
            log.error("use case %s: %s", name, state.error)
            return False
        previous = state.served.version if state.served is not None else None
        state.spec, state.served, state.status = loaded.spec, served, "serving"
        state.error = state.refused_version = None
        log.info("use case %s: now serving version %s (was %s)", name, served.version, previous)
        return True

    async def install(self, name: str, loaded: LoadedModel, alias: str = CHAMPION) -> ServedModel:
        """Serve a version that was just loaded and checked (a promotion or a rollback):
        compile it and swap it in under ``alias``, without loading it a second time.

        Raises:
            UseCaseNotFoundError: not served by this process.
        """
        state = self.state(name)
        async with state.swapping:  # after a poll that read the alias before it moved
            served = await asyncio.to_thread(ServedModel.from_loaded, loaded, self.compiled)
            if alias == CHALLENGER:
                state.challenger, state.refused_challenger = served, None
            else:
                state.spec, state.served, state.status = loaded.spec, served, "serving"
                state.error = state.refused_version = None
        log.info("use case %s: version %s installed as %s", name, loaded.version, alias)
        return served

    async def _follow_challenger(self, registry: Registry, state: UseCaseState) -> None:
        try:
            alias = await asyncio.to_thread(registry.alias, state.name, CHALLENGER)
        except Exception as exc:
            log.warning("use case %s: cannot reach the registry: %s", state.name, exc)
            return
        if alias is None:
            state.challenger = state.refused_challenger = None
            return
        current = state.challenger.version if state.challenger is not None else None
        if alias.version in (current, state.refused_challenger):
            return
        try:
            loaded = await asyncio.to_thread(registry.load, state.name, alias.version)
            await asyncio.to_thread(check_version, loaded)
            state.challenger = await asyncio.to_thread(
                ServedModel.from_loaded, loaded, self.compiled
            )
            state.refused_challenger = None
            log.info(
                "use case %s: challenger version %s scores in the shadow", state.name, alias.version
            )
        except Exception as exc:
            state.challenger, state.refused_challenger = None, alias.version
            log.error(
                "use case %s: challenger version %s refused: %s", state.name, alias.version, exc
            )

    async def follow(self, registry: Registry, interval_s: float) -> None:
        """Poll the registry forever (a background task): replicas converge on the alias
        without talking to each other."""
        while True:
            await asyncio.sleep(interval_s)
            await self.refresh(registry)

    def challenger(self, name: str) -> ServedModel | None:
        """The challenger scoring a use case's requests in the shadow, if any."""
        state = self.states.get(name)
        return state.challenger if state is not None else None

    def ready(self) -> bool:
        """True when no use case failed to load (untrained ones have nothing to load)."""
        return all(s.status != "failed" for s in self.states.values())

    def versions(self) -> Mapping[str, str | None]:
        return {n: (s.served.version if s.served else None) for n, s in self.states.items()}
