"""Periodic Informs that change nothing, opened together: one statement for many.

Most Informs of a fleet are a known device's `2 PERIODIC` repeating what the
ACS already holds (the Inform digest of acs.store.sessions matches, no device
column differs). For those the Inform's statement only takes the device lock,
says when the device was heard and reads whether work waits, and at a
thousand sessions a second most of its cost is the statement itself. So they
are grouped (acs.services.group_commit) into acs.store.sessions.open_repeated;
what that statement leaves alone (something changed, the lock is held, the
device is unknown, the batch failed) is opened one by one as before, by the
caller.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from acs.logs import log
from acs.services.group_commit import STATEMENT_FAILED, GroupCommit
from acs.store import devices, sessions

logger = logging.getLogger("acs.cwmp")

Inform = tuple[devices.InformRecord, str]  # the Inform and its new session id


class SessionOpens:
    """Periodic Informs waiting to be opened together."""

    def __init__(self, pool: asyncpg.Pool, ttl_s: float, window_s: float, max_batch: int) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self.group: GroupCommit[Inform, sessions.Opened | None] = GroupCommit(
            self._write, window_s=window_s, max_batch=max_batch, refused=(), name="session_opens"
        )
        self.opened = 0  # sessions opened by a grouped statement, for tests and benchmarks
        self.failed = 0  # grouped statements that failed
        self._orphans: set[asyncio.Task[None]] = set()

    @property
    def batches(self) -> int:
        return self.group.batches

    async def open(self, record: devices.InformRecord, session_id: str) -> sessions.Opened | None:
        """The session opened with others' (its lock taken, the Inform recorded);
        None when the grouped statement left it alone: open it the single way."""
        future = self.group.enqueue((record, session_id))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # the handler is gone, but its batch may still take the lock: once the
            # batch is written, a lock it took is given back
            future.add_done_callback(
                lambda done: self._release_if_opened(done, record.device_id, session_id)
            )
            raise

    def _release_if_opened(
        self, done: asyncio.Future[sessions.Opened | None], device_id: str, session_id: str
    ) -> None:
        if done.cancelled() or done.exception() is not None or done.result() is None:
            return

        async def release() -> None:
            async with self.pool.acquire() as conn:
                await sessions.release_session(conn, device_id, session_id)

        task = asyncio.create_task(release())
        self._orphans.add(task)  # held, so that the loop does not drop it
        task.add_done_callback(self._orphans.discard)

    async def _write(self, informs: list[Inform]) -> list[sessions.Opened | None]:
        try:
            async with self.pool.acquire() as conn:
                opened = await sessions.open_repeated(conn, informs, self.ttl_s)
        except STATEMENT_FAILED as exc:
            # each Inform takes its own statement instead, which meets the same
            # error alone if the database is really gone
            log(logger, logging.INFO, "session_opens_failed", informs=len(informs), error=exc)
            self.failed += 1
            return [None] * len(informs)
        self.opened += len(opened)
        return [opened.get(session_id) for _, session_id in informs]
