"""Operators of the web UI and their browser sessions."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from acs.store.tokens import ROLES


@dataclass(slots=True)
class User:
    username: str
    role: str
    created_at: datetime
    password_changed_at: datetime
    last_login_at: datetime | None


@dataclass(slots=True)
class UiSession:
    username: str
    role: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime


_USER_COLUMNS = "username, role, created_at, password_changed_at, last_login_at"


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")


async def create_user(
    conn: asyncpg.Connection, username: str, password_hash: str, role: str
) -> User:
    """ValueError when the name is taken or the role unknown."""
    _check_role(role)
    try:
        row = await conn.fetchrow(
            f"INSERT INTO users (username, password_hash, role) VALUES ($1, $2, $3)"
            f" RETURNING {_USER_COLUMNS}",
            username,
            password_hash,
            role,
        )
    except asyncpg.UniqueViolationError:
        raise ValueError(f"a user named {username!r} exists already") from None
    return User(**dict(row))


async def get_user(conn: asyncpg.Connection, username: str) -> User | None:
    row = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1", username)
    return None if row is None else User(**dict(row))


async def password_hash_of(conn: asyncpg.Connection, username: str) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT password_hash FROM users WHERE username = $1", username
    )
    return value


async def list_users(conn: asyncpg.Connection) -> list[User]:
    rows = await conn.fetch(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")
    return [User(**dict(r)) for r in rows]


async def set_password(conn: asyncpg.Connection, username: str, password_hash: str) -> bool:
    """Store a new hash and end every session of the user (a changed password
    must lock out whoever knew the old one). False for an unknown user."""
    async with conn.transaction():
        done = await conn.fetchval(
            "UPDATE users SET password_hash = $2, password_changed_at = now()"
            " WHERE username = $1 RETURNING 1",
            username,
            password_hash,
        )
        await conn.execute("DELETE FROM ui_sessions WHERE username = $1", username)
    return done is not None


async def rehash(conn: asyncpg.Connection, username: str, old: str, new: str) -> None:
    """Replace a hash made with older costs, unless the password changed meanwhile."""
    await conn.execute(
        "UPDATE users SET password_hash = $3 WHERE username = $1 AND password_hash = $2",
        username,
        old,
        new,
    )


async def set_role(conn: asyncpg.Connection, username: str, role: str) -> User | None:
    """Takes effect on the user's open sessions at their next request."""
    _check_role(role)
    row = await conn.fetchrow(
        f"UPDATE users SET role = $2 WHERE username = $1 RETURNING {_USER_COLUMNS}",
        username,
        role,
    )
    return None if row is None else User(**dict(row))


async def delete_user(conn: asyncpg.Connection, username: str) -> bool:
    """Sessions go with the user (ON DELETE CASCADE)."""
    done = await conn.fetchval("DELETE FROM users WHERE username = $1 RETURNING 1", username)
    return done is not None


async def count_admins(conn: asyncpg.Connection) -> int:
    n: int = await conn.fetchval("SELECT count(*) FROM users WHERE role = 'admin'")
    return n


# --------------------------------------------------------------------------- sessions


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(
    conn: asyncpg.Connection, username: str, lifetime: timedelta
) -> tuple[str, UiSession]:
    """A new session; returns the cookie value (its only plain copy) and the session."""
    session_id = secrets.token_urlsafe(32)
    async with conn.transaction():
        row = await conn.fetchrow(
            "WITH s AS (INSERT INTO ui_sessions (id_sha256, username, csrf_token, expires_at)"
            " VALUES ($1, $2, $3, now() + $4) RETURNING *)"
            " SELECT s.username, u.role, s.csrf_token, s.created_at, s.expires_at"
            " FROM s JOIN users u USING (username)",
            _digest(session_id),
            username,
            secrets.token_urlsafe(32),
            lifetime,
        )
        await conn.execute("UPDATE users SET last_login_at = now() WHERE username = $1", username)
        # sweeping here keeps the table small without a scheduler job of its own
        await conn.execute("DELETE FROM ui_sessions WHERE expires_at < now() - interval '1 day'")
    return session_id, UiSession(**dict(row))


async def find_session(
    conn: asyncpg.Connection, session_id: str, idle: timedelta, max_age: timedelta
) -> UiSession | None:
    """The live session for a cookie value, its expiry slid forward by ``idle``
    (never past ``max_age`` from its creation); None when unknown or expired.

    The role is read from the user on every request, so a role change or a
    deleted user takes effect at once.
    """
    # writing last_seen on every request would make each page view several
    # writes; once a minute is precise enough for an idle timeout of hours
    row = await conn.fetchrow(
        """
        WITH live AS (
            SELECT s.id_sha256, s.username, u.role, s.csrf_token, s.created_at,
                   s.expires_at, s.last_seen_at
            FROM ui_sessions s JOIN users u USING (username)
            WHERE s.id_sha256 = $1 AND s.expires_at > now()
        ), touched AS (
            UPDATE ui_sessions s
            SET last_seen_at = now(), expires_at = least(now() + $2, s.created_at + $3)
            FROM live
            WHERE s.id_sha256 = live.id_sha256 AND live.last_seen_at < now() - interval '1 minute'
            RETURNING s.expires_at
        )
        SELECT * FROM (
            SELECT username, role, csrf_token, created_at,
                   coalesce((SELECT expires_at FROM touched), expires_at) AS expires_at
            FROM live
        ) s
        -- sliding the expiry can cut it to the age limit, which may be past
        WHERE expires_at > now()
        """,
        _digest(session_id),
        idle,
        max_age,
    )
    return None if row is None else UiSession(**dict(row))


async def session_alive(conn: asyncpg.Connection, session_id: str) -> bool:
    """Whether the session still works, without sliding its expiry: a page left
    open on its live updates is not a person using it."""
    found = await conn.fetchval(
        "SELECT 1 FROM ui_sessions s JOIN users u USING (username)"
        " WHERE s.id_sha256 = $1 AND s.expires_at > now()",
        _digest(session_id),
    )
    return found is not None


async def close_session(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute("DELETE FROM ui_sessions WHERE id_sha256 = $1", _digest(session_id))
