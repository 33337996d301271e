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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from tabops.config import AuthSettings
from tabops.errors import TabopsError
from tabops.store.keys import ROLES, check_secret, find_key, parse_key, sha256_hex
from tabops.store.spool import is_connection_error

__all__ = [
    "AuthUnavailableError",
    "Authenticator",
    "Caller",
    "NotAuthenticatedError",
    "PermissionDeniedError",
    "require",
]

_UNKNOWN_S = 5.0
_UNKNOWN_MAX = 10_000
_RANK = {role: i for i, role in enumerate(ROLES)}


class NotAuthenticatedError(TabopsError):
    """No API key, or one that is not valid."""

    code = "unauthorized"


class AuthUnavailableError(TabopsError):
    """A key could not be checked: the key table is unreachable and the key is not known
    from before the outage (503)."""

    code = "auth_unavailable"


class PermissionDeniedError(TabopsError):
    """The API key's role may not do this."""

    code = "forbidden"


@dataclass(frozen=True)
class Caller:
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


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")


def require(role: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency admitting callers whose key has at least ``role``.

    Raises (from the dependency):
        NotAuthenticatedError: 401, no key or an invalid one.
        PermissionDeniedError: 403, the key's role is too low.
    """
    needed = _RANK[role]

    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_header)],
    ) -> Caller:
        auth: Authenticator = request.app.state.auth
        key = bearer.credentials if bearer is not None else header
        if not key:
            if role == "predict" and auth.settings.anonymous_predict:
                caller = Caller("anonymous", "predict")
                request.state.caller, request.state.role = caller.name, caller.role
                return caller
            raise NotAuthenticatedError(
                "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`"
            )
        found = await auth.authenticate(key)
        if found is None:
            raise NotAuthenticatedError("invalid or revoked API key")
        if _RANK[found.role] < needed:
            raise PermissionDeniedError(
                f"this needs an {role} key; '{found.name}' is a {found.role} key"
            )
        request.state.caller, request.state.role = found.name, found.role
        return found

    return dependency
