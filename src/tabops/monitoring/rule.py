"""The drift rule's parts: the registry of drift tests, and the parameters choosing them.

A drift test is a hypothesis test (its p-value says whether a change is significant) or
an effect size (whether it is large). :data:`DRIFT_TESTS` lists every one by name; a
use case's ``monitoring`` section may name which run per kind (``drift_tests``) and set
thresholds of effect sizes (``thresholds``). :func:`tabops.monitoring.drift.compute_drift`
runs them, and the report, the metrics and the HTML page show what each run computed.
Adding a test is a function in :mod:`tabops.monitoring.stats` and an entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from tabops.errors import FieldIssue, SpecError
from tabops.monitoring.stats import (
    Histogram,
    TestResult,
    chi2_test,
    js_distance,
    ks_test,
    psi_from_counts,
    wasserstein,
)
from tabops.spec.features import KINDS, DriftKind
from tabops.spec.schema import MonitoringSpec

__all__ = [
    "DEFAULT_STATISTICS",
    "DRIFT_TESTS",
    "DriftParams",
    "DriftTest",
    "Sample",
    "drift_kind",
]


@dataclass(frozen=True)
class Sample:
    """One feature's present values on each side, and the bins both are counted in."""

    reference: Any
    """Present reference values: floats (numeric kinds) or labels (categorical kinds)."""
    live: Any
    bins: Histogram


@dataclass(frozen=True)
class DriftTest:
    """A statistic the drift rule can run: a hypothesis test or an effect size.

    A feature's distribution is tested by exactly one hypothesis test (its p-value says
    whether the change is significant) and any number of effect sizes (which say whether
    it is large: one at or above its threshold is enough; an effect size without a
    threshold is reported only).
    """

    name: str
    """The name the spec, the report's ``statistics`` and the metrics use."""
    label: str
    """How reports write it."""
    kinds: frozenset[DriftKind]
    """The drift kinds it applies to (``FeatureKind.drift``)."""
    test: Callable[[Sample], TestResult] | None = None
    """A hypothesis test: the statistic and p-value."""
    effect: Callable[[Sample], float] | None = None
    """An effect size."""
    default: bool = True
    """Runs when the spec does not name the tests of a kind."""
    digits: str = ".3f"
    """Format of its value in the report's reason."""


_NUMERIC: frozenset[DriftKind] = frozenset({"numeric"})
_BOTH: frozenset[DriftKind] = frozenset({"numeric", "categorical"})

DRIFT_TESTS: Mapping[str, DriftTest] = MappingProxyType(
    {
        t.name: t
        for t in (
            DriftTest("ks", "KS", _NUMERIC, test=lambda s: ks_test(s.reference, s.live)),
            DriftTest(
                "chi2",
                "chi-square",
                frozenset({"categorical"}),
                test=lambda s: chi2_test(s.bins.reference, s.bins.live),
            ),
            DriftTest(
                "psi", "PSI", _BOTH, effect=lambda s: psi_from_counts(s.bins.reference, s.bins.live)
            ),
            DriftTest(
                "js_distance",
                "JS",
                _BOTH,
                effect=lambda s: js_distance(s.bins.reference, s.bins.live),
            ),
            DriftTest(
                "wasserstein",
                "Wasserstein",
                _NUMERIC,
                effect=lambda s: wasserstein(s.reference, s.live),
                default=False,  # in the feature's unit: named in the spec, with a threshold
                digits=".4g",
            ),
        )
    }
)
"""Every drift test, by name, in report order."""

DEFAULT_STATISTICS = ("statistic", "p_value") + tuple(
    t.name for t in DRIFT_TESTS.values() if t.effect is not None and t.default
)
"""The statistics a feature's drift holds when the spec names no tests."""

_SCORE_KINDS: Mapping[str, DriftKind] = MappingProxyType(
    {"score": "numeric", "label": "categorical"}
)


def drift_kind(kind: str) -> DriftKind:
    """The drift kind of a feature type, of ``"score"`` (numeric) or ``"label"``."""
    return KINDS[kind].drift if kind in KINDS else _SCORE_KINDS.get(kind, "numeric")


