"""The fleet at a glance: devices seen lately by product and software, faulted jobs."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from acs.store.tasks import Task


@dataclass(slots=True)
class SeenCount:
    product_class: str
    software_version: str | None
    total: int
    last_hour: int
    last_day: int


async def seen_by_software(conn: asyncpg.Connection, limit: int = 200) -> list[SeenCount]:
    """Devices per (ProductClass, SoftwareVersion), largest groups first.

    One pass over the devices table: on a fleet of millions this is a sequential
    scan of the hot columns (a few hundred milliseconds), acceptable for a page
    an operator opens, not for a poll every second.
    """
    rows = await conn.fetch(
        """
        SELECT product_class, software_version,
               count(*)::int AS total,
               (count(*) FILTER (WHERE last_inform > now() - interval '1 hour'))::int AS last_hour,
               (count(*) FILTER (WHERE last_inform > now() - interval '1 day'))::int AS last_day
        FROM devices d LEFT JOIN device_sessions s ON s.device_id = d.id
        GROUP BY product_class, software_version
        ORDER BY total DESC, product_class, software_version
        LIMIT $1
        """,
        limit,
    )
    return [SeenCount(**dict(r)) for r in rows]


async def device_totals(conn: asyncpg.Connection) -> SeenCount:
    row = await conn.fetchrow(
        """
        SELECT '' AS product_class, NULL AS software_version,
               count(*)::int AS total,
               (count(*) FILTER (WHERE last_inform > now() - interval '1 hour'))::int AS last_hour,
               (count(*) FILTER (WHERE last_inform > now() - interval '1 day'))::int AS last_day
        FROM devices d LEFT JOIN device_sessions s ON s.device_id = d.id
        """
    )
    return SeenCount(**dict(row))


async def faulted_tasks(conn: asyncpg.Connection, limit: int = 20) -> tuple[int, list[Task]]:
    """How many jobs are in fault (not retried, cancelled or dismissed since), and the latest."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM tasks WHERE status = 'fault' AND dismissed_at IS NULL"
    )
    rows = await conn.fetch(
        "SELECT * FROM tasks WHERE status = 'fault' AND dismissed_at IS NULL"
        " ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT $1",
        limit,
    )
    return count, [Task.from_row(r) for r in rows]
