"""API keys in the database: only a hash of each secret is stored.

A key reads ``tabops_<prefix>_<secret>``. The prefix (public, unique) finds the row; the
secret is checked against its SHA-256 in constant time. Keys are 192-bit random, so a
plain hash is safe here (a slow password hash would only slow every request down).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from tabops.errors import KeyExistsError
from tabops.store.schema import api_keys

__all__ = [
    "ROLES",
    "check_secret",
    "create_key",
    "delete_key",
    "find_key",
    "list_keys",
    "parse_key",
    "revoke_key",
    "sha256_hex",
]

ROLES = ("predict", "admin")
_KEY = re.compile(r"^tabops_([0-9a-f]{8})_([A-Za-z0-9_-]{20,})$")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_secret(secret: str, expected_sha256: str) -> bool:
    """Whether a secret matches a stored hash, in constant time."""
    return hmac.compare_digest(sha256_hex(secret), expected_sha256)


def parse_key(key: str) -> tuple[str, str] | None:
    """The prefix and secret of a well-formed key, or None."""
    match = _KEY.match(key)
    return (match.group(1), match.group(2)) if match else None


def create_key(engine: Engine, name: str, role: str) -> str:
    """Create a key and return it; it is shown once and never stored.

    Raises:
        KeyExistsError: the name is taken.
        ValueError: unknown role.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}': {' or '.join(ROLES)}")
    prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(24)
    row = {
        "id": str(uuid.uuid4()),
        "name": name,
        "prefix": prefix,
        "secret_sha256": sha256_hex(secret),
        "role": role,
        "created_at": datetime.now(UTC),
    }
    try:
        with engine.begin() as conn:
            conn.execute(api_keys.insert(), row)
    except IntegrityError:
        raise KeyExistsError(f"an API key named '{name}' exists already") from None
    return f"tabops_{prefix}_{secret}"


def find_key(engine: Engine, prefix: str) -> dict[str, Any] | None:
    """The active (not revoked) key with this prefix."""
    with engine.connect() as conn:
        row = conn.execute(
            select(api_keys).where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
        ).first()
    return dict(row._mapping) if row is not None else None


def list_keys(engine: Engine) -> list[dict[str, Any]]:
    """Every key's name, role, prefix and dates (never a secret)."""
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
    return [{k: v for k, v in r._mapping.items() if k != "secret_sha256"} for r in rows]


def revoke_key(engine: Engine, name: str) -> bool:
    """Revoke a key by name; False if there is no such active key."""
    with engine.begin() as conn:
        result = conn.execute(
            update(api_keys)
            .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    return bool(result.rowcount)


def delete_key(engine: Engine, name: str) -> None:
    """Remove a key's row altogether (to reuse its name)."""
    with engine.begin() as conn:
        conn.execute(delete(api_keys).where(api_keys.c.name == name))
