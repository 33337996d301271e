"""Reasons in plain words, from the spec: "Income: 129 currency units per month (low)
raised the chance that Status is bad"."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from tabops.scoring.explain.explanation import Scale
from tabops.scoring.records import Record
from tabops.spec.schema import Feature, UseCase

__all__ = ["ReasonWriter", "title"]

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def title(name: str) -> str:
    """A field name in words: ``MonthlyIncome`` -> "Monthly income", ``prior_records`` ->
    "Prior records"; acronyms (``G3``, ``ID``) are kept."""
    words = _CAMEL.sub(" ", name).replace("_", " ").split()
    text = " ".join(
        w if len(w) > 1 and w.isupper() or any(c.isdigit() for c in w) else w.lower() for w in words
    )
    return text[:1].upper() + text[1:]


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".")


class ReasonWriter:
    """Writes the top contributions of an explanation as sentences.

    A feature is named by its spec ``title``, or its name in words. A number is called low
    below the background sample's first quartile, high above its third, typical in between;
    a category is named by its value; a gap is "not given".
    """

    def __init__(self, spec: UseCase, background: pd.DataFrame) -> None:
        """Learn the quartiles of each number from the background sample.

        Args:
            spec: The use case.
            background: Rows holding the feature columns (the model's reference sample).
        """
        self.spec = spec
        self._quartiles: dict[str, tuple[float, float]] = {}
        for feature in spec.features_of("number", "integer"):
            if feature.name not in background:
                continue
            values = pd.to_numeric(background[feature.name], errors="coerce").dropna()
            if not values.empty:
                low, high = values.quantile([0.25, 0.75]).tolist()
                self._quartiles[feature.name] = (float(low), float(high))
        self._target = title(spec.target.name)
        self._titles = {f.name: f.title or title(f.name) for f in spec.features}
        self._features = {f.name: f for f in spec.features}
        self._effects: dict[tuple[Scale, str, bool], str] = {}
        # every description that does not depend on a number, written once
        self._fixed: dict[str, dict[Any, str]] = {}
        for f in spec.features:
            name = self._titles[f.name]
            words: dict[Any, str] = {None: f"{name}: not given"}
            if f.type == "boolean":
                words |= {True: f"{name}: yes", False: f"{name}: no"}
            for value in f.values or []:
                words[value] = f"{name}: {value}"
            self._fixed[f.name] = words

    def level(self, name: str, value: float) -> str | None:
        """``low``, ``typical`` or ``high`` against the background's quartiles."""
        if name not in self._quartiles:
            return None
        low, high = self._quartiles[name]
        return "low" if value < low else "high" if value > high else "typical"

    def describe(self, feature: Feature, value: Any) -> str:
        """A feature's value in words: its title, value, unit and level."""
        fixed = self._fixed[feature.name].get(value)
        if fixed is not None:
            return fixed
        name = self._titles[feature.name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"{name}: not given"
        if feature.type == "boolean":
            return f"{name}: {'yes' if value else 'no'}"
        if feature.type == "category":
            return f"{name}: {value}"
        text = _number(float(value)) + (f" {feature.unit}" if feature.unit else "")
        level = self.level(feature.name, float(value))
        return f"{name}: {text}" + (f" ({level})" if level else "")

    def _effect(self, scale: Scale, output_class: str, up: bool) -> str:
        key = (scale, output_class, up)
        effect = self._effects.get(key)
        if effect is None:
            verb = "raised" if up else "lowered"
            if scale == "class_logit":
                effect = f"{verb} the score of {self._target} {output_class}"
            else:
                effect = f"{verb} the chance that {self._target} is {output_class}"
            self._effects[key] = effect
        return effect

    def reasons(
        self,
        record: Record,
        contributions: dict[str, float],
        output_class: str,
        scale: Scale,
        k: int,
    ) -> list[str]:
        """The ``k`` largest contributions as sentences, largest first; features that
        contributed nothing are never a reason.

        Args:
            record: The validated record explained.
            contributions: Per feature, as in :class:`Explanation`.
            output_class: The class explained.
            scale: The explanation's scale (probability and log-odds speak of chances).
            k: At most this many reasons.
        """
        ranked = sorted(contributions.items(), key=lambda kv: -abs(kv[1]))
        return self.sentences(record, ranked[:k], output_class, scale)

    def sentences(
        self, record: Record, ranked: list[tuple[str, float]], output_class: str, scale: Scale
    ) -> list[str]:
        """:meth:`reasons` for contributions already ranked and cut to ``k``."""
        out = []
        for name, value in ranked:
            if value == 0.0 or not math.isfinite(value):
                continue
            effect = self._effect(scale, output_class, value > 0)
            out.append(f"{self.describe(self._features[name], record.get(name))} {effect}")
        return out
