"""The per-device task queue (GenieACS NBI task names and arguments).

A task is ``pending`` until a session of its device picks it, ``running``
while that session works on it, then ``done``, ``fault``, ``expired`` or
``cancelled``. The queue is a plain table read with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

STATUSES = ("pending", "running", "done", "fault", "expired", "cancelled")

_COLUMNS = (
    "id, device_id, name, args, status, created_at, not_before, expires_at, unique_key,"
    " attempts, session_id, started_at, finished_at, result, fault_code, fault_string,"
    " command_key, restarts"
)


@dataclass(slots=True)
class Task:
    id: int
    device_id: str
    name: str
    args: dict[str, Any]
    status: str
    created_at: datetime
    not_before: datetime | None
    expires_at: datetime | None
    unique_key: str | None
    attempts: int
    session_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    fault_code: int | None
    fault_string: str | None
    command_key: str | None
    # sessions of this job that ended because the CPE restarted (a new Inform),
    # their attempt given back (refund_attempt)
    restarts: int = 0

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Task:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


async def enqueue(
    conn: asyncpg.Connection,
    device_id: str,
    name: str,
    args: dict[str, Any],
    *,
    not_before: datetime | None = None,
    expires_at: datetime | None = None,
    unique_key: str | None = None,
    command_key: str | None = None,
) -> Task:
    """Queue a task. A pending task of the same device with the same
    ``unique_key`` is cancelled in the same transaction, so at most one stays pending.
    """
    # The cancel and the insert are two statements: within one statement the
    # unique index still sees the row being cancelled. Concurrent enqueues with
    # one key queue up on an advisory lock so each cancels its predecessor;
    # the retry only covers callers whose transaction snapshot predates it
    # (REPEATABLE READ).
    for attempt in range(3):
        try:
            async with conn.transaction():
                if unique_key is not None:
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
                        device_id,
                        unique_key,
                    )
                    await conn.execute(
                        "UPDATE tasks SET status = 'cancelled', finished_at = now()"
                        " WHERE device_id = $1 AND unique_key = $2 AND status = 'pending'",
                        device_id,
                        unique_key,
                    )
                row = await conn.fetchrow(
                    f"""
                    INSERT INTO tasks (device_id, name, args, not_before, expires_at, unique_key,
                                       command_key)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    RETURNING {_COLUMNS}
                    """,
                    device_id,
                    name,
                    args,
                    not_before,
                    expires_at,
                    unique_key,
                    command_key,
                )
            assert row is not None
            return Task.from_row(row)
        except asyncpg.UniqueViolationError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# whether device $1 has a task due now
PENDING_DUE = """EXISTS (
    SELECT 1 FROM tasks
    WHERE device_id = $1 AND status = 'pending'
      AND (not_before IS NULL OR not_before <= now())
      AND (expires_at IS NULL OR expires_at > now()))"""


async def open_with_key(conn: asyncpg.Connection, device_id: str, unique_key: str) -> bool:
    """Whether a job of the device with this key is pending or running."""
    found = await conn.fetchval(
        "SELECT 1 FROM tasks WHERE device_id = $1 AND unique_key = $2"
        " AND status IN ('pending', 'running') LIMIT 1",
        device_id,
        unique_key,
    )
    return found is not None


async def has_pending(conn: asyncpg.Connection, device_id: str) -> bool:
    """Whether a task is due now; one index probe, for every periodic session."""
    found = await conn.fetchval(f"SELECT {PENDING_DUE}", device_id)
    return bool(found)


async def next_pending(
    conn: asyncpg.Connection, device_id: str, exclude: list[int] | tuple[int, ...] = ()
) -> Task | None:
    """The oldest due pending task, row-locked (SKIP LOCKED); expires overdue ones on the way.

    Call inside a transaction to keep the row lock until mark_running().
    """
    row = await conn.fetchrow(
        f"""
        WITH expired AS (
            UPDATE tasks SET status = 'expired', finished_at = now()
            WHERE id IN (
                SELECT id FROM tasks
                WHERE device_id = $1 AND status = 'pending' AND expires_at <= now()
                FOR UPDATE SKIP LOCKED)
            RETURNING id
        )
        SELECT {_COLUMNS} FROM tasks
        WHERE device_id = $1 AND status = 'pending'
          AND (not_before IS NULL OR not_before <= now())
          AND (expires_at IS NULL OR expires_at > now())
          AND id <> ALL($2::bigint[])
        ORDER BY id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
        """,
        device_id,
        list(exclude),
    )
    return None if row is None else Task.from_row(row)


async def mark_running(conn: asyncpg.Connection, task_id: int, session_id: str) -> None:
    await conn.execute(
        "UPDATE tasks SET status = 'running', session_id = $2, attempts = attempts + 1,"
        " started_at = now() WHERE id = $1",
        task_id,
        session_id,
    )


async def mark_done(conn: asyncpg.Connection, task_id: int, result: dict[str, Any] | None) -> None:
    await conn.execute(
        "UPDATE tasks SET status = 'done', result = $2, finished_at = now() WHERE id = $1",
        task_id,
        result,
    )


async def mark_fault(
    conn: asyncpg.Connection,
    task_id: int,
    code: int,
    string: str,
    result: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "UPDATE tasks SET status = 'fault', fault_code = $2, fault_string = $3, result = $4,"
        " finished_at = now() WHERE id = $1",
        task_id,
        code,
        string,
        result,
    )


# device $1's tasks left 'running' back to pending (or cancelled when queued
# again meanwhile), when ``{guard}`` holds; returns their new status
REQUEUE_RUNNING = """
    UPDATE tasks t
    SET status = CASE
            WHEN t.unique_key IS NOT NULL AND EXISTS (
                SELECT 1 FROM tasks p
                WHERE p.device_id = t.device_id AND p.unique_key = t.unique_key
                  AND p.status = 'pending')
            THEN 'cancelled' ELSE 'pending' END,
        session_id = NULL,
        started_at = NULL
    WHERE t.device_id = $1 AND t.status = 'running' AND t.session_id IS NOT NULL
      AND {guard}
    RETURNING t.device_id, t.status"""


async def requeue_running(conn: asyncpg.Connection, device_id: str) -> int:
    """Put tasks a dead session left 'running' back to pending; return how many.

    Call while holding the device's session lock: any running task then
    belongs to a session that is gone. A task whose unique_key has meanwhile
    been queued again is cancelled instead (the newer one replaces it).
    """
    requeued: int = await conn.fetchval(
        f"""
        WITH moved AS ({REQUEUE_RUNNING.format(guard="true")})
        SELECT count(*) FILTER (WHERE status = 'pending')::int FROM moved
        """,
        device_id,
    )
    return requeued


async def refund_attempt(
    conn: asyncpg.Connection, device_id: str, session_id: str, max_refunds: int
) -> bool:
    """Give back the attempt ``session_id`` spent on its running job, when the
    session ended because the CPE restarted (a new Inform superseded it): the
    job was sent and never answered, through no fault of its own. At most
    ``max_refunds`` times per job (``restarts``), so that a job whose RPC crashes
    the CPE still runs out of attempts. Call before requeue_running, in its
    transaction; False when nothing was refunded."""
    done = await conn.fetchval(
        """
        UPDATE tasks SET attempts = greatest(attempts - 1, 0), restarts = restarts + 1
        WHERE device_id = $1 AND status = 'running' AND session_id = $2 AND restarts < $3
        RETURNING 1
        """,
        device_id,
        session_id,
        max_refunds,
    )
    return done is not None


async def cancel(conn: asyncpg.Connection, task_id: int) -> bool:
    """Cancel a task that has not started; False if it was not pending."""
    done = await conn.fetchval(
        "UPDATE tasks SET status = 'cancelled', finished_at = now()"
        " WHERE id = $1 AND status = 'pending' RETURNING 1",
        task_id,
    )
    return done is not None


async def get_task(conn: asyncpg.Connection, task_id: int) -> Task | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM tasks WHERE id = $1", task_id)
    return None if row is None else Task.from_row(row)


async def list_tasks(conn: asyncpg.Connection, device_id: str) -> list[Task]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM tasks WHERE device_id = $1 ORDER BY id", device_id
    )
    return [Task.from_row(row) for row in rows]


async def await_transfer(
    conn: asyncpg.Connection, task_id: int, command_key: str, result: dict[str, Any]
) -> None:
    """The CPE accepted a Download/Upload that finishes later: keep the job open.

    It stays 'running' without a session (so no session requeues it) until a
    TransferComplete with its CommandKey closes it, or the timeout does.
    """
    await conn.execute(
        "UPDATE tasks SET session_id = NULL, command_key = $2, result = $3 WHERE id = $1",
        task_id,
        command_key,
        result,
    )


async def close_given_up_transfer(
    conn: asyncpg.Connection, device_id: str, task_id: int, command_key: str, result: dict[str, Any]
) -> Task | None:
    """Close as done a Download the ACS gave up waiting for (a timeout: no CPE fault
    code, still marked as awaiting its TransferComplete) when that TransferComplete
    arrives after all, without a fault: the CPE did the job, and the record says so.
    None if the job is not such a one."""
    row = await conn.fetchrow(
        f"""
        UPDATE tasks SET status = 'done', fault_string = NULL, result = $4, finished_at = now()
        WHERE id = $2 AND device_id = $1 AND command_key = $3 AND status = 'fault'
          AND fault_code IS NULL AND coalesce(result->>'awaitingTransferComplete', '') = 'true'
        RETURNING {_COLUMNS}
        """,
        device_id,
        task_id,
        command_key,
        result,
    )
    return None if row is None else Task.from_row(row)


async def find_awaiting_transfer(
    conn: asyncpg.Connection,
    device_id: str,
    command_key: str,
    awaits: str = "TransferComplete",
    names: tuple[str, ...] = ("download", "upload", "scheduleDownload"),
) -> Task | None:
    """The job a CPE's ``awaits`` report (TransferComplete, DUStateChangeComplete)
    with this CommandKey closes: one waiting for that very report (its result
    says ``awaiting<awaits>``), or one of ``names`` sent and requeued."""
    # The second case: a transfer sent in a session that died before the ACS heard
    # the CPE accept it. The job went back to pending, but the CPE may have taken it
    # and now reports it done; closing the job here keeps it from being sent twice.
    row = await conn.fetchrow(
        f"""
        SELECT {_COLUMNS} FROM tasks
        WHERE device_id = $1 AND (
            (status = 'running' AND session_id IS NULL AND command_key = $2
                AND coalesce(result->>$3, '') = 'true')
            OR (status = 'pending' AND attempts > 0 AND name = ANY($4::text[])
                AND coalesce(args->>'commandKey', 'task-' || id) = $2))
        ORDER BY id DESC LIMIT 1 FOR UPDATE
        """,
        device_id,
        command_key,
        "awaiting" + awaits,
        list(names),
    )
    return None if row is None else Task.from_row(row)


async def expire_transfers(conn: asyncpg.Connection, timeout_s: float) -> list[Task]:
    """Fault transfers whose TransferComplete (ChangeDUStates whose
    DUStateChangeComplete) did not come within ``timeout_s`` (diagnostics jobs
    wait too, for another event: acs.store.diagnostics.expire); a ScheduleDownload
    counts from the end of its last TimeWindow."""
    rows = await conn.fetch(
        f"""
        UPDATE tasks SET status = 'fault', fault_code = NULL, finished_at = now(),
            fault_string = 'timeout: no '
                || CASE WHEN result ? 'awaitingDUStateChangeComplete'
                        THEN 'DUStateChangeComplete' ELSE 'TransferComplete' END
                || ' within ' || $1::text || ' s'
        WHERE status = 'running' AND session_id IS NULL AND name <> 'diagnostics'
          -- a ScheduleDownload may start as late as its last window's end
          AND started_at + make_interval(secs => coalesce((result->>'windowEndS')::float, 0))
              < now() - make_interval(secs => $1)
        RETURNING {_COLUMNS}
        """,
        timeout_s,
    )
    return [Task.from_row(r) for r in rows]


async def defer(conn: asyncpg.Connection, task_id: int, delay_s: float, reason: str) -> None:
    """Back to pending, not before ``delay_s`` from now (transient CPE faults)."""
    await conn.execute(
        "UPDATE tasks SET status = 'pending', session_id = NULL, started_at = NULL,"
        " not_before = now() + make_interval(secs => $2), fault_string = $3 WHERE id = $1",
        task_id,
        delay_s,
        reason,
    )


async def retry(conn: asyncpg.Connection, task_id: int) -> Task | None:
    """An operator retries a faulted or expired job: pending again, fault cleared."""
    row = await conn.fetchrow(
        f"""
        UPDATE tasks SET status = 'pending', fault_code = NULL, fault_string = NULL,
            finished_at = NULL, started_at = NULL, session_id = NULL, not_before = NULL,
            expires_at = CASE WHEN expires_at < now() THEN NULL ELSE expires_at END
        WHERE id = $1 AND status IN ('fault', 'expired')
        RETURNING {_COLUMNS}
        """,
        task_id,
    )
    return None if row is None else Task.from_row(row)


async def give_up(conn: asyncpg.Connection, task_id: int, reason: str) -> bool:
    """Fault a job for a reason that has no CPE fault code (timeouts); False if it
    was no longer open (a TransferComplete closed it meanwhile: that stands)."""
    done = await conn.fetchval(
        "UPDATE tasks SET status = 'fault', fault_code = NULL, fault_string = $2,"
        " session_id = NULL, finished_at = now()"
        " WHERE id = $1 AND status IN ('pending', 'running') RETURNING 1",
        task_id,
        reason,
    )
    return done is not None


async def lock(conn: asyncpg.Connection, task_id: int) -> None:
    """Hold the job's row until the transaction ends (its TransferComplete waits)."""
    await conn.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", task_id)
