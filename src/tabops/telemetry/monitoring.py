"""The monitoring gauges of a process: drift of the latest report per feature, and live
quality against feedback. Facts about shared state (the drift job, feedback): the latest
value wins, whichever process set it, and stays after that process is gone."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from prometheus_client import Gauge

if TYPE_CHECKING:
    from tabops.monitoring.drift import DriftReport, FeatureDrift

__all__ = ["GaugeFactory", "MonitoringGauges"]

GaugeFactory = Callable[
    [str, str, tuple[str, ...], Literal["livemax", "livesum", "mostrecent"]], Gauge
]
"""Makes a gauge in the registry of a :class:`~tabops.telemetry.metrics.Metrics`."""


class MonitoringGauges:
    """Drift and live-quality gauges, declared through ``gauge``."""

    def __init__(self, gauge: GaugeFactory) -> None:
        self._lock = threading.Lock()
        # per use case: the statistics published for each feature, to reset stale ones
        self._drift_features: dict[str, dict[str, set[str]]] = {}
        self.drift_feature = gauge(
            "tabops_drift_feature",
            "Drift of a feature (or '(score)', '(label)') in the latest report, by statistic: "
            "statistic (KS D or chi-square), p_value, then each effect size (psi, "
            "js_distance, ...); NaN when not tested.",
            ("usecase", "feature", "statistic"),
            "mostrecent",
        )
        self.drift_feature_drifted = gauge(
            "tabops_drift_feature_drifted",
            "1 when the feature drifted in the latest report, else 0.",
            ("usecase", "feature"),
            "mostrecent",
        )
        self.drift_level = gauge(
            "tabops_drift_level",
            "Drift alert level of the latest report: 0 stable or insufficient data, 1 watch, "
            "2 retrain.",
            ("usecase",),
            "mostrecent",
        )
        self.drift_drifted = gauge(
            "tabops_drift_drifted_features",
            "Number of drifted features in the latest report.",
            ("usecase",),
            "mostrecent",
        )
        self.drift_live_rows = gauge(
            "tabops_drift_live_rows",
            "Live rows the latest drift report compared with the reference.",
            ("usecase",),
            "mostrecent",
        )
        self.drift_timestamp = gauge(
            "tabops_drift_timestamp_seconds",
            "When the latest drift report was computed (Unix seconds).",
            ("usecase",),
            "mostrecent",
        )
        version = ("usecase", "model_version")
        self.live_accuracy = gauge(
            "tabops_live_accuracy",
            "Accuracy of served predictions against their feedback.",
            version,
            "mostrecent",
        )
        self.live_f1 = gauge(
            "tabops_live_f1",
            "F1 of served predictions against their feedback.",
            version,
            "mostrecent",
        )
        self.holdout_accuracy = gauge(
            "tabops_holdout_accuracy",
            "Accuracy of the model version on its hold-out set at training time.",
            version,
            "mostrecent",
        )
        self.live_labelled = gauge(
            "tabops_live_labelled",
            "Served predictions with feedback behind the live accuracy and F1.",
            version,
            "mostrecent",
        )

    def record_drift(self, report: DriftReport) -> None:
        """Publish a drift report: per-feature statistics, drifted flags, the level.

        Features of an earlier report that this one lacks (too few rows: nothing tested)
        are set to NaN and not drifted, so that no stale figure stays on the dashboard.

        Args:
            report: The use case's latest report (``compute_drift``).
        """
        usecase = report.usecase
        rows: list[tuple[str, FeatureDrift]] = [(f.name, f) for f in report.features]
        if report.score_drift is not None:
            rows.append(("(score)", report.score_drift))
        if report.label_drift is not None:
            rows.append(("(label)", report.label_drift))
        with self._lock:
            published = self._drift_features.setdefault(usecase, {})
            before = {name: set(stats) for name, stats in published.items()}
            for name, feature in rows:
                published[name] = before.get(name, set()) | set(feature.statistics)
        for name, feature in rows:
            for statistic, value in feature.statistics.items():
                self.drift_feature.labels(usecase, name, statistic).set(_number(value))
            # statistics an earlier run held and this one does not (the spec changed)
            for statistic in sorted(before.get(name, set()) - set(feature.statistics)):
                self.drift_feature.labels(usecase, name, statistic).set(math.nan)
            self.drift_feature_drifted.labels(usecase, name).set(int(feature.drifted))
        current = {name for name, _ in rows}
        for name in sorted(set(before) - current):
            for statistic in sorted(before[name]):
                self.drift_feature.labels(usecase, name, statistic).set(math.nan)
            self.drift_feature_drifted.labels(usecase, name).set(0)
        self.drift_level.labels(usecase).set(report.level)
        self.drift_drifted.labels(usecase).set(report.n_drifted)
        self.drift_live_rows.labels(usecase).set(report.n_live)
        self.drift_timestamp.labels(usecase).set(report.computed_at.timestamp())

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
        """Publish the live quality of a model version beside its hold-out accuracy.

        Args:
            usecase: The use case.
            model_version: The version whose predictions were compared with feedback.
            accuracy: Accuracy of its served predictions against the feedback.
            f1: F1 of the same; None leaves the gauge as it is.
            holdout_accuracy: The version's accuracy on its hold-out set at training time;
                None leaves the gauge as it is.
            labelled: How many predictions with feedback the figures rest on.
        """
        self.live_accuracy.labels(usecase, model_version).set(accuracy)
        for gauge, value in (
            (self.live_f1, f1),
            (self.holdout_accuracy, holdout_accuracy),
            (self.live_labelled, labelled),
        ):
            if value is not None:
                gauge.labels(usecase, model_version).set(value)


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)
