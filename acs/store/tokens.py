"""Operator API tokens: created once, shown once, stored as a hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

ROLES = ("viewer", "operator", "admin")  # each role may do what the ones before it may
TOKEN_PREFIX = "acs_"


@dataclass(slots=True)
class ApiToken:
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(conn: asyncpg.Connection, name: str, role: str) -> str:
    """Create a token and return its only plain copy; ValueError if the name is taken."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name or len(name) > 100:
        raise ValueError("a token name has 1 to 100 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        await conn.execute(
            "INSERT INTO api_tokens (name, token_sha256, role) VALUES ($1, $2, $3)",
            name,
            _digest(token),
            role,
        )
    except asyncpg.UniqueViolationError:
        raise ValueError(f"a token named {name!r} exists already") from None
    return token


async def verify_token(conn: asyncpg.Connection, token: str) -> ApiToken | None:
    row = await conn.fetchrow(
        "UPDATE api_tokens SET last_used_at = now()"
        " WHERE token_sha256 = $1 AND revoked_at IS NULL"
        " RETURNING name, role, created_at, last_used_at, revoked_at",
        _digest(token),
    )
    return None if row is None else ApiToken(**dict(row))


async def list_tokens(conn: asyncpg.Connection) -> list[ApiToken]:
    rows = await conn.fetch(
        "SELECT name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY name"
    )
    return [ApiToken(**dict(r)) for r in rows]


async def revoke_token(conn: asyncpg.Connection, name: str) -> bool:
    done = await conn.fetchval(
        "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL"
        " RETURNING 1",
        name,
    )
    return done is not None


def role_allows(role: str, needed: str) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)
