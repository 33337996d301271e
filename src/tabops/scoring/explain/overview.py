"""The global view: which features drive live predictions, beside the training importances.

Live: the mean absolute contribution of each feature over a set of explanations (a window
of audited predictions). Training: the permutation importance logged with the version
(``feature_importance.csv``). The two are in different units (the model's output scale,
and a drop in the hold-out metric), so they are compared by rank: ``rank_correlation`` is
Spearman's rho between them over the features, and ``shift = (1 - rho) / 2`` is 0 when the
live ranking is the training one, 0.5 when unrelated and 1 when reversed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

from tabops.scoring.explain.explanation import Explanation

__all__ = ["FeatureInfluence", "GlobalView", "global_view"]


@dataclass(frozen=True)
class FeatureInfluence:
    """One feature's live influence beside its training importance."""

    feature: str
    mean_abs_contribution: float
    share: float
    """Its fraction of the summed mean absolute contributions."""
    live_rank: float
    """1 for the most influential feature live (ties share the average rank)."""
    training_importance: float | None
    training_rank: float | None


@dataclass(frozen=True)
class GlobalView:
    """Mean absolute contributions over a set of explanations, beside training importances."""

    explanations: int
    """Explanations averaged (those on the newest explanation's scale)."""
    left_out: int
    """Explanations left out because they are on another scale (another model family)."""
    scale: str | None
    features: list[FeatureInfluence]
    """Most influential live first."""
    rank_correlation: float | None
    """Spearman's rho between live influence and training importance (None: undefined)."""
    shift: float | None
    """``(1 - rho) / 2``: 0 same ranking, 1 reversed (None: undefined)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "explanations": self.explanations,
            "left_out": self.left_out,
            "scale": self.scale,
            "rank_correlation": self.rank_correlation,
            "shift": self.shift,
            "features": [vars(f).copy() for f in self.features],
        }


def _importance_map(importances: pd.DataFrame | Mapping[str, float] | None) -> dict[str, float]:
    if importances is None:
        return {}
    if isinstance(importances, pd.DataFrame):
        return dict(
            zip(
                importances["feature"].astype(str),
                importances["importance_mean"].astype(float),
                strict=True,
            )
        )
    return {str(k): float(v) for k, v in importances.items()}


def _ranks(values: Sequence[float]) -> list[float]:
    return [float(r) for r in rankdata([-v for v in values], method="average")]


def global_view(
    explanations: Sequence[Explanation | Mapping[str, Any]],
    features: Sequence[str],
    importances: pd.DataFrame | Mapping[str, float] | None = None,
) -> GlobalView:
    """Mean absolute contribution per feature, beside the training importances.

    Args:
        explanations: Explanations, or their :meth:`Explanation.as_dict` form (as audited),
            oldest first. Only those on the newest one's scale are averaged.
        features: The spec's feature names (the features listed, in this order on ties).
        importances: The version's ``feature_importance.csv`` (columns ``feature``,
            ``importance_mean``) or a mapping feature -> importance; None for none.

    Returns:
        The view; with no explanations, every mean is 0 and the correlation undefined.
    """
    items = [e.as_dict() if isinstance(e, Explanation) else e for e in explanations]
    scale = str(items[-1]["scale"]) if items else None
    kept = [e for e in items if e["scale"] == scale]
    sums: dict[str, float] = dict.fromkeys(features, 0.0)
    for e in kept:
        for name, value in e["contributions"].items():
            if name in sums:
                sums[name] += abs(float(value))
    means = [sums[name] / len(kept) if kept else 0.0 for name in features]
    total = sum(means)
    training = _importance_map(importances)
    train_values = [training.get(name) for name in features]
    known = [i for i, v in enumerate(train_values) if v is not None]
    train_ranks: dict[int, float] = {}
    if known:
        ranked = _ranks([float(train_values[i] or 0.0) for i in known])
        train_ranks = dict(zip(known, ranked, strict=True))
    rho = _spearman(
        [means[i] for i in known], [float(train_values[i] or 0.0) for i in known], bool(kept)
    )
    live_ranks = _ranks(means)
    rows = [
        FeatureInfluence(
            feature=name,
            mean_abs_contribution=means[i],
            share=means[i] / total if total > 0 else 0.0,
            live_rank=live_ranks[i],
            training_importance=train_values[i],
            training_rank=train_ranks.get(i),
        )
        for i, name in enumerate(features)
    ]
    rows.sort(key=lambda r: r.live_rank)
    return GlobalView(
        explanations=len(kept),
        left_out=len(items) - len(kept),
        scale=scale,
        features=rows,
        rank_correlation=rho,
        shift=None if rho is None else (1.0 - rho) / 2.0,
    )


def _spearman(live: list[float], training: list[float], any_live: bool) -> float | None:
    """Spearman's rho, or None where it is undefined (fewer than two features, or a
    constant side: no explanations yet, or importances all equal)."""
    if not any_live or len(live) < 2 or np.ptp(live) == 0 or np.ptp(training) == 0:
        return None
    rho = float(spearmanr(live, training).statistic)
    return rho if np.isfinite(rho) else None
