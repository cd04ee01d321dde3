"""Quiet sessions' ends, written together: one statement for many sessions.

A quiet periodic session (acs.core.session_log.is_quiet: `2 PERIODIC`, its
Inform answered, the empty POST, the 204) ends with one write and no job's
state in it: its log row without bodies and its device lock given back. At a
thousand sessions a second most of that statement's PostgreSQL CPU is the
statement itself, not its rows (round trip, bind, executor start, commit
record: about 0.25 ms of the end's ~0.45 ms, BENCHMARKS.md), and on the ACS
each costs a pool checkout and an asyncpg call.

So ends are grouped, as a database groups commits: the first end of a batch
waits ``window_s`` for others (none when the window is 0), and every end that
arrives while a batch is being written goes into the next one. Each session
still waits for its own row before its 204 is sent, as when it was written
alone: whoever reads the device's sessions after the 204 finds it, and an
ACS that stops (or crashes) before the write has not answered the CPE yet.

A batch the database refuses (a device deleted between the statement's
snapshot and its insert) is written again one session at a time, so one bad
row costs only itself.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from acs.logs import log
from acs.store import session_logs

logger = logging.getLogger("acs.cwmp")

# a session log that could not be written (the device deleted meanwhile, the
# database gone): the session's own work stands
LOG_REFUSED = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class SessionEnds:
    """The quiet ends waiting to be written, and the one task writing them."""

    def __init__(self, pool: asyncpg.Pool, keep: int, window_s: float, max_batch: int) -> None:
        self.pool = pool
        self.keep = keep  # sessions kept per device (ACS_SESSION_LOG_PER_DEVICE)
        self.window_s = window_s
        self.max_batch = max_batch
        self._waiting: list[tuple[session_logs.NewSessionLog, asyncio.Future[bool]]] = []
        self._first_at = 0.0  # when the oldest waiting end arrived (monotonic)
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # statements written, for tests and benchmarks
        self.written = 0

    async def end(self, record: session_logs.NewSessionLog) -> bool:
        """Log a quiet session (``record.elided`` given) and release its device lock;
        True once both are written, False if its row could not be (the caller
        then gives the lock back alone). Database errors of a whole batch
        written alone are raised to the session they belong to."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            self._first_at = time.monotonic()
        self._waiting.append((record, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        # a cancelled handler does not take its row out of a batch being written
        return await asyncio.shield(future)

    async def _write_all(self) -> None:
        # no end can slip in between the last look at ``_waiting`` and ``_writer``
        # going back to None: nothing is awaited in between
        try:
            while self._waiting:
                late = self.window_s - (time.monotonic() - self._first_at)
                if late > 0 and len(self._waiting) < self.max_batch:
                    await asyncio.sleep(late)
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                if self._waiting:  # more than a batch waited: the rest goes at once
                    self._first_at = 0.0
                await self._write(batch)
        except asyncio.CancelledError:  # the loop is stopping: nobody waits in vain
            for _, future in self._waiting:
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._writer = None

    async def _write(
        self, batch: list[tuple[session_logs.NewSessionLog, asyncio.Future[bool]]]
    ) -> None:
        records = [record for record, _ in batch]
        try:
            async with self.pool.acquire() as conn:
                logged = await session_logs.insert_quiet(conn, records, self.keep)
        except LOG_REFUSED as exc:
            if len(batch) > 1:
                log(logger, logging.INFO, "session_ends_split", sessions=len(batch), error=exc)
                for one in batch:
                    await self._write([one])
                return
            _settle(batch[0][1], exc)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        self.batches += 1
        self.written += len(logged)
        for record, future in batch:
            _settle(future, record.session_key in logged)


def _settle(future: asyncio.Future[bool], outcome: bool | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
