"""Quiet sessions' ends, written together: one statement for many sessions.

A quiet periodic session (acs.core.session_log.is_quiet: `2 PERIODIC`, its
Inform answered, the empty POST, the 204) ends with one write and no job's
state in it: its log row without bodies and its device lock given back. At a
thousand sessions a second most of that statement's PostgreSQL CPU is the
statement itself, not its rows (round trip, bind, executor start, commit
record: about 0.25 ms of the end's ~0.45 ms, BENCHMARKS.md), so ends are
grouped (acs.services.group_commit).

Each session still waits for its own row before its 204 is sent, as when it
was written alone: whoever reads the device's sessions after the 204 finds
it, and an ACS that stops (or crashes) before the write has not answered the
CPE yet. A batch the database refuses (a device deleted between the
statement's snapshot and its insert) is written again one session at a time.
"""

from __future__ import annotations

import asyncpg

from acs.services.group_commit import STATEMENT_FAILED, GroupCommit
from acs.store import session_logs

# a session log that could not be written (the device deleted meanwhile, the
# database gone): the session's own work stands
LOG_REFUSED = STATEMENT_FAILED


class SessionEnds:
    """Quiet ends waiting to be written together."""

    def __init__(self, pool: asyncpg.Pool, keep: int, window_s: float, max_batch: int) -> None:
        self.pool = pool
        self.keep = keep  # sessions kept per device (ACS_SESSION_LOG_PER_DEVICE)
        self.group: GroupCommit[session_logs.NewSessionLog, bool] = GroupCommit(
            self._write,
            window_s=window_s,
            max_batch=max_batch,
            refused=LOG_REFUSED,
            name="session_ends",
        )
        self.written = 0  # rows logged, for tests and benchmarks

    @property
    def batches(self) -> int:
        return self.group.batches

    async def end(self, record: session_logs.NewSessionLog) -> bool:
        """Log a quiet session (``record.elided`` given) and release its device lock;
        True once both are written, False if its row could not be (the caller
        then gives the lock back alone). Database errors of a whole batch
        written alone are raised to the session they belong to."""
        return await self.group.submit(record)

    async def _write(self, records: list[session_logs.NewSessionLog]) -> list[bool]:
        async with self.pool.acquire() as conn:
            logged = await session_logs.insert_quiet(conn, records, self.keep)
        self.written += len(logged)
        return [record.session_key in logged for record in records]
