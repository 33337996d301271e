"""API keys and roles: ``predict`` may score and send feedback; ``admin`` may also train,
promote and read the audit trail.

Keys come from the key table (``tabops keys create``) or from the operator's settings
(``TABOPS_AUTH__ADMIN_KEY``, ``TABOPS_AUTH__PREDICT_KEY``). They are compared in constant
time and never logged. A key found in the table is remembered for 30 s, so a revoked key
stops working within 30 s without a database read on every request.
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

__all__ = ["Authenticator", "Caller", "NotAuthenticatedError", "PermissionDeniedError", "require"]

_CACHE_S = 30.0
_RANK = {role: i for i, role in enumerate(ROLES)}


class NotAuthenticatedError(TabopsError):
    """No API key, or one that is not valid."""

    code = "unauthorized"


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
                request.state.caller = caller.name
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
        request.state.caller = found.name
        return found

    return dependency
