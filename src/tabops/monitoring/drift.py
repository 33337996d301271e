"""Drift of a window of live inputs, scores and labels against a model's reference sample.

Pure functions (no database, no HTTP): the caller brings the window from the audit store
and the champion's reference (``LoadedModel.reference``), and gets a frozen, JSON-ready
:class:`DriftReport`. Number and integer features and the score are tested with
Kolmogorov-Smirnov; category and boolean features and the label mix with chi-square on
the reference-vs-live counts. Each also gets its PSI (bins at reference quantiles, or
categories) and Jensen-Shannon distance.

The drift rule:

1. Distribution drift needs BOTH ``p < monitoring.p_value`` AND an effect size: PSI
   ``>= monitoring.psi_threshold`` (or JS distance ``>= DriftParams.js_threshold`` when
   that is set). A p-value measures sample size as much as change: on 50,000 rows a 0.5%
   shift is "significant" and harmless, and its PSI stays near 0.
2. Missing-rate drift needs BOTH chi-square on missing/present counts with
   ``p < monitoring.p_value`` AND a missing rate moved by at least
   ``DriftParams.missing_rate_delta`` (absolute). Only present values enter rule 1.
3. Constant on both sides: the same constant is no drift (statistic 0, p 1); different
   constants are drift, whatever the sample sizes.
4. A feature is drifted when 1, 2 or 3 says so. With fewer than ``min_rows`` present
   values on a side its distribution is not tested (test ``"none"``); rule 2 still runs.

The tier counts drifted features (score and label drift are reported beside them):
``>= retrain_at`` is "retrain" (level 2), ``>= watch_at`` is "watch" (1), else "stable"
(0). Fewer than ``min_rows`` live or reference rows is "insufficient_data" (0): no test
runs, so no false alarm. Live categories the reference never saw are counted, listed and
pooled in an "(unseen)" bin whose reference share is PSI's epsilon (for a long tail, the
Good-Turing share instead: see :func:`~tabops.monitoring.stats.bin_categories`);
categories beyond the ``max_categories`` most frequent are pooled in "(other)".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

import pandas as pd

from tabops.monitoring.rule import DEFAULT_STATISTICS, DRIFT_TESTS, DriftParams, DriftTest, Sample
from tabops.monitoring.stats import (
    Histogram,
    bin_categories,
    bin_numeric,
    category_values,
    missing_test,
    numeric_values,
)
from tabops.spec.features import KINDS, kind_of
from tabops.spec.schema import UseCase

__all__ = [
    "DEFAULT_STATISTICS",
    "DRIFT_TESTS",
    "TIER_LEVELS",
    "DriftParams",
    "DriftReport",
    "DriftTest",
    "FeatureDrift",
    "Sample",
    "Tier",
    "categorical_drift",
    "compute_drift",
    "histograms",
    "numeric_drift",
]

Tier = Literal["insufficient_data", "stable", "watch", "retrain"]
TIER_LEVELS: Mapping[Tier, int] = MappingProxyType(
    {"insufficient_data": 0, "stable": 0, "watch": 1, "retrain": 2}
)
"""Integer level of each tier, for exit codes and Prometheus gauges."""

_MAX_LISTED_UNSEEN = 20  # a report names this many unseen categories at most


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature (or of the score, or of the label mix)."""

    name: str
    kind: str
    """The feature type, or ``"score"`` / ``"label"``."""
    test: str
    """The hypothesis test run (a :data:`DRIFT_TESTS` name), ``"none"`` if not tested."""
    statistics: dict[str, float | None]
    """What this run computed: the test's ``statistic`` and ``p_value``, then each effect
    size by its test name (``psi``, ``js_distance``, ...); None when not tested."""
    n_reference: int
    """Present (non-missing) reference values."""
    n_live: int
    """Present (non-missing) live values."""
    missing_rate_ref: float
    missing_rate_live: float
    missing_p_value: float
    missing_drift: bool
    unseen_categories: tuple[str, ...]
    """Live categories absent from the reference, most frequent first (at most 20)."""
    n_unseen: int
    """Live values in categories absent from the reference."""
    distribution_drift: bool
    drifted: bool
    reason: str

    @property
    def statistic(self) -> float | None:
        """The hypothesis test's statistic (KS D, chi-square)."""
        return self.statistics.get("statistic")

    @property
    def p_value(self) -> float | None:
        return self.statistics.get("p_value")

    @property
    def psi(self) -> float | None:
        return self.statistics.get("psi")

    @property
    def js_distance(self) -> float | None:
        return self.statistics.get("js_distance")


