"""Bulk jobs and the devices each one matched (bulk_jobs, bulk_job_devices).

A device's progress is not copied here: it is the status of the task the job
queued for it, read through ``task_id``, so the queue stays the one truth.
Writers of ``queued`` / ``queued_at`` hold the job's row lock, so two ACS
processes ticking at once cannot queue one device twice or exceed the rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import asyncpg

from acs.core.bulk import NOT_QUEUED, SKIPPED


@dataclass(slots=True)
class BulkJob:
    id: int
    name: str
    task_name: str
    task_args: dict[str, Any]
    filter: str
    rate_per_minute: int
    connection_request: bool
    expiry_s: int | None
    status: str
    reason: str | None
    total: int
    queued: int
    rate_epoch: datetime
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    start_at: datetime | None = None
    windows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> BulkJob:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(slots=True)
class BulkDevice:
    device_id: str
    state: str
    task_id: int | None
    queued_at: datetime | None
    finished_at: datetime | None
    fault_code: int | None
    fault_string: str | None
    knocked_at: datetime | None
    knock_error: str | None
    skip_reason: str | None


_COLUMNS = ", ".join(f.name for f in fields(BulkJob))

# A device's state: its task's status, or notQueued. A pending task past its
# expiry counts as expired already: the queue only marks it when the device
# comes, which an offline device may never do.
_STATE = f"""
    CASE WHEN b.skip_reason IS NOT NULL THEN '{SKIPPED}'
         WHEN b.task_id IS NULL THEN '{NOT_QUEUED}'
         WHEN t.status = 'pending' AND t.expires_at <= now() THEN 'expired'
         ELSE t.status END
"""
_OPEN_TASK = "(t.status = 'running' OR (t.status = 'pending' AND (t.expires_at IS NULL OR t.expires_at > now())))"  # noqa: E501


async def create(
    conn: asyncpg.Connection,
    *,
    name: str,
    task_name: str,
    task_args: dict[str, Any],
    filter: str,
    rate_per_minute: int,
    connection_request: bool,
    expiry_s: int | None,
    created_by: str | None,
    start_at: datetime | None = None,
    windows: Sequence[dict[str, Any]] = (),
) -> BulkJob:
    """A running job, without devices yet (snapshot() adds them). One that
    starts later counts its rate from its start (rate_epoch) and has no
    started_at until then (mark_started)."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO bulk_jobs (name, task_name, task_args, filter, rate_per_minute,
                               connection_request, expiry_s, created_by, started_at,
                               start_at, windows, rate_epoch)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
                CASE WHEN $9::timestamptz > now() THEN NULL ELSE now() END,
                $9, $10, greatest(now(), coalesce($9, now())))
        RETURNING {_COLUMNS}
        """,
        name,
        task_name,
        task_args,
        filter,
        rate_per_minute,
        connection_request,
        expiry_s,
        created_by,
        start_at,
        list(windows),
    )
    assert row is not None
    return BulkJob.from_row(row)


async def snapshot(
    conn: asyncpg.Connection,
    bulk_id: int,
    where: str,
    params: Sequence[object],
    batch: int = 5000,
) -> int:
    """Record every device matching ``where`` (a compile_filter fragment whose
    placeholders start at $1) as the job's devices; return how many.

    A cursor and COPY in batches: neither the matching ids nor one giant
    statement have to fit in memory or under the statement timeout. Call
    inside a transaction (the cursor needs one), so a failure leaves no half
    snapshot behind.
    """
    total = 0
    pending: list[tuple[int, str]] = []
    cursor = conn.cursor(
        "SELECT d.id FROM devices d LEFT JOIN device_parameters dp ON dp.device_id = d.id"
        f" WHERE {where}",
        *params,
        prefetch=batch,
    )
    async for row in cursor:
        pending.append((bulk_id, row["id"]))
        if len(pending) >= batch:
            total += await _copy_devices(conn, pending)
            pending = []
    if pending:
        total += await _copy_devices(conn, pending)
    await conn.execute(
        "UPDATE bulk_jobs SET total = $2, updated_at = now() WHERE id = $1", bulk_id, total
    )
    return total


async def _copy_devices(conn: asyncpg.Connection, records: list[tuple[int, str]]) -> int:
    await conn.copy_records_to_table(
        "bulk_job_devices", records=records, columns=["bulk_id", "device_id"]
    )
    return len(records)


async def get(conn: asyncpg.Connection, bulk_id: int, *, lock: bool = False) -> BulkJob | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM bulk_jobs WHERE id = $1{' FOR UPDATE' if lock else ''}", bulk_id
    )
    return None if row is None else BulkJob.from_row(row)


async def list_jobs(conn: asyncpg.Connection, *, limit: int, before: int | None) -> list[BulkJob]:
    """Newest first; ``before`` is the last id of the previous page."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM bulk_jobs WHERE ($1::bigint IS NULL OR id < $1)"
        " ORDER BY id DESC LIMIT $2",
        before,
        limit,
    )
    return [BulkJob.from_row(r) for r in rows]


