"""What a serving process holds: per use case, the loaded champion, its scorer and the
request models derived from the spec it was trained with. No HTTP here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from tabops.coalesce import Coalescer
from tabops.columnar import ColumnChecker
from tabops.compiled import compile_scorer
from tabops.errors import (
    FieldIssue,
    InvalidFeaturesError,
    ModelNotFoundError,
    ModelNotReadyError,
    TabopsError,
    UseCaseNotFoundError,
)
from tabops.lifecycle import check_version
from tabops.registry import CHALLENGER, LoadedModel, Registry
from tabops.scoring import PipelineScorer, Scorer, Scores
from tabops.spec import UseCase, list_usecases, load_usecase, prediction_model, record_model
from tabops.store.audit import AuditWriter, build_record
from tabops.store.privacy import Pseudonymizer

if TYPE_CHECKING:
    from tabops.monitoring.metrics import Metrics

__all__ = [
    "BatchTooLargeError",
    "EmptyBatchError",
    "JsonLimitError",
    "MalformedRequestError",
    "ModelSet",
    "Predictor",
    "ServedModel",
    "UseCaseState",
    "new_prediction_id",
    "parse_json",
]

log = logging.getLogger(__name__)

_INLINE_ROWS = 32
"""Compiled scoring of up to this many rows runs on the event loop (well under 1 ms)."""


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


def new_prediction_id() -> str:
    """A UUIDv7 string: unique, and ordered by creation time (index-friendly)."""
    return new_prediction_ids(1)[0]


def new_prediction_ids(n: int) -> list[str]:
    """``n`` UUIDv7 strings sharing one millisecond timestamp, from one random draw.

    Layout (RFC 9562): 48 bits of Unix milliseconds, version 7, 12 random bits, variant
    0b10, 62 random bits.
    """
    ms = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    head = ms.to_bytes(6, "big")
    rand = np.frombuffer(os.urandom(10 * n), dtype=np.uint8).reshape(n, 10).copy()
    rand[:, 0] = 0x70 | (rand[:, 0] & 0x0F)  # version 7
    rand[:, 2] = 0x80 | (rand[:, 2] & 0x3F)  # variant 0b10
    out = []
    for tail in rand.tobytes().hex(" ", 10).split(" ") if n else ():
        h = head.hex() + tail
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def parse_json(body: bytes) -> Any:
    """Decode a request body.

    Raises:
        MalformedRequestError: empty or not JSON.
        JsonLimitError: nested over 1,024 levels, or a number over 4,300 digits (422).
    """
    if not body.strip():
        raise MalformedRequestError("request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses the NaN and Infinity that Python's json module writes by default:
    # read them here, so that the record model names the field instead of a vague 400
    try:
        return json.loads(body)
    except RecursionError:  # orjson stops at 1,024 levels; Python's parser overflows
        raise JsonLimitError(
            "request body is nested too deeply", [FieldIssue("(body)", "at most 1024 levels")]
        ) from None
    except ValueError as exc:
        if not isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
            # an integer of over 4,300 digits (Python's int-from-string limit)
            raise JsonLimitError(
                "request body holds a number too long to read",
                [FieldIssue("(body)", "numbers of at most 4300 digits")],
            ) from None
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise MalformedRequestError(f"request body is not valid JSON{where}") from None


def _issues(exc: ValidationError, prefix: str) -> list[FieldIssue]:
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


@dataclass
class ServedModel:
    """A champion ready to answer: loaded model, scorer, derived request models."""

    loaded: LoadedModel
    scorer: Scorer
    record_model: type[BaseModel]
    prediction_model: type[BaseModel]
    example: dict[str, Any]
    checker: ColumnChecker
    scorer_reason: str = ""
    """Why this scoring path: parity figures of the compiled path, or why it fell back."""

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
        return cls(
            loaded=loaded,
            scorer=scorer,
            record_model=record_model(loaded.spec, example),
            prediction_model=prediction_model(loaded.spec),
            example=example,
            checker=ColumnChecker(loaded.spec),
            scorer_reason=reason,
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
                f"invalid record for '{self.spec.name}'", _issues(exc, prefix)
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
            try:
                champion = await asyncio.to_thread(registry.champion, name)
            except Exception as exc:  # registry unreachable: keep serving what we have
                log.warning("use case %s: cannot reach the registry: %s", name, exc)
                continue
            if champion is None or champion.version == state.refused_version:
                continue
            if state.served is not None and state.served.version == champion.version:
                continue
            try:
                loaded = await asyncio.to_thread(registry.load, name, champion.version)
                await asyncio.to_thread(check_version, loaded)
                served = await asyncio.to_thread(ServedModel.from_loaded, loaded, self.compiled)
            except Exception as exc:
                state.refused_version = champion.version
                state.error = f"version {champion.version} refused: {exc}"
                log.error("use case %s: %s", name, state.error)
                continue
            previous = state.served.version if state.served is not None else None
            state.spec, state.served, state.status = loaded.spec, served, "serving"
            state.error = state.refused_version = None
            swapped.append(name)
            log.info("use case %s: now serving version %s (was %s)", name, served.version, previous)
        for name in names or sorted(self.states):
            await self._follow_challenger(registry, self.states[name])
        return swapped

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


@dataclass(frozen=True)
class CallInfo:
    """Who made a prediction call, and through which endpoint (for the audit trail)."""

    endpoint: str
    caller: str | None = None
    client_request_id: str | None = None


class Predictor:
    """Scores validated records and records every prediction before returning it."""

    def __init__(
        self,
        writer: AuditWriter | None,
        pseudonymizer: Pseudonymizer,
        metrics: Metrics | None = None,
        coalesce_us: int = 0,
    ) -> None:
        self.writer = writer
        self.pseudonymizer = pseudonymizer
        self.metrics = metrics
        self.coalescer = Coalescer(coalesce_us / 1e6) if coalesce_us > 0 else None
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    async def predict(
        self,
        served: ServedModel,
        records: list[dict[str, Any]],
        call: CallInfo,
        entity_id: str | None = None,
        shadow: ServedModel | None = None,
    ) -> list[dict[str, Any]]:
        """Score records with the served model and audit them; a challenger given as
        ``shadow`` scores them too, off the response path.

        Returns:
            One prediction per record: prediction_id, label, probabilities, threshold and
            model_version.

        Raises:
            AuditUnavailableError: the predictions could not be recorded.
        """
        scorer = served.scorer  # one reference: the whole call uses the same version
        started = time.perf_counter()
        if self.coalescer is not None and len(records) == 1:
            scores = await self.coalescer.score(scorer, records[0])
        elif scorer.path != "pipeline" and len(records) <= _INLINE_ROWS:
            # microseconds of numpy: a thread hop would cost more than the work
            scores = scorer.score(records)
        else:
            # the pipeline (milliseconds) or a big batch: keep the event loop free
            scores = await asyncio.to_thread(scorer.score, records)
        latency_ms = (time.perf_counter() - started) * 1000
        version = scorer.version
        ids = new_prediction_ids(len(records))
        out = [
            {
                "prediction_id": pid,
                "label": label,
                "probabilities": probabilities,
                "threshold": scores.threshold,
                "model_version": version,
            }
            for pid, label, probabilities in zip(
                ids, scores.labels, scores.probability_dicts(), strict=True
            )
        ]
        if self.writer is not None:
            await self.writer.record(
                self._audit_record(served, records, scores, out, call, latency_ms, entity_id)
            )
        if self.metrics is not None:  # after the audit: only predictions actually served
            positive = served.loaded.decision.positive_index
            self.metrics.record_predictions(
                served.spec.name, version, scores, positive, latency_ms / 1000
            )
        if shadow is not None and self.writer is not None:
            # never awaited by the response: a slow or failing challenger changes nothing
            task = asyncio.create_task(self._shadow(shadow, records, out, call, entity_id))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return out

    async def _shadow(
        self,
        shadow: ServedModel,
        records: list[dict[str, Any]],
        champion: list[dict[str, Any]],
        call: CallInfo,
        entity_id: str | None,
    ) -> None:
        try:
            started = time.perf_counter()
            scores = await asyncio.to_thread(shadow.scorer.score, records)
            latency_ms = (time.perf_counter() - started) * 1000
            out = [
                {
                    "prediction_id": pid,
                    "label": label,
                    "probabilities": probabilities,
                    "threshold": scores.threshold,
                    "model_version": shadow.scorer.version,
                }
                for pid, label, probabilities in zip(
                    new_prediction_ids(len(records)),
                    scores.labels,
                    scores.probability_dicts(),
                    strict=True,
                )
            ]
            shadow_call = CallInfo(f"shadow:{call.endpoint}", call.caller, call.client_request_id)
            record = self._audit_record(
                shadow, records, scores, out, shadow_call, latency_ms, entity_id
            )
            for row, original in zip(record["predictions"], champion, strict=True):
                row["shadow"], row["shadow_of"] = True, original["prediction_id"]
            assert self.writer is not None
            await self.writer.record(record)
        except Exception:
            log.exception("use case %s: shadow scoring failed", shadow.spec.name)

    def _audit_record(
        self,
        served: ServedModel,
        records: list[dict[str, Any]],
        scores: Scores,
        out: list[dict[str, Any]],
        call: CallInfo,
        latency_ms: float,
        entity_id: str | None,
    ) -> dict[str, Any]:
        spec = served.spec
        now = datetime.now(UTC)
        request_id = new_prediction_id()
        positive = served.loaded.decision.positive_index
        column = (
            scores.probabilities[:, positive]
            if positive is not None
            else scores.probabilities.max(axis=1)
        )
        hashed_entity = self.pseudonymizer.hash(entity_id) if entity_id is not None else None
        rows = [
            {
                "id": o["prediction_id"],
                "request_id": request_id,
                "created_at": now,
                "usecase": spec.name,
                "model_version": o["model_version"],
                "features": self.pseudonymizer.features(spec, record),
                "label": o["label"],
                "probabilities": o["probabilities"],
                "score": float(score),
                "threshold": o["threshold"],
                "latency_ms": latency_ms,
                "entity_id": hashed_entity,
                "shadow": False,
                "shadow_of": None,
            }
            for record, o, score in zip(records, out, column, strict=True)
        ]
        return build_record(
            request_id=request_id,
            created_at=now,
            usecase=spec.name,
            endpoint=call.endpoint,
            caller=call.caller,
            client_request_id=call.client_request_id,
            model_version=out[0]["model_version"],
            latency_ms=latency_ms,
            rows=rows,
        )
