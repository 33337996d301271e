"""The data plane: everything a prediction goes through between the transport and the
model, shared by the REST routes and the Open Inference Protocol (V2) routes. No HTTP here.

One call: parse the body, validate the records against the served spec, score them
(coalesced, inline or in a thread), record them in the audit trail (durable before the
answer), count them in the metrics, and let the challenger, if any, score them in the
shadow, off the response path. The data plane picks the model and the challenger from the
model set; a transport only names the use case.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Engine

from tabops import __version__
from tabops.errors import (
    EntityNotFoundError,
    ExplanationNotSupportedError,
    FieldIssue,
    InvalidFeaturesError,
    ModelNotFoundError,
    UseCaseNotFoundError,
    validation_issues,
)
from tabops.ids import uuid7, uuid7_many
from tabops.scoring.coalesce import Coalescer
from tabops.scoring.explain import should_explain
from tabops.serving.calls import CallInfo, Predictions
from tabops.serving.models import ModelSet, ServedModel, UseCaseState
from tabops.serving.requests import FeedbackItem, check_entity_id, parse_json
from tabops.serving.tensors import (
    decode_records,
    encode_response,
    explain_requested,
    parse_request,
)
from tabops.serving.v2 import (
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    model_metadata,
)
from tabops.store.audit import AuditWriter
from tabops.store.privacy import Pseudonymizer
from tabops.store.queries import record_feedback
from tabops.store.rows import audit_record
from tabops.store.training_tables import fetch_entity

if TYPE_CHECKING:
    from tabops.telemetry.metrics import Metrics

__all__ = [
    "CallInfo",
    "DataPlane",
    "InferenceResponse",
    "MetadataModelResponse",
    "MetadataServerResponse",
    "Predictions",
]
"""The call types and the V2 response types are re-exported: the routes reach nothing
behind the data plane."""

log = logging.getLogger(__name__)

_INLINE_ROWS = 1024
"""Compiled scoring of up to this many rows runs on the event loop: about a millisecond at
most (0.8-0.95 µs a row on the bench machine). Sent to a thread, a 1,000-row batch waited
under load for the GIL at each hand-off; inline, audited 1,000-row batches went from
62-65 to 68-73 requests a second (c=6, 2 workers), with a lower p99."""

_INLINE_EXPLAINED_ROWS = 32
"""Linear explanations of up to this many rows are computed on the event loop."""


class DataPlane:
    """Predictions and feedback for every use case of a model set.

    Args:
        models: The use cases served, with their champions and challengers.
        writer: The audit writer (None: predictions are not recorded).
        pseudonymizer: Hashes personal data before it is recorded.
        engine: The database (entity features, feedback).
        metrics: Where predictions are counted (None: nowhere).
        max_batch: Most records per call.
        coalesce_us: Window in which concurrent single records share a scoring call
            (0: no coalescing).
    """

    def __init__(
        self,
        models: ModelSet,
        writer: AuditWriter | None,
        pseudonymizer: Pseudonymizer,
        engine: Engine,
        metrics: Metrics | None = None,
        max_batch: int = 1000,
        coalesce_us: int = 0,
    ) -> None:
        self.models = models
        self.writer = writer
        self.pseudonymizer = pseudonymizer
        self.engine = engine
        self.metrics = metrics
        self.max_batch = max_batch
        self.coalescer = Coalescer(coalesce_us / 1e6) if coalesce_us > 0 else None
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    # --- REST ---------------------------------------------------------------------------

    async def predict(
        self, name: str | None, body: bytes, call: CallInfo, explain: bool = False
    ) -> Predictions:
        """Score the record, or the batch ``{"records": [...]}``, of a request body.

        Args:
            name: The use case (None: the default one).
            body: The raw JSON body.
            call: Who calls, through which endpoint.
            explain: The caller asks for explanations (``?explain=true``); the spec's
                ``explain`` option decides with it.

        Raises:
            MalformedRequestError: not JSON, or not a JSON object.
            EmptyBatchError, BatchTooLargeError: the batch size is out of range.
            InvalidFeaturesError: with one detail per bad field.
            ExplanationNotSupportedError: explanations are asked (or always given) and the
                spec refuses them, or the model family has no exact method.
            UseCaseNotFoundError, ModelNotReadyError: nothing answers for ``name``.
            AuditUnavailableError: the predictions could not be recorded.
        """
        usecase = (self.models.default or "") if name is None else name
        served = self.models.served(usecase)
        explained = _explains(served, explain)
        records, batch = served.parse_records(parse_json(body), self.max_batch)
        return await self._score(usecase, served, records, call, batch, explain=explained)

    async def predict_by_id(
        self, name: str, entity_id: str, call: CallInfo, explain: bool = False
    ) -> Predictions:
        """Score the entity whose features the use case's table holds under this id
        (``explain`` as :meth:`predict`).

        Raises:
            UseCaseNotFoundError: unknown use case, or one without an entity id.
            EntityNotFoundError: no row with this id.
            InvalidFeaturesError: the stored row no longer satisfies the served spec.
            ExplanationNotSupportedError: as :meth:`predict`.
        """
        served = self.models.served(name)
        explained = _explains(served, explain)
        spec = served.spec
        if spec.entity_id is None:
            raise UseCaseNotFoundError(
                f"use case '{name}' has no entity id: predict by id is not available"
            )
        check_entity_id(spec, entity_id)
        features = await asyncio.to_thread(fetch_entity, self.engine, spec, entity_id)
        if features is None:
            # the id is personal data: not echoed back (nor logged)
            raise EntityNotFoundError(f"no such {spec.entity_id.name} in the '{name}' table")
        try:
            record = served.record_model.model_validate(features, strict=False).model_dump()
        except ValidationError as exc:  # stored data no longer satisfies the served spec
            raise InvalidFeaturesError(
                f"stored features of this {spec.entity_id.name} do not satisfy the spec",
                validation_issues(exc, ""),
            ) from None
        return await self._score(name, served, [record], call, False, entity_id, explained)

    async def feedback(self, name: str, body: bytes, source: str | None) -> int:
        """Record the actual outcome of one prediction, or of a JSON list of them (all or
        nothing); an item's own ``source`` wins over the caller's name.

        Returns:
            The number of feedback rows written.

        Raises:
            MalformedRequestError: not JSON.
            InvalidFeaturesError: an item is malformed, or its label is not a class.
            PredictionNotFoundError: a prediction id is not recorded for this use case.
        """
        spec = self.models.state(name).spec
        payload = parse_json(body)
        raw = payload if isinstance(payload, list) else [payload]
        items: list[FeedbackItem] = []
        issues: list[FieldIssue] = []
        for i, entry in enumerate(raw):
            try:
                items.append(FeedbackItem.model_validate(entry))
            except ValidationError as exc:
                issues += validation_issues(exc, f"[{i}]")
        if issues or not items:
            raise InvalidFeaturesError(
                "invalid feedback", issues or [FieldIssue("(body)", "no feedback given")]
            )
        pairs = [(i.prediction_id, i.actual) for i in items]
        return await asyncio.to_thread(
            record_feedback, self.engine, spec, pairs, items[0].source or source
        )

    # --- Open Inference Protocol (V2) ---------------------------------------------------

    def server_metadata(self) -> MetadataServerResponse:
        """The server's V2 metadata."""
        return MetadataServerResponse(name="tabops", version=__version__, extensions=[])

    def model_state(self, name: str, version: str | None = None) -> UseCaseState:
        """A use case by its V2 model name, and version if one is given.

        Raises:
            UseCaseNotFoundError: no such use case.
            ModelNotFoundError: the version given is not the one served.
        """
        state = self.models.state(name)
        if version is not None:
            served = state.served.version if state.served is not None else None
            if version != served:
                raise ModelNotFoundError(
                    f"version {version} of '{name}' is not served here (serving: {served})"
                )
        return state

    def metadata(self, name: str, version: str | None = None) -> MetadataModelResponse:
        """A model's V2 metadata: inputs per feature, outputs, classes in column order.

        Raises:
            UseCaseNotFoundError, ModelNotFoundError: see :meth:`model_state`.
            ModelNotReadyError: no champion loaded.
        """
        self.model_state(name, version)
        served = self.models.served(name)
        return model_metadata(served.spec, served.version, served.loaded.decision.threshold)

    async def infer(
        self,
        name: str,
        version: str | None,
        body: bytes,
        call: CallInfo,
        header_length: int | None = None,
    ) -> InferenceResponse:
        """Score a V2 inference request: the same validation, audit, metrics and shadow as
        :meth:`predict`.

        Args:
            name: The model (use case).
            version: The version asked for (None: the one served).
            body: The HTTP body: JSON, or JSON and binary tensor data.
            call: Who calls, through which endpoint.
            header_length: The JSON's length when binary data follows it.

        Raises:
            MalformedRequestError: not an inference request, or tensors whose data do not
                fill their shapes.
            InvalidFeaturesError: with one detail per bad field.
            UseCaseNotFoundError, ModelNotFoundError, ModelNotReadyError: no such model.
            BatchTooLargeError: more rows than the batch limit.
            ExplanationNotSupportedError: as :meth:`predict` (``parameters.explain``, or
                the ``explanation`` output named).
        """
        self.model_state(name, version)
        served = self.models.served(name)
        request = parse_request(body, header_length)
        explained = _explains(served, explain_requested(request))
        records = decode_records(served.spec, request)
        checked, _ = served.parse_records({"records": records}, self.max_batch)
        answer = await self._score(name, served, checked, call, True, explain=explained)
        classes = answer.scores.classes
        return encode_response(
            model_name=name,
            model_version=answer.model_version,
            request=request,
            labels=answer.scores.labels,
            probabilities=[[p[c] for c in classes] for p in answer.probabilities],
            classes=classes,
            prediction_ids=answer.ids,
            explanations=answer.explanations,
        )

    # --- scoring, audit, metrics, shadow ------------------------------------------------

    async def _score(
        self,
        name: str,
        served: ServedModel,
        records: list[dict[str, Any]],
        call: CallInfo,
        batch: bool,
        entity_id: str | None = None,
        explain: bool = False,
    ) -> Predictions:
        scorer = served.scorer  # one reference: the whole call uses the same version
        explainer = served.explainer  # of the same version as the scorer
        started = time.perf_counter()
        if self.coalescer is not None and len(records) == 1:
            scores = await self.coalescer.score(scorer, records[0])
        elif scorer.path != "pipeline" and len(records) <= _INLINE_ROWS:
            # microseconds of numpy: a thread hop would cost more than the work
            scores = scorer.score(records)
        else:
            # the pipeline (milliseconds) or a big batch: keep the event loop free
            scores = await asyncio.to_thread(scorer.score, records)
        explanations = None
        if explain and explainer is not None:  # _explains refused a missing explainer
            classes = scores.labels  # multiclass: the label served is the class explained
            if explainer.method.method == "linear" and len(records) <= _INLINE_EXPLAINED_ROWS:
                explained = explainer.explain(records, classes=classes)
            else:  # TreeSHAP: up to milliseconds a row
                explained = await asyncio.to_thread(explainer.explain, records, classes)
            explanations = [e.as_dict() for e in explained]
        latency_ms = (time.perf_counter() - started) * 1000
        answer = Predictions(
            uuid7_many(len(records)),
            scores,
            scores.probability_dicts(),
            scorer.version,
            batch,
            explanations,
        )
        positive = served.loaded.decision.positive_index
        if self.writer is not None:
            await self.writer.record(
                self._audit(served, records, answer, positive, call, latency_ms, entity_id)
            )
        if self.metrics is not None:  # after the audit: only predictions actually served
            self.metrics.record_predictions(
                served.spec.name, answer.model_version, scores, positive, latency_ms / 1000
            )
        shadow = self.models.challenger(name)
        if shadow is not None and self.writer is not None:
            # never awaited by the response: a slow or failing challenger changes nothing
            task = asyncio.create_task(self._shadow(shadow, records, answer.ids, call, entity_id))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return answer

    async def _shadow(
        self,
        shadow: ServedModel,
        records: list[dict[str, Any]],
        champion_ids: list[str],
        call: CallInfo,
        entity_id: str | None,
    ) -> None:
        try:
            started = time.perf_counter()
            scores = await asyncio.to_thread(shadow.scorer.score, records)
            latency_ms = (time.perf_counter() - started) * 1000
            answer = Predictions(
                uuid7_many(len(records)),
                scores,
                scores.probability_dicts(),
                shadow.scorer.version,
                True,
            )
            shadow_call = CallInfo(f"shadow:{call.endpoint}", call.caller, call.client_request_id)
            positive = shadow.loaded.decision.positive_index
            record = self._audit(
                shadow, records, answer, positive, shadow_call, latency_ms, entity_id, champion_ids
            )
            assert self.writer is not None
            await self.writer.record(record)
        except Exception:
            log.exception("use case %s: shadow scoring failed", shadow.spec.name)

    def _audit(
        self,
        served: ServedModel,
        records: list[dict[str, Any]],
        answer: Predictions,
        positive: int | None,
        call: CallInfo,
        latency_ms: float,
        entity_id: str | None,
        shadow_of: Sequence[str] | None = None,
    ) -> Any:
        spec = served.spec
        pseudonymize = self.pseudonymizer.features
        explanations = answer.explanations
        if explanations is not None:  # a reason quotes a value: none of personal data
            explanations = [self.pseudonymizer.explanation(spec, e) for e in explanations]
        return audit_record(
            request_id=uuid7(),
            created_at=datetime.now(UTC),
            usecase=spec.name,
            endpoint=call.endpoint,
            caller=call.caller,
            client_request_id=call.client_request_id,
            model_version=answer.model_version,
            latency_ms=latency_ms,
            ids=answer.ids,
            features=[pseudonymize(spec, record) for record in records],
            labels=answer.scores.labels,
            probabilities=answer.probabilities,
            scores=answer.scores.positive_scores(positive).tolist(),
            threshold=answer.scores.threshold,
            entity_id=self.pseudonymizer.hash(entity_id) if entity_id is not None else None,
            shadow_of=shadow_of,
            explanations=explanations,
        )


def _explains(served: ServedModel, requested: bool) -> bool:
    """Whether a call is explained (the spec's option and the request), checked before
    anything is scored.

    Raises:
        ExplanationNotSupportedError: the spec says ``never`` and the call asks, or the call
            is to be explained and the model has no explainer.
    """
    if not should_explain(served.spec, requested):
        return False
    if served.explainer is None:
        raise ExplanationNotSupportedError(
            f"use case '{served.spec.name}' version {served.version} cannot explain its "
            "predictions",
            [FieldIssue("explain", served.explainer_reason)],
        )
    return True