async def set_status(
    conn: asyncpg.Connection,
    bulk_id: int,
    status: str,
    reason: str | None,
    *,
    expect: tuple[str, ...],
    finished: bool = False,
    restart_rate_at_queued: bool = False,
) -> BulkJob | None:
    """Move the job to ``status`` if it is in one of ``expect``; None otherwise.

    ``restart_rate_at_queued`` slides the rate epoch so exactly one device is
    due now (resume): time spent paused earns no tokens.
    """
    row = await conn.fetchrow(
        f"""
        UPDATE bulk_jobs SET status = $2, reason = $3, updated_at = now(),
            finished_at = CASE WHEN $4 THEN now() ELSE finished_at END,
            rate_epoch = CASE WHEN $5
                THEN greatest(rate_epoch,
                              now() - make_interval(secs => queued * 60.0 / rate_per_minute))
                ELSE rate_epoch END
        WHERE id = $1 AND status = ANY($6::text[])
        RETURNING {_COLUMNS}
        """,
        bulk_id,
        status,
        reason,
        finished,
        restart_rate_at_queued,
        list(expect),
    )
    return None if row is None else BulkJob.from_row(row)


# --------------------------------------------------------------------------- the tick


async def open_ids(conn: asyncpg.Connection) -> list[int]:
    """Jobs that may still queue devices or complete."""
    rows = await conn.fetch("SELECT id FROM bulk_jobs WHERE status = 'running' ORDER BY id")
    return [r["id"] for r in rows]


async def lock_running(conn: asyncpg.Connection, bulk_id: int) -> tuple[BulkJob, int] | None:
    """The job, row-locked, with the milliseconds since its rate epoch by the
    database's clock; None if it is not running or another process holds it.
    Call inside a transaction."""
    row = await conn.fetchrow(
        f"""
        SELECT {_COLUMNS},
               floor(extract(epoch FROM now() - rate_epoch) * 1000)::bigint AS elapsed_ms
        FROM bulk_jobs WHERE id = $1 AND status = 'running'
        FOR UPDATE SKIP LOCKED
        """,
        bulk_id,
    )
    if row is None:
        return None
    return BulkJob.from_row(row), row["elapsed_ms"]


async def next_devices(
    conn: asyncpg.Connection, bulk_id: int, limit: int
) -> list[tuple[str, bool]]:
    """The next devices whose turn has not come, in device id order, each with
    whether it has ever opened a CWMP session."""
    rows = await conn.fetch(
        "SELECT b.device_id, d.cwmp_version IS NOT NULL AS cwmp_seen"
        " FROM bulk_job_devices b JOIN devices d ON d.id = b.device_id"
        " WHERE b.bulk_id = $1 AND b.queued_at IS NULL"
        " ORDER BY b.device_id LIMIT $2",
        bulk_id,
        limit,
    )
    return [(r["device_id"], r["cwmp_seen"]) for r in rows]


async def mark_skipped(
    conn: asyncpg.Connection, bulk_id: int, skipped: Sequence[tuple[str, str]]
) -> None:
    """(device, reason) pairs whose turn came but whose task could never run
    there: no task is queued; queued_at records when the turn came, so the
    device is not taken again."""
    if not skipped:
        return
    await conn.execute(
        """
        UPDATE bulk_job_devices b SET queued_at = now(), skip_reason = u.reason
        FROM unnest($2::text[], $3::text[]) AS u(device_id, reason)
        WHERE b.bulk_id = $1 AND b.device_id = u.device_id
        """,
        bulk_id,
        [d for d, _ in skipped],
        [r for _, r in skipped],
    )