# the JSON fields a feature's drift had before ``statistics``, kept for their readers
_FLAT = ("statistic", "p_value", "psi", "js_distance")


def _feature_dict(drift: FeatureDrift) -> dict[str, Any]:
    out = dataclasses.asdict(drift)
    out.update({k: drift.statistics.get(k) for k in _FLAT})  # what older readers look for
    return out


@dataclass(frozen=True)
class DriftReport:
    """Drift of a use case's live window against its champion's reference."""

    usecase: str
    model_version: str
    n_reference: int
    n_live: int
    features: tuple[FeatureDrift, ...]
    score_drift: FeatureDrift | None
    label_drift: FeatureDrift | None
    n_drifted: int
    tier: Tier
    level: int
    computed_at: datetime
    message: str
    params: DriftParams
    explanations: dict[str, Any] | None = None
    """The global view of the explanations recorded in the window (mean absolute
    contribution beside training importance, and their shift), when there are any."""

    @property
    def drifted_features(self) -> list[str]:
        """Names of the drifted features, in spec order."""
        return [f.name for f in self.features if f.drifted]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready builtins (``computed_at`` in ISO 8601)."""
        out = dataclasses.asdict(self)
        out["features"] = [_feature_dict(f) for f in self.features]
        for key in ("score_drift", "label_drift"):
            drift = getattr(self, key)
            out[key] = _feature_dict(drift) if drift is not None else None
        out["computed_at"] = self.computed_at.isoformat()
        return out


# --- per kind ------------------------------------------------------------------------


def numeric_drift(
    name: str, reference: Any, live: Any, params: DriftParams, *, kind: str = "number"
) -> FeatureDrift:
    """Drift of a numeric feature (or score): its tests (KS, PSI, JS...), missing rate.

    Args:
        name: The feature's name.
        reference: Reference values; None, NaN, infinities and non-numbers are missing.
        live: Live values, missing values as for ``reference``.
        params: The drift rule.
        kind: Recorded in the result (``"number"``, ``"integer"``, ``"score"``).

    Returns:
        The feature's drift.
    """
    ref, n_ref = numeric_values(reference)
    cur, n_cur = numeric_values(live)
    tested = min(ref.size, cur.size) >= params.min_rows
    changed = ""
    if tested and ref.min() == ref.max() and cur.min() == cur.max() and ref[0] != cur[0]:
        changed = f"constant changed from {ref[0]:g} to {cur[0]:g}"
    sample = Sample(ref, cur, bin_numeric(ref, cur, params.bins))
    return _feature(
        name, kind, sample, tested, (ref.size, n_ref), (cur.size, n_cur), params, changed
    )


def categorical_drift(
    name: str, reference: Any, live: Any, params: DriftParams, *, kind: str = "category"
) -> FeatureDrift:
    """Drift of a categorical feature (or label mix): its tests (chi-square, PSI, JS...),
    missing rate.

    Args:
        name: The feature's name.
        reference: Reference values; None and NaN are missing.
        live: Live values, missing values as for ``reference``.
        params: The drift rule.
        kind: Recorded in the result; ``"boolean"`` also reads ``"true"``/``"false"``
            text as booleans.

    Returns:
        The feature's drift, with the live categories the reference never saw.
    """
    booleans = kind in KINDS and KINDS[kind].drift_booleans
    ref, n_ref = category_values(reference, boolean=booleans)
    cur, n_cur = category_values(live, boolean=booleans)
    bins = bin_categories(ref, cur, params.max_categories)
    tested = min(len(ref), len(cur)) >= params.min_rows
    changed = ""
    if tested and len(set(ref)) == 1 and len(set(cur)) == 1 and ref[0] != cur[0]:
        changed = f"constant changed from {ref[0]!r} to {cur[0]!r}"
    sample = Sample(ref, cur, bins)
    return _feature(
        name, kind, sample, tested, (len(ref), n_ref), (len(cur), n_cur), params, changed
    )


# --- use case ------------------------------------------------------------------------


def compute_drift(
    spec: UseCase,
    reference: pd.DataFrame,
    live: pd.DataFrame,
    *,
    reference_scores: Any = None,
    live_scores: Any = None,
    reference_labels: Any = None,
    live_labels: Any = None,
    model_version: str = "",
    params: DriftParams | None = None,
    computed_at: datetime | None = None,
) -> DriftReport:
    """Compare a live window with the reference, feature by feature, and give a tier.

    Args:
        spec: The use case; its features are compared, its monitoring section is the rule.
        reference: The champion's reference sample (feature columns; others are ignored).
        live: The live window, one row per prediction. A feature column it lacks is
            entirely missing (which is drift of its missing rate).
        reference_scores: Positive-class probabilities of the reference rows.
        live_scores: Positive-class probabilities of the live rows.
        reference_labels: Labels (true or predicted) of the reference rows.
        live_labels: Labels of the live rows, of the same nature as ``reference_labels``.
        model_version: The version the reference belongs to, for the report.
        params: The drift rule; default: ``DriftParams.from_spec(spec.monitoring)``.
        computed_at: The report's time; default: now (UTC).

    Returns:
        The report; tier ``"insufficient_data"``, without any test, when rows are too few.

    Raises:
        ValueError: the reference lacks a feature column, or scores or labels are given
            for one side only.
    """
    rule = params or DriftParams.from_spec(spec.monitoring)
    absent = [n for n in spec.feature_names if n not in reference.columns]
    if absent:
        raise ValueError(f"the reference sample has no column {', '.join(absent)}")
    if (reference_scores is None) != (live_scores is None):
        raise ValueError("scores must be given for both the reference and the live window")
    if (reference_labels is None) != (live_labels is None):
        raise ValueError("labels must be given for both the reference and the live window")
    n_ref, n_live = len(reference), len(live)
    features: list[FeatureDrift] = []
    score = label = None
    tier: Tier = "insufficient_data"
    if n_live < rule.min_rows or n_ref < rule.min_rows:
        side, n = ("live", n_live) if n_live < rule.min_rows else ("reference", n_ref)
        message = f"insufficient data: {n} {side} rows, at least {rule.min_rows} needed"
    else:
        # Personal data is pseudonymised in the audit store: live values are keyed hashes,
        # the reference holds raw values, and comparing them would always "drift". They
        # are left out of the test, and said so in the message.
        personal = [f.name for f in spec.features if f.pii]
        for feature in (f for f in spec.features if not f.pii):
            cur = live[feature.name] if feature.name in live.columns else [None] * n_live
            drift = numeric_drift if kind_of(feature).drift == "numeric" else categorical_drift
            features.append(
                drift(feature.name, reference[feature.name], cur, rule, kind=feature.type)
            )
        if reference_scores is not None:
            score = numeric_drift("score", reference_scores, live_scores, rule, kind="score")
        if reference_labels is not None:
            label = categorical_drift("label", reference_labels, live_labels, rule, kind="label")
        drifted = [f.name for f in features if f.drifted]
        n = len(drifted)
        tier = "retrain" if n >= rule.retrain_at else "watch" if n >= rule.watch_at else "stable"
        message = f"{n} of {len(features)} features drifted" + (": " if n else "")
        message += ", ".join(drifted)
        if personal:
            message += f" (not compared, personal data: {', '.join(personal)})"
    return DriftReport(
        usecase=spec.name,
        model_version=model_version,
        n_reference=n_ref,
        n_live=n_live,
        features=tuple(features),
        score_drift=score,
        label_drift=label,
        n_drifted=sum(f.drifted for f in features),
        tier=tier,
        level=TIER_LEVELS[tier],
        computed_at=computed_at or datetime.now(UTC),
        message=message,
        params=rule,
    )


def histograms(
    spec: UseCase, reference: pd.DataFrame, live: pd.DataFrame, *, params: DriftParams | None = None
) -> dict[str, Histogram]:
    """Per-feature reference and live counts over the bins the drift tests use.

    Args:
        spec: The use case.
        reference: The reference sample.
        live: The live window (a feature column it lacks is entirely missing).
        params: Binning (``bins``, ``max_categories``); default from ``spec.monitoring``.

    Returns:
        One histogram per feature, by name, in spec order.
    """
    rule = params or DriftParams.from_spec(spec.monitoring)
    out: dict[str, Histogram] = {}
    for feature in (f for f in spec.features if not f.pii):  # pseudonymised: not compared
        ref_raw = reference[feature.name] if feature.name in reference.columns else []
        cur_raw = live[feature.name] if feature.name in live.columns else [None] * len(live)
        kind = kind_of(feature)
        if kind.drift == "numeric":
            ref, n_ref = numeric_values(ref_raw)
            cur, n_cur = numeric_values(cur_raw)
            counts, present = bin_numeric(ref, cur, rule.bins), (ref.size, cur.size)
        else:
            ref_cat, n_ref = category_values(ref_raw, boolean=kind.drift_booleans)
            cur_cat, n_cur = category_values(cur_raw, boolean=kind.drift_booleans)
            counts = bin_categories(ref_cat, cur_cat, rule.max_categories)
            present = (len(ref_cat), len(cur_cat))
        out[feature.name] = dataclasses.replace(
            counts, missing_reference=n_ref - present[0], missing_live=n_cur - present[1]
        )
    return out


# --- internals -----------------------------------------------------------------------


def _feature(
    name: str,
    kind: str,
    sample: Sample,
    tested: bool,
    ref_counts: tuple[int, int],
    cur_counts: tuple[int, int],
    params: DriftParams,
    changed: str,
) -> FeatureDrift:
    """Run the kind's tests (when ``tested``) and apply the drift rule and missing rates.

    ``ref_counts`` and ``cur_counts`` are (present values, values given); ``changed``
    describes a change of constant (rule 3), empty otherwise.
    """
    (ref_present, ref_total), (cur_present, cur_total) = ref_counts, cur_counts
    ref_missing, cur_missing = ref_total - ref_present, cur_total - cur_present
    rate_ref = ref_missing / ref_total if ref_total else 0.0
    rate_cur = cur_missing / cur_total if cur_total else 0.0
    missing_p = missing_test(ref_missing, ref_total, cur_missing, cur_total).p_value
    missing_drift = missing_p < params.p_value and (
        abs(rate_cur - rate_ref) >= params.missing_rate_delta
    )
    chosen = [DRIFT_TESTS[n] for n in params.tests_for(kind)]
    (hypothesis,) = [t for t in chosen if t.test is not None]
    effects = [t for t in chosen if t.effect is not None]
    statistics: dict[str, float | None] = dict.fromkeys(
        ["statistic", "p_value", *(t.name for t in effects)]
    )
    shifted = False
    if not tested:
        low = min(ref_present, cur_present)
        notes = [f"distribution not tested ({low} present values, {params.min_rows} needed)"]
    else:
        assert hypothesis.test is not None
        result = hypothesis.test(sample)
        statistics |= {"statistic": result.statistic, "p_value": result.p_value}
        statistics |= {t.name: t.effect(sample) for t in effects if t.effect is not None}
        significant = result.p_value < params.p_value
        limits = {t.name: params.threshold(t.name) for t in effects}
        decisive = {n: limit for n, limit in limits.items() if limit is not None}
        # with no effect size that has a threshold, a significant change is large enough
        large = not decisive or any(
            (statistics[n] or 0.0) >= limit for n, limit in decisive.items()
        )
        shifted = bool(changed) or (significant and large)
        verdict = changed or (
            "distribution shifted"
            if shifted
            else "significant but small shift"
            if significant
            else "no distribution drift"
        )
        figures = [f"{hypothesis.label} p={result.p_value:.3g}"]
        figures += [f"{t.label} {statistics[t.name]:{t.digits}}" for t in effects]
        notes = [f"{verdict} ({', '.join(figures)})"]
    if missing_drift:
        notes.append(f"missing rate {rate_ref:.1%} -> {rate_cur:.1%} (p={missing_p:.3g})")
    if sample.bins.n_unseen:
        bins = sample.bins
        notes.append(f"{bins.n_unseen} live values in {len(bins.unseen)} unseen categories")
    return FeatureDrift(
        name=name,
        kind=kind,
        test=hypothesis.name if tested else "none",
        statistics=statistics,
        n_reference=ref_present,
        n_live=cur_present,
        missing_rate_ref=rate_ref,
        missing_rate_live=rate_cur,
        missing_p_value=missing_p,
        missing_drift=missing_drift,
        unseen_categories=sample.bins.unseen[:_MAX_LISTED_UNSEEN],
        n_unseen=sample.bins.n_unseen,
        distribution_drift=shifted,
        drifted=shifted or missing_drift,
        reason="; ".join(notes),
    )
