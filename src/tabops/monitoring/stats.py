"""Two-sample statistics for drift: values, bins, PSI, Jensen-Shannon and Wasserstein
distances, KS, chi-square.

Everything here works on arrays of present (non-missing, finite) values or on counts, and
is defined for the degenerate inputs that live traffic produces: constant samples, empty
bins, categories that one side never saw. No function returns NaN and none makes scipy
warn (the test suite turns warnings into errors).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

__all__ = [
    "OTHER",
    "PSI_EPSILON",
    "UNSEEN",
    "Histogram",
    "TestResult",
    "bin_categories",
    "bin_counts",
    "bin_labels",
    "bin_numeric",
    "category_values",
    "chi2_test",
    "js_distance",
    "ks_test",
    "missing_test",
    "numeric_values",
    "psi",
    "psi_from_counts",
    "quantile_edges",
    "wasserstein",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PSI_EPSILON = 1e-4
"""Floor of a bin's share in PSI: an empty bin counts as 0.01% so PSI stays finite while
a bin (or category) that only one side fills still weighs heavily."""

# Above this many pairs the exact KS distribution is slow and may fail (scipy then warns
# and falls back); the asymptotic one is accurate at these sizes.
_KS_EXACT_MAX_PAIRS = 1_000_000


OTHER = "(other)"
"""Bin of the reference categories not named (beyond the most frequent, or too rare)."""
UNSEEN = "(unseen)"
"""Bin of the live categories the reference never saw."""


class TestResult(NamedTuple):
    """A test's statistic and p-value (always finite)."""

    statistic: float
    p_value: float