async def mark_queued(
    conn: asyncpg.Connection,
    bulk_id: int,
    queued: Sequence[tuple[str, int]],
    epoch_shift_ms: int,
) -> None:
    """(device, task id) pairs are queued; the rate epoch moves forward by the shift."""
    if queued:
        await conn.execute(
            """
            UPDATE bulk_job_devices b SET task_id = u.task_id, queued_at = now()
            FROM unnest($2::text[], $3::bigint[]) AS u(device_id, task_id)
            WHERE b.bulk_id = $1 AND b.device_id = u.device_id
            """,
            bulk_id,
            [d for d, _ in queued],
            [t for _, t in queued],
        )
    await conn.execute(
        """
        UPDATE bulk_jobs SET queued = queued + $2, updated_at = now(),
            rate_epoch = rate_epoch + make_interval(secs => $3::bigint / 1000.0)
        WHERE id = $1
        """,
        bulk_id,
        len(queued),
        epoch_shift_ms,
    )


async def has_not_queued(conn: asyncpg.Connection, bulk_id: int) -> bool:
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM bulk_job_devices WHERE bulk_id = $1 AND queued_at IS NULL)",
        bulk_id,
    )
    return bool(found)


async def all_final(conn: asyncpg.Connection, bulk_id: int) -> bool:
    """Every device queued and its task done, faulted, expired or cancelled."""
    found = await conn.fetchval(
        f"""
        SELECT NOT EXISTS (
            SELECT 1 FROM bulk_job_devices b LEFT JOIN tasks t ON t.id = b.task_id
            WHERE b.bulk_id = $1
              AND ((b.task_id IS NULL AND b.skip_reason IS NULL) OR {_OPEN_TASK}))
        """,
        bulk_id,
    )
    return bool(found)


async def record_knocks(
    conn: asyncpg.Connection,
    bulk_id: int,
    outcomes: Sequence[tuple[str, str | None, float | None]],
) -> None:
    """(device, error or None, seconds until it is knocked again or None) of the
    connection requests sent for the job."""
    if not outcomes:
        return
    await conn.execute(
        """
        UPDATE bulk_job_devices b SET knocked_at = now(), knock_error = u.error,
            knock_again_at = now() + make_interval(secs => u.again_s)
        FROM unnest($2::text[], $3::text[], $4::float8[]) AS u(device_id, error, again_s)
        WHERE b.bulk_id = $1 AND b.device_id = u.device_id
        """,
        bulk_id,
        [d for d, _, _ in outcomes],
        [e for _, e, _ in outcomes],
        [a for _, _, a in outcomes],
    )


async def waiting(conn: asyncpg.Connection, bulk_id: int, limit: int) -> tuple[list[str], int]:
    """Up to ``limit`` devices whose task of the job is still pending (not
    expired), longest unknocked first, and how many there are in all."""
    where = """
        FROM bulk_job_devices d JOIN tasks t ON t.id = d.task_id
        WHERE d.bulk_id = $1 AND t.status = 'pending'
          AND (t.expires_at IS NULL OR t.expires_at > now())
    """
    total: int = await conn.fetchval("SELECT count(*) " + where, bulk_id)
    rows = await conn.fetch(
        "SELECT d.device_id " + where + " ORDER BY d.knocked_at NULLS FIRST, d.device_id LIMIT $2",
        bulk_id,
        limit,
    )
    return sorted(r["device_id"] for r in rows), total


async def claim_knocks_again(conn: asyncpg.Connection, bulk_id: int, limit: int) -> list[str]:
    """Devices due to be knocked again whose task still waits, claimed (their
    due time cleared) so a second ticking process does not knock them too."""
    rows = await conn.fetch(
        """
        UPDATE bulk_job_devices b SET knock_again_at = NULL
        WHERE (b.bulk_id, b.device_id) IN (
            SELECT d.bulk_id, d.device_id FROM bulk_job_devices d
            JOIN tasks t ON t.id = d.task_id
            WHERE d.bulk_id = $1 AND d.knock_again_at <= now() AND t.status = 'pending'
              AND (t.expires_at IS NULL OR t.expires_at > now())
            ORDER BY d.knock_again_at
            LIMIT $2
            FOR UPDATE OF d SKIP LOCKED)
        RETURNING b.device_id
        """,
        bulk_id,
        limit,
    )
    return [r["device_id"] for r in rows]


