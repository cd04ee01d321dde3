"""The history table: 5-minute buckets per series (acs.core.history)."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from acs.core.history import EPOCH, GAUGES


async def add(conn: asyncpg.Connection, bucket: datetime, counts: dict[str, int]) -> None:
    """Add this process's counts to a bucket (counters), in one statement."""
    if not counts:
        return
    names, values = zip(*sorted(counts.items()), strict=True)
    await conn.execute(
        """
        INSERT INTO history (metric, bucket, value)
        SELECT m, $1, v FROM unnest($2::text[], $3::bigint[]) AS t(m, v)
        ON CONFLICT (metric, bucket) DO UPDATE SET value = history.value + EXCLUDED.value
        """,
        bucket,
        list(names),
        list(values),
    )


async def set_online(conn: asyncpg.Connection, bucket: datetime, window_s: float) -> int:
    """Count the devices seen in the window before now into the bucket (a level,
    so several hosts writing it agree)."""
    n: int = await conn.fetchval(
        """
        INSERT INTO history (metric, bucket, value)
        SELECT 'online', $1, count(*) FROM device_sessions
        WHERE last_inform > now() - make_interval(secs => $2)
        ON CONFLICT (metric, bucket) DO UPDATE SET value = EXCLUDED.value
        RETURNING value
        """,
        bucket,
        window_s,
    )
    return n


async def series(
    conn: asyncpg.Connection, metrics: list[str], since: datetime, until: datetime, step: timedelta
) -> dict[str, dict[datetime, int]]:
    """Each metric's values per step: sums of counters, the highest level of a gauge."""
    rows = await conn.fetch(
        """
        SELECT metric, date_bin($4::interval, bucket, $5) AS t,
               CASE WHEN metric = ANY($6::text[]) THEN max(value) ELSE sum(value) END AS v
        FROM history
        WHERE metric = ANY($1::text[]) AND bucket >= $2 AND bucket < $3
        GROUP BY metric, t
        """,
        metrics,
        since,
        until,
        step,
        EPOCH,
        list(GAUGES),
    )
    out: dict[str, dict[datetime, int]] = {m: {} for m in metrics}
    for r in rows:
        out[r["metric"]][r["t"]] = int(r["v"])
    return out


async def prune(conn: asyncpg.Connection, keep: timedelta) -> int:
    status: str = await conn.execute(
        "DELETE FROM history WHERE bucket < now() - $1::interval", keep
    )
    return int(status.split()[-1])


async def device_days(
    conn: asyncpg.Connection, device_id: str, since: datetime
) -> dict[str, dict[datetime, int]]:
    """One device's sessions (from its session logs) and faulted jobs per day."""
    sessions = await conn.fetch(
        "SELECT date_trunc('day', started_at, 'UTC') AS d, count(*) AS n FROM session_logs"
        " WHERE device_id = $1 AND started_at >= $2 GROUP BY d",
        device_id,
        since,
    )
    faults = await conn.fetch(
        "SELECT date_trunc('day', finished_at, 'UTC') AS d, count(*) AS n FROM tasks"
        " WHERE device_id = $1 AND status = 'fault' AND finished_at >= $2 GROUP BY d",
        device_id,
        since,
    )
    return {
        "sessions": {r["d"]: r["n"] for r in sessions},
        "jobs_faulted": {r["d"]: r["n"] for r in faults},
    }
