"""The explanation of one prediction: a base value plus one contribution per feature."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["METHODS", "SCALES", "Explanation", "Method", "Scale"]

Scale = Literal["log_odds", "class_logit", "probability"]
"""What the base value and the contributions add up to.

``log_odds``: the log-odds of the positive class (binary logistic regression and gradient
boosting). ``class_logit``: the raw score of one class before the softmax (multiclass
logistic regression and gradient boosting). ``probability``: the probability of one class
(forests and single trees, which average class fractions).
"""
SCALES: tuple[Scale, ...] = ("log_odds", "class_logit", "probability")

Method = Literal["linear", "tree_shap"]
"""How the contributions were computed: exact linear terms, or TreeSHAP (``shap``)."""
METHODS: tuple[Method, ...] = ("linear", "tree_shap")


@dataclass(frozen=True)
class Explanation:
    """Why one prediction came out as it did, in the spec's features.

    ``base_value + sum(contributions.values())`` is the model's raw output for the class
    ``output_class`` on the scale ``scale``: the explanation adds up exactly (within
    floating-point rounding, checked to 1e-6 when the explainer is built).
    """

    method: Method
    scale: Scale
    output_class: str
    """The class whose score is explained: the positive class (binary tasks) or the
    predicted class (multiclass)."""
    base_value: float
    """The output for an average input: see ``docs/explanations.md`` for each method."""
    contributions: dict[str, float]
    """Each spec feature's share of ``value - base_value``, in spec order; a one-hot
    category and a missing-value indicator are folded into their feature."""
    reasons: list[str] = field(default_factory=list)
    """The largest contributions in plain words, largest first."""

    @property
    def value(self) -> float:
        """The model's raw output the contributions add up to."""
        return self.base_value + math.fsum(self.contributions.values())

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` features of largest absolute contribution, largest first (ties in
        spec order)."""
        ranked = sorted(self.contributions.items(), key=lambda kv: -abs(kv[1]))
        return ranked[:k]

    def as_dict(self) -> dict[str, Any]:
        """The explanation as JSON-ready values (what the API returns and the audit keeps)."""
        return {
            "method": self.method,
            "scale": self.scale,
            "class": self.output_class,
            "base_value": self.base_value,
            "value": self.value,
            "contributions": dict(self.contributions),
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Explanation:
        """Read back :meth:`as_dict` (``value`` is derived, so it is not read)."""
        method, scale = data["method"], data["scale"]
        if method not in METHODS or scale not in SCALES:
            raise ValueError(f"unknown explanation method or scale: {method!r}, {scale!r}")
        return cls(
            method=method,
            scale=scale,
            output_class=str(data["class"]),
            base_value=float(data["base_value"]),
            contributions={str(k): float(v) for k, v in data["contributions"].items()},
            reasons=[str(r) for r in data.get("reasons", [])],
        )
