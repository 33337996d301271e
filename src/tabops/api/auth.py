"""API keys and roles: ``predict`` may score and send feedback; ``admin`` may also train,
promote and read the audit trail.

Keys come from the key table (``tabops keys create``) or from the operator's settings
(``TABOPS_AUTH__ADMIN_KEY``, ``TABOPS_AUTH__PREDICT_KEY``). They are compared in constant
time and never logged. A key found in the table is remembered for 30 s, so a revoked key
stops working within 30 s without a database read on every request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from tabops.config import AuthSettings
from tabops.errors import TabopsError
from tabops.store.keys import ROLES, check_secret, find_key, parse_key, sha256_hex

__all__ = ["ROLE_RANK", "Authenticator", "Caller", "NotAuthenticatedError", "PermissionDeniedError"]

_CACHE_S = 30.0
ROLE_RANK = {role: i for i, role in enumerate(ROLES)}
"""Roles by power: a key may do what any lower role may (the check is ``api.deps.require``)."""


class NotAuthenticatedError(TabopsError):
    """No API key, or one that is not valid."""

    code = "unauthorized"


class PermissionDeniedError(TabopsError):
    """The API key's role may not do this."""

    code = "forbidden"


@dataclass(frozen=True)
class Caller:
    """Who a request's API key belongs to."""

    name: str
    role: str


class Authenticator:
    """Resolves API keys to callers."""

    def __init__(self, settings: AuthSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._configured: list[tuple[str, Caller]] = []
        for role, secret in (("admin", settings.admin_key), ("predict", settings.predict_key)):
            if secret is not None and secret.get_secret_value():
                self._configured.append(
                    (sha256_hex(secret.get_secret_value()), Caller(f"{role}-key", role))
                )
        self._cache: dict[str, tuple[Caller, float]] = {}

    def _lookup(self, key: str) -> Caller | None:
        digest = sha256_hex(key)
        found = None
        for expected, caller in self._configured:  # compare with every one: constant time
            if check_secret(key, expected):
                found = caller
        if found is not None:
            return found
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        parsed = parse_key(key)
        if parsed is None:
            return None
        row = find_key(self.engine, parsed[0])
        if row is None or not check_secret(parsed[1], row["secret_sha256"]):
            return None
        caller = Caller(row["name"], row["role"])
        self._cache[digest] = (caller, time.monotonic() + _CACHE_S)
        return caller

    async def authenticate(self, key: str) -> Caller | None:
        """The caller a key belongs to, or None for an unknown or revoked key."""
        digest = sha256_hex(key)
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return await run_in_threadpool(self._lookup, key)
