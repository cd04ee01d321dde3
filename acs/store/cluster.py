"""The hosts of a cluster and how to reach them; relay nonces (migration 0026)."""

from __future__ import annotations

import asyncpg


async def register_host(conn: asyncpg.Connection, host_id: str, name: str, url: str | None) -> None:
    await conn.execute(
        """
        INSERT INTO cluster_hosts (id, name, relay_url) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE
        SET name = EXCLUDED.name, relay_url = EXCLUDED.relay_url,
            started_at = now(), seen_at = now()
        """,
        host_id,
        name,
        url,
    )


async def relay_url_of(conn: asyncpg.Connection, host_id: str) -> str | None:
    return await conn.fetchval("SELECT relay_url FROM cluster_hosts WHERE id = $1", host_id)


async def remember_nonce(conn: asyncpg.Connection, nonce: str, window_s: float) -> bool:
    """True the first time this nonce is seen within the window; False for a replay.
    Older nonces are pruned on the way (their signatures are out of the window anyway)."""
    fresh = await conn.fetchval(
        """
        WITH pruned AS (
            DELETE FROM cluster_relay_nonces
            WHERE seen_at < now() - make_interval(secs => $2 * 2)
        )
        INSERT INTO cluster_relay_nonces (nonce) VALUES ($1)
        ON CONFLICT DO NOTHING
        RETURNING 1
        """,
        nonce,
        window_s,
    )
    return fresh is not None
