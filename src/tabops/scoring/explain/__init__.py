"""Per-prediction explanations: each feature's contribution to the model's output.

Exact methods only: linear terms for logistic regression, TreeSHAP for tree models; any
other family raises :class:`~tabops.errors.ExplanationNotSupportedError`. See
``docs/explanations.md``.
"""

from tabops.scoring.explain.explainer import (
    ADDITIVITY_TOLERANCE,
    Explainer,
    load_explainer,
    should_explain,
)
from tabops.scoring.explain.explanation import Explanation
from tabops.scoring.explain.overview import FeatureInfluence, GlobalView, global_view

__all__ = [
    "ADDITIVITY_TOLERANCE",
    "Explainer",
    "Explanation",
    "FeatureInfluence",
    "GlobalView",
    "global_view",
    "load_explainer",
    "should_explain",
]
