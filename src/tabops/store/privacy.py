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

__all__ = ["Pseudonymizer"]


class Pseudonymizer:
    """Replaces personal data with keyed hashes."""

    def __init__(self, key: str) -> None:
        self._key = key.encode("utf-8")

    def hash(self, value: Any) -> str:
        """The pseudonym of one value: ``h:`` and 32 hex characters of its HMAC."""
        digest = hmac.new(self._key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
        return f"h:{digest[:32]}"

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