def _defaults(drift: DriftKind) -> tuple[str, ...]:
    return tuple(n for n, t in DRIFT_TESTS.items() if t.default and drift in t.kinds)


def _check_tests(kind: str, names: Sequence[str]) -> tuple[str, ...]:
    """The tests the spec names for a kind, checked against the registry."""
    where = f"monitoring.drift_tests.{kind}"
    unknown = [n for n in names if n not in DRIFT_TESTS]
    if unknown:
        reason = f"unknown drift test {', '.join(unknown)}; one of {', '.join(DRIFT_TESTS)}"
        raise SpecError("invalid drift tests", [FieldIssue(where, reason)])
    drift = drift_kind(kind)
    misfit = [n for n in names if drift not in DRIFT_TESTS[n].kinds]
    if misfit:
        reason = f"{', '.join(misfit)} does not apply to {drift} values"
        raise SpecError("invalid drift tests", [FieldIssue(where, reason)])
    tests = [n for n in names if DRIFT_TESTS[n].test is not None]
    if len(tests) != 1:
        reason = f"name exactly one hypothesis test (one with a p-value), not {len(tests)}"
        raise SpecError("invalid drift tests", [FieldIssue(where, reason)])
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class DriftParams:
    """Tests, thresholds and binning of the drift rule (see :mod:`tabops.monitoring.drift`)."""

    p_value: float
    psi_threshold: float
    min_rows: int
    watch_at: int
    retrain_at: int
    js_threshold: float | None = None
    """Jensen-Shannon distance accepted as effect size besides PSI; None: PSI only."""
    missing_rate_delta: float = 0.05
    """Smallest absolute change of a missing rate that counts as drift."""
    bins: int = 10
    """Quantile bins of numeric features and scores."""
    max_categories: int = 20
    """Reference categories kept by name; the rest are pooled in "(other)"."""
    tests: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Drift tests by kind (a feature type, ``"score"`` or ``"label"``); a kind not
    listed runs the registry's defaults for its drift kind."""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Thresholds of further effect sizes, by test name (besides PSI and JS)."""

    def tests_for(self, kind: str) -> tuple[str, ...]:
        """The names of the tests run on values of this kind."""
        return self.tests.get(kind) or _defaults(drift_kind(kind))

    def threshold(self, name: str) -> float | None:
        """The threshold of an effect size; None: it is reported, never decisive."""
        if name in self.thresholds:
            return self.thresholds[name]
        if name == "psi":
            return self.psi_threshold
        return self.js_threshold if name == "js_distance" else None

    @classmethod
    def from_spec(cls, monitoring: MonitoringSpec | None = None) -> DriftParams:
        """The parameters of a use case's ``monitoring`` section (its defaults if None).

        Args:
            monitoring: The spec's monitoring settings.

        Returns:
            The parameters, with this module's defaults for fields the spec lacks.

        Raises:
            SpecError: the spec names a drift test that is unknown, does not apply to
                the kind, or not exactly one hypothesis test for a kind; or a threshold
                of something that is not an effect size.
        """
        m = monitoring or MonitoringSpec()
        tests: dict[str, tuple[str, ...]] = {
            kind: _check_tests(kind, names) for kind, names in m.drift_tests.items()
        }
        wrong = [n for n in m.thresholds if n not in DRIFT_TESTS or DRIFT_TESTS[n].effect is None]
        if wrong:
            effects = [n for n, t in DRIFT_TESTS.items() if t.effect is not None]
            reason = f"{', '.join(wrong)} is not an effect size; one of {', '.join(effects)}"
            raise SpecError(
                "invalid drift thresholds", [FieldIssue("monitoring.thresholds", reason)]
            )
        return cls(
            p_value=m.p_value,
            psi_threshold=m.psi_threshold,
            min_rows=m.min_rows,
            watch_at=m.watch_at,
            retrain_at=m.retrain_at,
            tests=tests,
            thresholds=dict(m.thresholds),
        )
