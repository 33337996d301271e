"""Pseudonymisation of personal data in the audit log: a keyed hash (HMAC-SHA256).

The same value and key always give the same pseudonym, so audit rows can be joined by id
without the id being stored in clear; without the key, values cannot be recovered by
hashing guesses.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tabops.spec.schema import UseCase

__all__ = ["Pseudonymizer", "mask_example"]


def mask_example(spec: UseCase, record: dict[str, Any], reference: Any) -> dict[str, Any]:
    """A documentation example without anyone's personal data.

    The example shown in the public OpenAPI document and the UI is a real training row;
    its ``pii`` features are replaced by a value no person is identified by: the median of
    the reference sample (numbers, rounded within bounds) or the first allowed value
    (categories), so that the example still predicts.

    Args:
        spec: The use case.
        record: The example row, as the API takes it.
        reference: The reference sample (a DataFrame holding the feature columns).
    """
    out = dict(record)
    for feature in spec.features:
        if not feature.pii or feature.name not in out:
            continue
        if feature.type in ("number", "integer"):
            column = reference[feature.name].dropna() if feature.name in reference else None
            value = float(column.median()) if column is not None and len(column) else 0.0
            if feature.min is not None:
                value = max(value, feature.min)
            if feature.max is not None:
                value = min(value, feature.max)
            out[feature.name] = int(round(value)) if feature.type == "integer" else round(value)
        elif feature.type == "boolean":
            out[feature.name] = False
        elif feature.values:
            out[feature.name] = feature.values[0]
    return out


class Pseudonymizer:
    """Replaces personal data with keyed hashes."""

    def __init__(self, key: str) -> None:
        self._key = key.encode("utf-8")

    def hash(self, value: Any) -> str:
        """The pseudonym of one value: ``h:`` and 32 hex characters of its HMAC."""
        digest = hmac.new(self._key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
        return f"h:{digest[:32]}"

    def explanation(self, spec: UseCase, explanation: dict[str, Any]) -> dict[str, Any]:
        """An explanation (``Explanation.as_dict()``) whose reasons do not quote a ``pii``
        feature's value: such a reason keeps the feature and the direction only.

        The contributions are kept: with the model, the other features and the recorded
        probabilities they tell no more than the audit row already does.
        """
        pii = {f.name for f in spec.features if f.pii}
        if not pii:
            return explanation
        # the reasons are the largest non-zero contributions, largest first (stable order)
        ranked = sorted(explanation["contributions"].items(), key=lambda kv: -abs(kv[1]))
        named = [name for name, value in ranked if value != 0]
        reasons = []
        for name, sentence in zip(named, explanation["reasons"], strict=False):
            if name in pii:
                cut = max(sentence.rfind(" raised "), sentence.rfind(" lowered "))
                sentence = f"{name}: personal data{sentence[cut:] if cut > 0 else ''}"
            reasons.append(sentence)
        return {**explanation, "reasons": reasons}

    def features(self, spec: UseCase, record: dict[str, Any]) -> dict[str, Any]:
        """A record with every ``pii`` feature pseudonymised (missing values stay None)."""
        pii = [f.name for f in spec.features if f.pii]
        if not pii:
            return record
        out = dict(record)
        for name in pii:
            if out.get(name) is not None:
                out[name] = self.hash(out[name])
        return out
