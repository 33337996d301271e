"""API keys and roles: ``predict`` may score and send feedback; ``admin`` may also train,
promote and read the audit trail.

Keys come from the key table (``tabops keys create``) or from the operator's settings
(``TABOPS_AUTH__ADMIN_KEY``, ``TABOPS_AUTH__PREDICT_KEY``). They are compared in constant
time and never logged. A key found in the table is remembered for ``auth.cache_s`` (30 s),
so a revoked key stops working within 30 s without a database read on every request.

During a database outage, a key that was valid when last checked keeps working (the
last-known-good answer, however old): predictions are then spooled, not refused. A key
never seen before cannot be checked then and gets 503 with ``Retry-After``. A key found
unknown is remembered as unknown for 5 s, so a flood of bad keys does not become a flood
of database queries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from tabops.config import AuthSettings
from tabops.errors import AuthUnavailableError
from tabops.store.keys import ROLES, check_secret, find_key, parse_key, sha256_hex
from tabops.store.spool import is_connection_error

__all__ = [
    "ROLE_RANK",
    "Authenticator",
    "Caller",
]

_UNKNOWN_S = 5.0
_UNKNOWN_MAX = 10_000
ROLE_RANK = {role: i for i, role in enumerate(ROLES)}
"""Roles by power: a key may do what any lower role may (the check is ``api.deps.require``)."""


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
        self._unknown: dict[str, float] = {}
        """Digests of keys found unknown, until when (a bounded negative cache)."""

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
        if self._unknown.get(digest, 0.0) > time.monotonic():
            return None
        try:
            row = find_key(self.engine, parsed[0])
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            if cached is not None:  # last known good: serve (and spool) through the outage
                # and ask the database again only in a few seconds, not on every request
                self._cache[digest] = (cached[0], time.monotonic() + _UNKNOWN_S)
                return cached[0]
            raise AuthUnavailableError(
                "the API key cannot be checked now (key store unreachable); retry shortly"
            ) from None
        if row is None or not check_secret(parsed[1], row["secret_sha256"]):
            self._cache.pop(digest, None)
            if len(self._unknown) >= _UNKNOWN_MAX:
                self._unknown.clear()
            self._unknown[digest] = time.monotonic() + _UNKNOWN_S
            return None
        caller = Caller(row["name"], row["role"])
        self._cache[digest] = (caller, time.monotonic() + self.settings.cache_s)
        return caller

    async def authenticate(self, key: str) -> Caller | None:
        """The caller a key belongs to, or None for an unknown or revoked key."""
        digest = sha256_hex(key)
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return await run_in_threadpool(self._lookup, key)
