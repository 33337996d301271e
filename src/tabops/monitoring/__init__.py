"""Monitoring: drift of live inputs, scores and labels against a model's reference."""

from tabops.monitoring.drift import (
    TIER_LEVELS,
    DriftParams,
    DriftReport,
    FeatureDrift,
    Tier,
    categorical_drift,
    compute_drift,
    histograms,
    numeric_drift,
)
from tabops.monitoring.stats import (
    PSI_EPSILON,
    Histogram,
    TestResult,
    chi2_test,
    js_distance,
    ks_test,
    missing_test,
    psi,
    psi_from_counts,
)

__all__ = [
    "PSI_EPSILON",
    "TIER_LEVELS",
    "DriftParams",
    "DriftReport",
    "FeatureDrift",
    "Histogram",
    "TestResult",
    "Tier",
    "categorical_drift",
    "chi2_test",
    "compute_drift",
    "histograms",
    "js_distance",
    "ks_test",
    "missing_test",
    "numeric_drift",
    "psi",
    "psi_from_counts",
]
