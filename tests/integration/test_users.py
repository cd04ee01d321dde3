"""Operator accounts and browser sessions in PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from acs.core.passwords import PasswordRejected
from acs.services import accounts
from acs.store import users

pytestmark = pytest.mark.db

HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)


async def test_users_sign_in_only_with_their_password(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial
) -> None:
    name = unique_serial("u").lower()
    user = await accounts.create_user(conn, name, "a long enough secret", "operator")
    assert user.role == "operator" and user.last_login_at is None
    with pytest.raises(ValueError, match="exists already"):
        await accounts.create_user(conn, name, "a long enough secret", "viewer")
    with pytest.raises(PasswordRejected):
        await accounts.create_user(conn, name + "x", "short", "viewer")
    with pytest.raises(ValueError, match="role must be one of"):
        await accounts.create_user(conn, name + "y", "a long enough secret", "root")
    assert (await accounts.check_login(db_pool, name, "a long enough secret")) is not None
    assert (await accounts.check_login(db_pool, name, "a long enough secreT")) is None
    assert (await accounts.check_login(db_pool, "nobody-" + name, "whatever it is")) is None
    stored = await users.password_hash_of(conn, name)
    assert stored is not None and "a long enough secret" not in stored


async def test_sessions_follow_their_user(conn: asyncpg.Connection, unique_serial) -> None:
    name = unique_serial("s").lower()
    await accounts.create_user(conn, name, "a long enough secret", "viewer")
    cookie, opened = await users.open_session(conn, name, HOUR)
    assert opened.role == "viewer" and len(opened.csrf_token) >= 40
    assert (await users.get_user(conn, name)).last_login_at is not None  # type: ignore[union-attr]
    found = await users.find_session(conn, cookie, HOUR, WEEK)
    assert found is not None and found.csrf_token == opened.csrf_token
    assert await users.find_session(conn, cookie + "x", HOUR, WEEK) is None
    # only a hash of the cookie is kept
    assert await conn.fetchval("SELECT count(*) FROM ui_sessions WHERE id_sha256 = $1", cookie) == 0

    await users.set_role(conn, name, "admin")
    found = await users.find_session(conn, cookie, HOUR, WEEK)
    assert found is not None and found.role == "admin"

    other, _ = await users.open_session(conn, name, HOUR)
    assert await accounts.change_password(conn, name, "another long secret")
    assert await users.find_session(conn, cookie, HOUR, WEEK) is None
    assert await users.find_session(conn, other, HOUR, WEEK) is None

    again, _ = await users.open_session(conn, name, HOUR)
    await users.close_session(conn, again)
    assert await users.find_session(conn, again, HOUR, WEEK) is None
    last, _ = await users.open_session(conn, name, HOUR)
    assert await users.delete_user(conn, name)
    assert await users.find_session(conn, last, HOUR, WEEK) is None


async def test_sessions_expire_when_idle_and_at_their_age_limit(
    conn: asyncpg.Connection, unique_serial
) -> None:
    name = unique_serial("e").lower()
    await accounts.create_user(conn, name, "a long enough secret", "viewer")
    idle, _ = await users.open_session(conn, name, HOUR)
    await conn.execute(
        "UPDATE ui_sessions SET expires_at = now() - interval '1 second' WHERE username = $1",
        name,
    )
    assert await users.find_session(conn, idle, HOUR, WEEK) is None
    old, _ = await users.open_session(conn, name, HOUR)
    # used a minute ago, signed in 8 days ago: the idle timeout would go on,
    # the age limit ends it
    await conn.execute(
        "UPDATE ui_sessions SET created_at = now() - interval '8 days',"
        " last_seen_at = now() - interval '2 minutes'"
        " WHERE username = $1 AND expires_at > now()",
        name,
    )
    assert await users.find_session(conn, old, HOUR, WEEK) is None
    fresh, _ = await users.open_session(conn, name, HOUR)
    await conn.execute(
        "UPDATE ui_sessions SET last_seen_at = now() - interval '2 minutes',"
        " expires_at = now() + interval '1 minute'"
        " WHERE username = $1 AND created_at > now() - interval '1 hour'",
        name,
    )
    slid = await users.find_session(conn, fresh, HOUR, WEEK)
    assert slid is not None  # used again: an hour more from now
    assert slid.expires_at - slid.created_at > timedelta(minutes=55)