def _as_float_array(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def quantile_edges(reference: npt.ArrayLike, bins: int = 10) -> FloatArray:
    """Bin edges at the reference's quantiles, its minimum and maximum included.

    Quantiles are taken at observed values (no interpolation), so integer features get
    integer edges and extreme values cannot overflow; repeated quantiles collapse, so a
    constant reference gives one edge.

    Args:
        reference: Reference values (non-finite values are ignored).
        bins: Number of quantile bins wanted (fewer when values repeat).

    Returns:
        The sorted, unique edges.

    Raises:
        ValueError: the reference has no finite value, or ``bins < 1``.
    """
    values = _as_float_array(reference)
    if values.size == 0:
        raise ValueError("quantile_edges needs at least one finite reference value")
    if bins < 1:
        raise ValueError("bins must be at least 1")
    levels = np.linspace(0.0, 1.0, bins + 1)
    return np.unique(np.quantile(values, levels, method="inverted_cdf"))


def bin_counts(values: npt.ArrayLike, edges: FloatArray) -> IntArray:
    """Count values in the bins defined by :func:`quantile_edges`.

    The bins are: below the reference minimum, ``[e0, e1)``, ..., ``[e(m-2), e(m-1)]``,
    above the reference maximum (for a single edge ``c``: ``< c``, ``= c``, ``> c``). The
    two outer bins are empty for the reference itself and catch live values out of its
    range, which is drift that quantile bins alone would hide.

    Args:
        values: Values to count (non-finite values are ignored).
        edges: Edges from :func:`quantile_edges`.

    Returns:
        One count per bin, ``max(len(edges) - 1, 1) + 2`` bins.
    """
    x = _as_float_array(values)
    n_inner = max(edges.size - 1, 1)
    position = np.searchsorted(edges, x, side="right")
    # The maximum lands after the last edge; fold it into the last inner bin (or the
    # "= c" bin of a constant reference) so that only values above it count as above.
    bucket = np.where(
        x < edges[0], 0, np.where(x > edges[-1], n_inner + 1, np.minimum(position, n_inner))
    )
    return np.bincount(bucket, minlength=n_inner + 2).astype(np.int64)


def bin_labels(edges: FloatArray) -> list[str]:
    """Human labels of the bins of :func:`bin_counts`, in the same order."""
    e = [f"{v:g}" for v in edges.tolist()]
    if len(e) == 1:
        return [f"< {e[0]}", f"= {e[0]}", f"> {e[0]}"]
    inner = [f"[{a}, {b})" for a, b in zip(e[:-2], e[1:-1], strict=True)]
    return [f"< {e[0]}", *inner, f"[{e[-2]}, {e[-1]}]", f"> {e[-1]}"]


def psi_from_counts(
    reference_counts: Sequence[int] | npt.NDArray[np.integer],
    live_counts: Sequence[int] | npt.NDArray[np.integer],
    epsilon: float = PSI_EPSILON,
) -> float:
    """Population stability index of two histograms over the same bins.

    ``sum((q - p) * ln(q / p))`` over bins, with shares floored at ``epsilon``. Each term
    is >= 0 whatever the floor, so PSI >= 0, and identical histograms give exactly 0.

    Args:
        reference_counts: Reference count per bin.
        live_counts: Live count per bin (same bins).
        epsilon: Floor of a share, so that empty bins keep PSI finite.

    Returns:
        The PSI (0 when either side is empty: there is nothing to compare).
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    live = np.asarray(live_counts, dtype=np.float64)
    if ref.sum() <= 0 or live.sum() <= 0:
        return 0.0
    p = np.maximum(ref / ref.sum(), epsilon)
    q = np.maximum(live / live.sum(), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def psi(
    reference: npt.ArrayLike, live: npt.ArrayLike, *, bins: int = 10, epsilon: float = PSI_EPSILON
) -> float:
    """Population stability index of two numeric samples, binned at reference quantiles.

    Args:
        reference: Reference values (non-finite values are ignored).
        live: Live values (non-finite values are ignored).
        bins: Number of quantile bins of the reference.
        epsilon: Floor of a bin's share.

    Returns:
        The PSI (>= 0; 0 when ``live`` is ``reference``).

    Raises:
        ValueError: the reference has no finite value.
    """
    edges = quantile_edges(reference, bins)
    return psi_from_counts(bin_counts(reference, edges), bin_counts(live, edges), epsilon)


def js_distance(
    reference_counts: Sequence[int] | npt.NDArray[np.integer],
    live_counts: Sequence[int] | npt.NDArray[np.integer],
) -> float:
    """Jensen-Shannon distance (base 2, so within [0, 1]) of two histograms.

    Args:
        reference_counts: Reference count per bin.
        live_counts: Live count per bin (same bins).

    Returns:
        The distance (0 when either side is empty).
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    live = np.asarray(live_counts, dtype=np.float64)
    if ref.sum() <= 0 or live.sum() <= 0:
        return 0.0
    # For nearly equal histograms rounding can leave the divergence a hair below zero and
    # its square root NaN; that is a distance of 0, not an error worth a warning.
    with np.errstate(invalid="ignore"):
        value = float(jensenshannon(ref, live, base=2.0))
    return min(value, 1.0) if np.isfinite(value) and value > 0 else 0.0


def wasserstein(reference: npt.ArrayLike, live: npt.ArrayLike) -> float:
    """Wasserstein-1 (earth mover's) distance of two numeric samples.

    The mean distance values must travel to turn one sample's distribution into the
    other's, in the feature's own unit: a shift of every value by ``c`` gives ``|c|``.
    Unlike PSI it sees how far values moved, not only which bins they left, but it has
    no unit-free scale, so a threshold for it is set per use case.

    Args:
        reference: Reference values (non-finite values are ignored).
        live: Live values (non-finite values are ignored).

    Returns:
        The distance (>= 0; 0 when either side is empty).
    """
    ref = _as_float_array(reference)
    cur = _as_float_array(live)
    if ref.size == 0 or cur.size == 0:
        return 0.0
    return max(float(wasserstein_distance(ref, cur)), 0.0)


def ks_test(reference: npt.ArrayLike, live: npt.ArrayLike) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test.

    Args:
        reference: Reference values (non-finite values are ignored).
        live: Live values (non-finite values are ignored).

    Returns:
        The KS statistic and p-value; identical constant samples give ``(0, 1)``.

    Raises:
        ValueError: a side has no finite value.
    """
    ref = _as_float_array(reference)
    cur = _as_float_array(live)
    if ref.size == 0 or cur.size == 0:
        raise ValueError("ks_test needs at least one finite value on each side")
    method = "exact" if ref.size * cur.size <= _KS_EXACT_MAX_PAIRS else "asymp"
    with warnings.catch_warnings():
        # scipy falls back to the asymptotic p-value when the exact one does not converge
        # (heavy ties); that fallback is what we want, and its warning is not a problem
        warnings.filterwarnings(
            "ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning
        )
        result = ks_2samp(ref, cur, method=method)
    return TestResult(float(result.statistic), _finite_p(result.pvalue))


def chi2_test(
    reference_counts: Sequence[int] | npt.NDArray[np.integer],
    live_counts: Sequence[int] | npt.NDArray[np.integer],
) -> TestResult:
    """Chi-square test of homogeneity on the 2 x k table of reference and live counts.

    Categories empty on both sides are dropped (they would make an expected count 0).
    With fewer than two categories left, or an empty side, the samples cannot differ in
    mix: the result is ``(0, 1)``.

    Args:
        reference_counts: Reference count per category.
        live_counts: Live count per category (same categories).

    Returns:
        The chi-square statistic and p-value.
    """
    table = np.vstack(
        [np.asarray(reference_counts, dtype=np.float64), np.asarray(live_counts, dtype=np.float64)]
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return TestResult(0.0, 1.0)
    result = chi2_contingency(table)
    return TestResult(float(result.statistic), _finite_p(result.pvalue))


def missing_test(
    ref_missing: int, ref_total: int, live_missing: int, live_total: int
) -> TestResult:
    """Chi-square test that the missing rate is the same in reference and live.

    Args:
        ref_missing: Missing values in the reference.
        ref_total: Reference rows.
        live_missing: Missing values in the live window.
        live_total: Live rows.

    Returns:
        The statistic and p-value; ``(0, 1)`` when both rates are 0 or both are 1.
    """
    return chi2_test(
        [ref_missing, ref_total - ref_missing], [live_missing, live_total - live_missing]
    )


def _finite_p(value: float) -> float:
    p = float(value)
    # scipy can return NaN for fully degenerate input; no evidence of a difference.
    return min(max(p, 0.0), 1.0) if np.isfinite(p) else 1.0


# --- values and shared bins ----------------------------------------------------------


def numeric_values(values: Any) -> tuple[FloatArray, int]:
    """Present values of a numeric column, and how many values were given.

    Args:
        values: Any 1-d array-like; None, NaN, infinities and non-numbers are missing.

    Returns:
        The finite values as floats, and the number of values (present or missing).
    """
    series = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    array = np.asarray(series, dtype=np.float64)
    return array[np.isfinite(array)], int(array.size)


def category_values(values: Any, *, boolean: bool = False) -> tuple[list[str], int]:
    """Present values of a categorical column as labels, and how many values were given.

    Args:
        values: Any 1-d array-like; None and NaN are missing.
        boolean: Read booleans, numbers and ``"true"``/``"false"`` as ``"True"``/``"False"``.

    Returns:
        The present values as strings, and the number of values (present or missing).
    """
    series = pd.Series(values, dtype=object)
    present = series[series.notna()]
    label = _bool_label if boolean else str
    return [label(v) for v in present], len(series)


def _bool_label(value: Any) -> str:
    # Booleans arrive as bool from parquet and JSON, but as text from CSV-fed tables.
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return "True" if value.strip().lower() == "true" else "False"
    if isinstance(value, bool | np.bool_ | int | np.integer):
        return str(bool(value))
    # training frames hold booleans as 0.0/1.0 floats (the reference sample comes from them)
    if isinstance(value, float | np.floating) and value in (0.0, 1.0):
        return str(bool(value))
    return str(value)


@dataclass(frozen=True)
class Histogram:
    """Reference and live counts over the same bins: numeric ranges or categories."""

    labels: tuple[str, ...]
    edges: tuple[float, ...]
    """Numeric edges (see :func:`bin_counts`); empty for categories."""
    reference: tuple[int, ...]
    live: tuple[int, ...]
    unseen: tuple[str, ...] = ()
    """Live categories absent from the reference, most frequent first."""
    n_unseen: int = 0
    """Live values in those categories."""
    missing_reference: int = 0
    missing_live: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The histogram as JSON-ready builtins."""
        return asdict(self)


def bin_numeric(reference: FloatArray, live: FloatArray, bins: int = 10) -> Histogram:
    """Count both samples in bins at the reference's quantiles.

    Args:
        reference: Present reference values.
        live: Present live values.
        bins: Number of quantile bins.

    Returns:
        The counts (no bins when the reference is empty).
    """
    if reference.size == 0:
        return Histogram((), (), (), ())
    edges = quantile_edges(reference, bins)
    return Histogram(
        tuple(bin_labels(edges)),
        tuple(edges.tolist()),
        tuple(bin_counts(reference, edges).tolist()),
        tuple(bin_counts(live, edges).tolist()),
    )


def bin_categories(
    reference: list[str], live: list[str], max_categories: int = 20, min_share: float = 0.01
) -> Histogram:
    """Count both samples per category: named reference categories, OTHER, UNSEEN.

    When the reference has more than ``max_categories`` categories, only the most
    frequent ones with at least ``min_share`` of it are named and the rest pooled in
    OTHER: chi-square stays off hundreds of near-empty cells, and a flat long tail does
    not get "top" categories that are only the luckiest in the sample.

    Live categories absent from the reference are pooled in UNSEEN. Its reference count
    is 0, so PSI gives it the epsilon share and a new category weighs heavily, except
    for a capped long tail: there the reference's categories seen once move from OTHER
    to UNSEEN, because (Good-Turing) they estimate the share of the population its sample
    missed. A reference of 1,000 rows misses many rare categories that live traffic then
    shows; that is sampling, not drift.

    Args:
        reference: Present reference labels.
        live: Present live labels.
        max_categories: Most reference categories named.
        min_share: Smallest reference share of a named category, when capping.

    Returns:
        The counts, with the unseen categories.
    """
    ref_counts, cur_counts = Counter(reference), Counter(live)
    # Most frequent first, ties by name, so that reports are reproducible.
    ranked = sorted(ref_counts, key=lambda c: (-ref_counts[c], c))
    top, singletons = ranked, 0
    if len(ranked) > max_categories:
        top = [c for c in ranked[:max_categories] if ref_counts[c] >= min_share * len(reference)]
        singletons = sum(1 for c in ranked[len(top) :] if ref_counts[c] == 1)
    rest = ranked[len(top) :]
    unseen = {c: n for c, n in cur_counts.items() if c not in ref_counts}
    rows = [(c, ref_counts[c], cur_counts[c]) for c in top]
    pooled = [
        (OTHER, sum(ref_counts[c] for c in rest) - singletons, sum(cur_counts[c] for c in rest)),
        (UNSEEN, singletons, sum(unseen.values())),
    ]
    rows += [r for r in pooled if r[1] or r[2]]
    return Histogram(
        labels=tuple(r[0] for r in rows),
        edges=(),
        reference=tuple(r[1] for r in rows),
        live=tuple(r[2] for r in rows),
        unseen=tuple(sorted(unseen, key=lambda c: (-unseen[c], c))),
        n_unseen=sum(unseen.values()),
    )
