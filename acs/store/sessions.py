"""The device session lock: at most one CWMP session per device, across processes.

The lock is two columns of the device row. Expiry is judged by the database
clock so workers with skewed clocks agree; clock_timestamp() rather than now()
because a caller's transaction may have started a while ago.
"""

from __future__ import annotations

import asyncpg


async def acquire_session(
    conn: asyncpg.Connection, device_id: str, session_id: str, ttl_s: float
) -> bool:
    """Take the lock for ``ttl_s`` seconds: True if free, expired, or already ours.

    Raises LookupError when the device does not exist (call after
    upsert_from_inform), so that False always means "another session holds it".
    """
    got = await conn.fetchval(
        """
        UPDATE devices
        SET session_id = $2, session_expires_at = clock_timestamp() + make_interval(secs => $3)
        WHERE id = $1
          AND (session_id IS NULL OR session_id = $2 OR session_expires_at < clock_timestamp())
        RETURNING 1
        """,
        device_id,
        session_id,
        ttl_s,
    )
    if got is not None:
        return True
    if await conn.fetchval("SELECT 1 FROM devices WHERE id = $1", device_id) is None:
        raise LookupError(f"no device {device_id!r}")
    return False


async def renew_session(
    conn: asyncpg.Connection, device_id: str, session_id: str, ttl_s: float
) -> bool:
    """Extend our lock; False if we no longer hold it (it expired and someone took it)."""
    got = await conn.fetchval(
        """
        UPDATE devices
        SET session_expires_at = clock_timestamp() + make_interval(secs => $3)
        WHERE id = $1 AND session_id = $2
        RETURNING 1
        """,
        device_id,
        session_id,
        ttl_s,
    )
    return got is not None


async def release_session(conn: asyncpg.Connection, device_id: str, session_id: str) -> None:
    """Give the lock back; a no-op when another session holds it by now."""
    await conn.execute(
        "UPDATE devices SET session_id = NULL, session_expires_at = NULL"
        " WHERE id = $1 AND session_id = $2",
        device_id,
        session_id,
    )


async def live_sessions_at(conn: asyncpg.Connection, remote_address: str) -> list[str]:
    """Ids of live sessions of devices at this address, at most two (one is an answer,
    two say the address is shared). For workers finding the owner of a request that
    neither a cookie nor a connection identifies; a partial index keeps it small."""
    rows = await conn.fetch(
        """
        SELECT session_id FROM devices
        WHERE remote_address = $1 AND session_id IS NOT NULL
          AND session_expires_at > clock_timestamp()
        LIMIT 2
        """,
        remote_address,
    )
    return [r["session_id"] for r in rows]
