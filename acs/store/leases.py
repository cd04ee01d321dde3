"""Cluster leases: which ACS host runs each kind of periodic work (migration 0026).

Every time is PostgreSQL's ``now()``: hosts whose clocks disagree still agree
on who holds a lease and when it runs out, and a host whose clock runs ahead
cannot decide on its own that someone else's lease has expired.

Two guards, because a lease alone is not enough against a split brain (a
holder paused past its expiry, say, that wakes up still believing it leads):

- ``run_tick`` takes the lease row ``FOR UPDATE`` in the transaction the
  caller keeps open while the tick's work runs, and checks in that same
  statement that this process still holds an unexpired lease. A second host
  trying to take over or to tick skips the locked row (``SKIP LOCKED``), so two
  ticks of one kind never overlap, whoever believes what.
- ``last_run_at``: a tick runs only when the last run (by anyone) is at least
  ``min_gap_s`` old, so a handover between hosts whose schedulers are out of
  phase does not run a tick twice in one interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    holder: str | None
    expires_at: datetime
    since: datetime | None
    last_run_at: datetime | None
    runs: int
    live: bool  # unexpired by the database's clock


async def ensure(conn: asyncpg.Connection, names: list[str]) -> None:
    """The rows of these kinds of work, unheld, if they do not exist yet.

    NOT EXISTS first: ON CONFLICT alone would wait for a tick's transaction that
    holds an existing row locked, and stall the renewal behind it."""
    await conn.execute(
        """
        INSERT INTO cluster_leases (name)
        SELECT n FROM unnest($1::text[]) AS n
        WHERE NOT EXISTS (SELECT 1 FROM cluster_leases WHERE name = n)
        ON CONFLICT DO NOTHING
        """,
        names,
    )


async def take_or_renew(
    conn: asyncpg.Connection, names: list[str], holder: str, holder_id: UUID, duration_s: float
) -> list[str]:
    """Renew the leases this process holds and take the expired ones; return those held.

    A row locked by a tick running right now is skipped, not waited for: its
    holder keeps it (the tick extended it), and this call must not stall. So
    the answer also names the rows this process holds unexpired as last
    committed: a row of ours our own tick has locked is still ours, and
    leaving it out would drop the lease (and its ticks) until the next renewal.
    """
    rows = await conn.fetch(
        """
        WITH free AS (
            SELECT name FROM cluster_leases
            WHERE name = ANY($1::text[]) AND (holder_id = $3 OR expires_at < now())
            FOR UPDATE SKIP LOCKED
        ),
        renewed AS (
            UPDATE cluster_leases l
            SET holder = $2,
                since = CASE WHEN l.holder_id = $3 THEN l.since ELSE now() END,
                holder_id = $3,
                expires_at = now() + make_interval(secs => $4)
            FROM free
            WHERE l.name = free.name
            RETURNING l.name
        )
        SELECT name FROM renewed
        UNION
        SELECT name FROM cluster_leases
        WHERE name = ANY($1::text[]) AND holder_id = $3 AND expires_at > now()
        """,
        names,
        holder,
        holder_id,
        duration_s,
    )
    return sorted(r["name"] for r in rows)


async def run_tick(
    conn: asyncpg.Connection, name: str, holder_id: UUID, duration_s: float, min_gap_s: float
) -> bool:
    """In the caller's open transaction: lock the lease row if this process holds it
    unexpired and the tick is due; extend it and count the run. True: run the tick now,
    and commit after it. False: another holder, another tick in progress, or not due."""
    if not conn.is_in_transaction():
        raise RuntimeError("run_tick belongs in the transaction the tick's work runs under")
    got = await conn.fetchval(
        """
        WITH mine AS (
            SELECT name FROM cluster_leases
            WHERE name = $1 AND holder_id = $2 AND expires_at > now()
              AND (last_run_at IS NULL OR last_run_at <= now() - make_interval(secs => $4))
            FOR UPDATE SKIP LOCKED
        )
        UPDATE cluster_leases l
        SET expires_at = GREATEST(l.expires_at, now() + make_interval(secs => $3)),
            last_run_at = now(),
            runs = l.runs + 1
        FROM mine
        WHERE l.name = mine.name
        RETURNING 1
        """,
        name,
        holder_id,
        duration_s,
        min_gap_s,
    )
    return got is not None


async def release(conn: asyncpg.Connection, holder_id: UUID) -> list[str]:
    """Give up every lease of this process (a clean stop): the next host takes them at once."""
    rows = await conn.fetch(
        """
        UPDATE cluster_leases SET expires_at = '-infinity', holder = NULL, holder_id = NULL
        WHERE holder_id = $1
        RETURNING name
        """,
        holder_id,
    )
    return sorted(r["name"] for r in rows)


async def all_leases(conn: asyncpg.Connection) -> list[Lease]:
    rows = await conn.fetch(
        """
        SELECT name, holder, expires_at, since, last_run_at, runs, expires_at > now() AS live
        FROM cluster_leases ORDER BY name
        """
    )
    return [Lease(**dict(r)) for r in rows]


async def held_since(conn: asyncpg.Connection, name: str) -> datetime | None:
    """Since when the present holder of this lease holds it (None: never held, or no row)."""
    since: datetime | None = await conn.fetchval(
        "SELECT since FROM cluster_leases WHERE name = $1 AND holder_id IS NOT NULL", name
    )
    return since


async def held_by(conn: asyncpg.Connection, holder: str) -> list[str]:
    """The unexpired leases a host (by name) holds now."""
    rows = await conn.fetch(
        "SELECT name FROM cluster_leases WHERE holder = $1 AND expires_at > now() ORDER BY name",
        holder,
    )
    return [r["name"] for r in rows]
