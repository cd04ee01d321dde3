"""Diagnostics jobs waiting between their two sessions (acs.core.diagnostics).

A diagnostics job whose SetParameterValues the CPE accepted stays 'running'
without a session (so no session requeues it, like a transfer awaiting its
TransferComplete) until the CPE's 8 DIAGNOSTICS COMPLETE session reads the
results, or ACS_DIAGNOSTICS_TIMEOUT_S ends it. ``started_at`` is when it
began waiting.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from acs.store.tasks import _COLUMNS, Task

# the job of device $1 waiting for its CPE to finish a test
_WAITING = """
    device_id = $1 AND name = 'diagnostics' AND status = 'running' AND session_id IS NULL"""


async def park(conn: asyncpg.Connection, task_id: int, result: dict[str, Any]) -> None:
    """The CPE accepted the test: wait for 8 DIAGNOSTICS COMPLETE, from now."""
    await conn.execute(
        "UPDATE tasks SET session_id = NULL, started_at = now(), result = $2 WHERE id = $1",
        task_id,
        result,
    )


async def waiting(conn: asyncpg.Connection, device_id: str) -> Task | None:
    """The device's diagnostics job waiting for its results, row-locked (one at a time)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM tasks WHERE {_WAITING} ORDER BY id LIMIT 1 FOR UPDATE", device_id
    )
    return None if row is None else Task.from_row(row)


async def busy(conn: asyncpg.Connection, device_id: str) -> bool:
    """Whether a test of the device is under way: a second one waits its turn."""
    return bool(
        await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM tasks WHERE {_WAITING})", device_id)
    )


async def finish(
    conn: asyncpg.Connection,
    task_id: int,
    result: dict[str, Any],
    fault: tuple[int | None, str] | None,
) -> bool:
    """Close a waiting job: done with ``result``, or faulted with (code, reason).
    False when it was no longer waiting (timed out or cancelled meanwhile)."""
    code, reason = fault if fault is not None else (None, None)
    done = await conn.fetchval(
        """
        UPDATE tasks SET status = CASE WHEN $3::text IS NULL THEN 'done' ELSE 'fault' END,
            result = $2, fault_code = $4, fault_string = $3, finished_at = now()
        WHERE id = $1 AND name = 'diagnostics' AND status = 'running' AND session_id IS NULL
        RETURNING 1
        """,
        task_id,
        result,
        reason,
        code,
    )
    return done is not None


async def expire(conn: asyncpg.Connection, timeout_s: float) -> list[Task]:
    """Fault the tests whose 8 DIAGNOSTICS COMPLETE did not come within ``timeout_s``."""
    rows = await conn.fetch(
        f"""
        UPDATE tasks SET status = 'fault', fault_code = NULL, finished_at = now(),
            fault_string = 'timeout: no 8 DIAGNOSTICS COMPLETE within ' || $1::text || ' s',
            result = result - 'awaitingDiagnosticsComplete'
        WHERE name = 'diagnostics' AND status = 'running' AND session_id IS NULL
          AND started_at < now() - make_interval(secs => $1)
        RETURNING {_COLUMNS}
        """,
        timeout_s,
    )
    return [Task.from_row(r) for r in rows]
