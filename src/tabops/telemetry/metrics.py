"""Prometheus metrics of a serving process: traffic, predictions, models, audit, drift.

A :class:`Metrics` owns its metric objects and the :class:`~prometheus_client.CollectorRegistry`
it exposes; nothing is registered globally and nothing is built at import time. Labels are
kept to low-cardinality values (route templates, use cases, versions, labels, states):
never an id.

With several worker processes (``tabops serve --workers N``) every process keeps its
values in memory-mapped files in a shared folder (prometheus_client's multiprocess mode)
and any worker answering ``GET /metrics`` reads them all: counters and histograms are
summed, and each gauge says how to combine processes (``multiprocess_mode``).
prometheus_client chooses this mode from ``PROMETHEUS_MULTIPROC_DIR`` when it is first
imported, so the variable must be set before the workers start:
:func:`~tabops.telemetry.multiproc.multiprocess_metrics` does that for ``tabops serve``.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from tabops.monitoring.rule import DEFAULT_STATISTICS
from tabops.telemetry.monitoring import MonitoringGauges
from tabops.telemetry.multiproc import MULTIPROC_ENV, mark_dead, multiprocess_dir, reap_dead

if TYPE_CHECKING:
    from tabops.monitoring.drift import DriftReport
    from tabops.scoring.base import Scores
    from tabops.store.audit import AuditStats

__all__ = [
    "CONTENT_TYPE",
    "DRIFT_STATISTICS",
    "Metrics",
    "observe_all",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""Content type of :meth:`Metrics.exposition` (Prometheus text format 0.0.4)."""

DRIFT_STATISTICS = DEFAULT_STATISTICS
"""Values of the ``statistic`` label of ``tabops_drift_feature`` when the spec names no
drift tests; a run publishes every statistic it holds (``FeatureDrift.statistics``)."""

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# compiled scorers answer in microseconds, the sklearn pipeline in milliseconds
_INFERENCE_BUCKETS = tuple(
    float(b)
    for b in "1e-5 2.5e-5 5e-5 1e-4 2.5e-4 5e-4 1e-3 2.5e-3 5e-3 .01 .025 .05 .1 .25 1".split()
)
_SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_AUDIT_OUTCOMES = ("written", "spooled", "replayed", "quarantined")
_GaugeMode = Literal["livemax", "livesum", "mostrecent"]


