"""Digest nonce counts and failed-password counts, shared by every ACS worker.

Times are the database clock's (clock_timestamp()), so workers with skewed
clocks agree on who is refused and until when; a nonce's expiry comes from
its own signed time stamp, which the worker that issued it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from acs.core.auth_throttle import Throttle

# One round trip on the success path of a Digest request whose nonce no process
# holds yet: is any key refused right now, and if not, record the nonce count
# when it is higher than every one seen for that nonce (RFC 7616 3.4: a
# replayed count is refused). $5, when set, claims the nonce for the calling
# process, which keeps its later counts in memory (acs/web/cpe_auth_state.py);
# a held row is never advanced here, by anyone: the holder alone knows its
# counts. held_by names the process that holds the nonce.
_USE_NONCE = """
WITH blocked AS (
    SELECT max(blocked_until) AS until FROM cpe_auth_failures
    WHERE key = ANY($1::text[]) AND blocked_until > clock_timestamp()
), used AS (
    INSERT INTO cpe_digest_nonces AS n (nonce, nc, expires_at, holder)
    SELECT $2, $3, to_timestamp($4), $5
    WHERE (SELECT until FROM blocked) IS NULL
    ON CONFLICT (nonce) DO UPDATE SET nc = EXCLUDED.nc, holder = EXCLUDED.holder
        WHERE n.nc < EXCLUDED.nc AND n.holder IS NULL
    RETURNING 1
)
SELECT COALESCE(extract(epoch FROM (SELECT until FROM blocked) - clock_timestamp()), 0)::float8
           AS blocked_s,
       EXISTS (SELECT 1 FROM used) AS fresh,
       (SELECT holder FROM cpe_digest_nonces WHERE nonce = $2) AS held_by
"""

_BLOCKED = """
SELECT COALESCE(extract(epoch FROM max(blocked_until) - clock_timestamp()), 0)::float8
FROM cpe_auth_failures
WHERE key = ANY($1::text[]) AND blocked_until > clock_timestamp()
"""

# a count older than the window starts again at 1
_COUNT_FAILURE = """
INSERT INTO cpe_auth_failures AS f (key, failures, last_failure_at)
SELECT k, 1, clock_timestamp() FROM unnest($1::text[]) AS k
ON CONFLICT (key) DO UPDATE SET
    failures = CASE
        WHEN f.last_failure_at < clock_timestamp() - make_interval(secs => $2) THEN 1
        ELSE f.failures + 1
    END,
    last_failure_at = clock_timestamp()
RETURNING key, failures
"""

_BLOCK = """
UPDATE cpe_auth_failures
SET blocked_until = GREATEST(blocked_until, clock_timestamp() + make_interval(secs => $2))
WHERE key = $1
"""


async def use_nonce(
    conn: asyncpg.Connection,
    keys: Sequence[str],
    nonce: str,
    nc: int,
    expires_at: float,
    holder: str | None = None,
) -> tuple[float, bool, str | None]:
    """(seconds the keys are still refused, whether ``nc`` was above every count seen
    for this nonce and is now recorded, the process holding the nonce when that
    is another one). A refused request records nothing.

    With ``holder`` the nonce is claimed for that process when no row has it yet
    (or a row no process holds, whose counts are all here)."""
    row = await conn.fetchrow(_USE_NONCE, list(keys), nonce, nc, expires_at, holder)
    assert row is not None
    fresh: bool = row["fresh"]
    held_by: str | None = row["held_by"]
    return (
        max(0.0, row["blocked_s"]),
        fresh,
        None if fresh or held_by == holder else held_by,
    )


async def blocked_s(conn: asyncpg.Connection, keys: Sequence[str]) -> float:
    """Seconds the most refused of these keys is still refused; 0 when none is."""
    return max(0.0, await conn.fetchval(_BLOCKED, list(keys)))


async def count_failure(conn: asyncpg.Connection, keys: Sequence[str], throttle: Throttle) -> float:
    """Count a failed password against every key; the seconds they are now refused."""
    async with conn.transaction():
        rows = await conn.fetch(_COUNT_FAILURE, list(keys), throttle.window_s)
        for row in rows:
            block = throttle.block_s(row["failures"])
            if block > 0:
                await conn.execute(_BLOCK, row["key"], block)
        return max(0.0, await conn.fetchval(_BLOCKED, list(keys)))


async def prune(conn: asyncpg.Connection, failure_window_s: float) -> None:
    """Forget expired nonces, and failure counts that ran out and refuse nobody."""
    await conn.execute("DELETE FROM cpe_digest_nonces WHERE expires_at < clock_timestamp()")
    await conn.execute(
        """
        DELETE FROM cpe_auth_failures
        WHERE last_failure_at < clock_timestamp() - make_interval(secs => $1)
          AND (blocked_until IS NULL OR blocked_until < clock_timestamp())
        """,
        failure_window_s,
    )