async def mark_started(conn: asyncpg.Connection, bulk_id: int) -> None:
    """A scheduled job reached its start time."""
    await conn.execute(
        "UPDATE bulk_jobs SET started_at = now(), updated_at = now()"
        " WHERE id = $1 AND started_at IS NULL",
        bulk_id,
    )


async def withdraw_unsent(conn: asyncpg.Connection, bulk_id: int) -> int:
    """Its window closed: the job's tasks no session has picked up are withdrawn
    and their devices wait for the next opening, queued again then (the task
    rows stay, cancelled). Returns how many; call with the job's row lock."""
    withdrawn: int = await conn.fetchval(
        """
        WITH gone AS (
            UPDATE tasks t SET status = 'cancelled', finished_at = now()
            FROM bulk_job_devices b
            WHERE b.bulk_id = $1 AND t.id = b.task_id AND t.status = 'pending'
            RETURNING b.device_id),
        back AS (
            UPDATE bulk_job_devices b SET task_id = NULL, queued_at = NULL,
                knocked_at = NULL, knock_error = NULL, knock_again_at = NULL
            FROM gone WHERE b.bulk_id = $1 AND b.device_id = gone.device_id
            RETURNING 1),
        n AS (SELECT count(*)::int AS n FROM back)
        UPDATE bulk_jobs SET queued = queued - n.n, updated_at = now()
        FROM n WHERE id = $1 RETURNING n.n
        """,
        bulk_id,
    )
    return withdrawn or 0


async def cancel_pending_tasks(conn: asyncpg.Connection, bulk_id: int) -> int:
    """Withdraw the job's tasks no session has picked yet; return how many.

    Written here rather than in acs.store.tasks because the join through
    bulk_job_devices is this aggregate's; running tasks are left to finish
    (a CPE cannot be stopped mid-RPC).
    """
    cancelled: int = await conn.fetchval(
        """
        WITH gone AS (
            UPDATE tasks t SET status = 'cancelled', finished_at = now()
            FROM bulk_job_devices b
            WHERE b.bulk_id = $1 AND t.id = b.task_id AND t.status = 'pending'
            RETURNING 1)
        SELECT count(*)::int FROM gone
        """,
        bulk_id,
    )
    return cancelled


# --------------------------------------------------------------------------- reading


async def state_counts(conn: asyncpg.Connection, bulk_id: int) -> dict[str, int]:
    rows = await conn.fetch(
        f"""
        SELECT {_STATE} AS state, count(*)::int AS n
        FROM bulk_job_devices b LEFT JOIN tasks t ON t.id = b.task_id
        WHERE b.bulk_id = $1
        GROUP BY 1
        """,
        bulk_id,
    )
    return {r["state"]: r["n"] for r in rows}


async def list_devices(
    conn: asyncpg.Connection,
    bulk_id: int,
    *,
    state: str | None,
    after: str | None,
    limit: int,
) -> list[BulkDevice]:
    """The job's devices in id order, after ``after``, optionally in one state."""
    rows = await conn.fetch(
        f"""
        SELECT * FROM (
            SELECT b.device_id, {_STATE} AS state, b.task_id,
                   CASE WHEN b.skip_reason IS NULL THEN b.queued_at END AS queued_at,
                   t.finished_at, t.fault_code, t.fault_string, b.knocked_at, b.knock_error,
                   b.skip_reason
            FROM bulk_job_devices b LEFT JOIN tasks t ON t.id = b.task_id
            WHERE b.bulk_id = $1 AND ($2::text IS NULL OR b.device_id > $2)
        ) s
        WHERE $3::text IS NULL OR s.state = $3
        ORDER BY s.device_id
        LIMIT $4
        """,
        bulk_id,
        after,
        state,
        limit,
    )
    return [BulkDevice(**dict(r)) for r in rows]