class Metrics:
    """Every tabops metric, registered in one registry that ``GET /metrics`` exposes.

    Args:
        registry: The registry to expose. In single-process mode the metrics are
            registered in it; in multiprocess mode it gets a collector reading the metric
            files of every process instead (registering both would count twice).
        multiprocess_dir: The shared folder of the worker processes (see
            :func:`multiprocess_dir`), or None for a single process.

    Raises:
        RuntimeError: a folder is given but prometheus_client was imported before
            ``PROMETHEUS_MULTIPROC_DIR`` was set, so its values never reach the files.
    """

    def __init__(
        self, registry: CollectorRegistry, *, multiprocess_dir: Path | None = None
    ) -> None:
        self.registry = registry
        self.multiprocess_dir = multiprocess_dir
        target: CollectorRegistry | None = registry
        if multiprocess_dir is not None:
            if values.ValueClass is values.MutexValue:
                raise RuntimeError(
                    f"{MULTIPROC_ENV} must be set before prometheus_client is imported"
                )
            MultiProcessCollector(registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
            target = None
        self._lock = threading.Lock()
        self._http: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._predicted: dict[tuple[str, str, str], Counter] = {}
        self._scoring: dict[str, tuple[Histogram, Histogram]] = {}
        self._models: dict[str, tuple[str, str, str]] = {}
        self._audit_seen: dict[str, int] = dict.fromkeys(_AUDIT_OUTCOMES, 0)
        self._audit_seen["failures"] = self._audit_seen["transactions"] = 0
        self._job_states: set[str] = set()

        self._target = target
        labels = ("method", "route", "status")
        self.http_requests = self._counter(
            "tabops_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            labels,
        )
        self.http_duration = self._histogram(
            "tabops_http_request_duration_seconds",
            "Time from request to the end of the response, by method, route and status code.",
            labels,
            _LATENCY_BUCKETS,
        )
        self.predictions = self._counter(
            "tabops_predictions",
            "Predictions served (and recorded), by use case, model version and label.",
            ("usecase", "model_version", "label"),
        )
        self.inference = self._histogram(
            "tabops_inference_seconds",
            "Time the model took to score one call (one record or one batch), by use case.",
            ("usecase",),
            _INFERENCE_BUCKETS,
        )
        self.scores = self._histogram(
            "tabops_prediction_score",
            "Scores served: the positive-class probability (binary use cases) or the "
            "top-class probability (multiclass), by use case.",
            ("usecase",),
            _SCORE_BUCKETS,
        )
        # per process: the max over live processes shows a version while any still serves
        self.model_info = self._gauge(
            "tabops_model_info",
            "Model serving a use case: loaded-at time (Unix seconds), or 0 once it no longer "
            "serves in any process.",
            ("usecase", "model_version", "scoring_path"),
            "livemax",
        )
        self.audit_queue = self._gauge(
            "tabops_audit_queue_depth", "Calls waiting for the audit writer.", (), "livesum"
        )
        # every process measures the same spool folder: max, not sum
        self.audit_spool = self._gauge(
            "tabops_audit_spool_bytes",
            "Bytes waiting in the audit spool to be replayed into the database.",
            (),
            "livemax",
        )
        self.audit_records = self._counter(
            "tabops_audit_records",
            "Audit records (one per prediction call) by outcome: written to the database, "
            "spooled while it was unreachable, replayed from the spool, quarantined (refused "
            "by the tables, kept in a quarantine file, the call not acknowledged).",
            ("outcome",),
        )
        self.audit_failures = self._counter(
            "tabops_audit_failures",
            "Prediction calls refused (503): neither the database nor the spool took them.",
        )
        self.audit_transactions = self._counter(
            "tabops_audit_transactions",
            "Audit transactions committed (group commit: many calls per transaction).",
        )
        # Facts about shared state (database, drift job, feedback): the latest value wins,
        # whichever process set it, and stays after that process is gone.
        self.training_jobs = self._gauge(
            "tabops_training_jobs", "Training jobs by state.", ("state",), "mostrecent"
        )
        self.monitoring = MonitoringGauges(self._gauge)

    def _counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, registry=self._target)

    def _histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self._target)

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...], mode: _GaugeMode) -> Gauge:
        return Gauge(name, doc, labels, multiprocess_mode=mode, registry=self._target)

    @classmethod
    def for_process(cls) -> Metrics:
        """Metrics on a new registry, in the mode prometheus_client runs in here.

        Returns:
            Multiprocess metrics when ``PROMETHEUS_MULTIPROC_DIR`` is set, else plain ones.
        """
        return cls(CollectorRegistry(), multiprocess_dir=multiprocess_dir())

    # --- hot path -----------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its duration.

        Args:
            method: The HTTP method; methods outside the standard ones count as ``OTHER``.
            route: The route template (``/usecases/{name}/predict``), never the raw path.
            status: The response status code.
            seconds: Time from the request to the end of the response.
        """
        if method not in _METHODS:  # any token is a valid method: keep the label bounded
            method = "OTHER"
        key = (method, route, str(status))
        children = self._http.get(key)
        if children is None:
            children = (self.http_requests.labels(*key), self.http_duration.labels(*key))
            self._http[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def record_predictions(
        self,
        usecase: str,
        model_version: str,
        scores: Scores,
        positive_index: int | None,
        seconds: float,
    ) -> None:
        """Count the predictions of one call, its scoring time and its scores.

        Args:
            usecase: The use case.
            model_version: The version that scored.
            scores: What the scorer returned.
            positive_index: Column of the positive class in ``scores.probabilities``; None
                for multiclass, where the top-class probability is the score.
            seconds: Time the scorer took for the whole call.
        """
        labels = scores.labels
        if len(labels) == 1:  # the common case: no tally
            self._predicted_child(usecase, model_version, labels[0]).inc()
        else:
            for label, n in Tally(labels).items():
                self._predicted_child(usecase, model_version, label).inc(n)
        children = self._scoring.get(usecase)
        if children is None:
            children = (self.inference.labels(usecase), self.scores.labels(usecase))
            self._scoring[usecase] = children
        children[0].observe(seconds)
        column = scores.positive_scores(positive_index)
        if len(column) == 1:
            children[1].observe(float(column[0]))
        else:
            observe_all(children[1], column)

    def _predicted_child(self, usecase: str, model_version: str, label: str) -> Counter:
        key = (usecase, model_version, label)
        child = self._predicted.get(key)
        if child is None:
            child = self._predicted[key] = self.predictions.labels(*key)
        return child

    # --- sampled state ------------------------------------------------------------------

    def set_model(
        self, usecase: str, model_version: str, scoring_path: str, loaded_at: float
    ) -> None:
        """Publish the model serving a use case in this process.

        The version it replaces is set to 0 rather than removed: multiprocess mode cannot
        remove a series, and 0 reads the same in both modes (query ``tabops_model_info > 0``).

        Args:
            usecase: The use case.
            model_version: The version now serving.
            scoring_path: The scorer's implementation (``pipeline`` or a compiled path).
            loaded_at: When the version was loaded (Unix seconds).
        """
        key = (usecase, model_version, scoring_path)
        with self._lock:
            previous = self._models.get(usecase)
            if previous is not None and previous != key:
                self.model_info.labels(*previous).set(0)
            self._models[usecase] = key
        self.model_info.labels(*key).set(loaded_at)

    def record_audit(self, stats: AuditStats) -> None:
        """Publish the audit writer's state: queue and spool gauges, counters by outcome.

        The writer keeps cumulative totals; the counters grow by what changed since the
        previous call, so calling this from a timer and at scrape time counts nothing twice.

        Args:
            stats: The writer's statistics (``AuditWriter.stats()``).
        """
        self.audit_queue.set(stats.queued)
        self.audit_spool.set(stats.spool_bytes)
        totals = {
            "written": stats.written,
            "spooled": stats.spooled,
            "replayed": stats.replayed,
            "quarantined": stats.quarantined,
            "failures": stats.failures,
            "transactions": stats.transactions,
        }
        with self._lock:
            deltas = {k: v - self._audit_seen[k] for k, v in totals.items()}
            self._audit_seen.update(totals)
        for outcome in _AUDIT_OUTCOMES:
            # zero increments too: the series exist from the start, so rate() has data
            self.audit_records.labels(outcome).inc(max(deltas[outcome], 0))
        self.audit_failures.inc(max(deltas["failures"], 0))
        self.audit_transactions.inc(max(deltas["transactions"], 0))

    def set_jobs(self, counts: Mapping[str, int]) -> None:
        """Publish how many training jobs are in each state.

        States published before and absent from ``counts`` are set to 0.

        Args:
            counts: Jobs by state, e.g. ``{"queued": 0, "running": 1}``.
        """
        with self._lock:
            states = self._job_states | set(counts)
            self._job_states = states
        for state in sorted(states):
            self.training_jobs.labels(state).set(counts.get(state, 0))

    def record_drift(self, report: DriftReport) -> None:
        """Publish a drift report (see :meth:`MonitoringGauges.record_drift`)."""
        self.monitoring.record_drift(report)

    def set_live_quality(
        self,
        usecase: str,
        model_version: str,
        *,
        accuracy: float,
        f1: float | None = None,
        holdout_accuracy: float | None = None,
        labelled: int | None = None,
    ) -> None:
        """Publish live quality (see :meth:`MonitoringGauges.set_live_quality`)."""
        self.monitoring.set_live_quality(
            usecase,
            model_version,
            accuracy=accuracy,
            f1=f1,
            holdout_accuracy=holdout_accuracy,
            labelled=labelled,
        )

    # --- exposition and lifetime --------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in Prometheus text format (every process's values in multiprocess mode).

        Returns:
            The body of a ``GET /metrics`` response, of type :data:`CONTENT_TYPE`.
        """
        return generate_latest(self.registry)

    def reap_dead_processes(self) -> list[int]:
        """Drop the live gauges of processes that died without :meth:`close` (``kill -9``).

        uvicorn restarts a dead worker but runs no hook in the parent, so each new worker
        clears up after the dead ones when it starts.

        Returns:
            The process ids whose gauges were dropped.
        """
        return reap_dead(self.multiprocess_dir) if self.multiprocess_dir is not None else []

    def close(self) -> None:
        """Withdraw this process's live gauges (queue depth, models) when it exits."""
        if self.multiprocess_dir is not None:
            mark_dead(self.multiprocess_dir)


def observe_all(histogram: Histogram, values: npt.NDArray[np.float64]) -> None:
    """Observe many values at once: what ``observe`` does per value, one bucket count each.

    ``Histogram.observe`` takes one value; in multiprocess mode each call writes the sum
    and a bucket in a memory-mapped file (~2 µs), which made the score histogram of a
    1,000-row batch cost more than scoring it. This counts the values per bucket with
    numpy and adds each count once, through the histogram's own value objects.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another prometheus_client
        for value in values.tolist():
            histogram.observe(value)
        return
    # observe() puts a value in the first bucket whose bound is >= the value
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)
    total.inc(float(values.sum()))
