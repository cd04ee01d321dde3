"""Waiting for knocked devices to open their session: one watcher per process.

A UDP or XMPP connection request has no answer of its own; it is done when
the device opens a session with "6 CONNECTION REQUEST". Each knock used to
read its device row every 100 ms, so 1,000 knocks at once were 10,000 reads a
second on the pool that the arriving sessions need. Here every waiting knock
registers with the process's watcher, and the watcher asks PostgreSQL about
all of them in one statement per tick (``nat.connection_requests_arrived``),
which also says where each device's STUN binding points now: the UDP sender
follows a moved binding from that answer instead of a read of its own.

Why polling and not LISTEN/NOTIFY: a NOTIFY would have to be raised by every
Inform's write (a trigger on the hottest row of the schema, paid by every
session of the fleet, knocked or not) and need one more connection per
process held for LISTEN; the batched read costs nothing while no knock waits
and one indexed statement per tick while any do (BENCHMARKS.md has both
figures). A tick adds at most its interval to a knock's reported time; the
session itself starts when the CPE acts on the datagram.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg

from acs.logs import log
from acs.services.knock_reads import KnockReads
from acs.store import nat

logger = logging.getLogger("acs.connreq")

TICK_S = 0.1  # how often the waiting knocks are checked, all in one statement


class Arrival:
    """One knock's wait for its session, fed by the watcher."""

    __slots__ = ("device_id", "since", "binding", "_event", "_watcher")

    def __init__(self, watcher: ArrivalWatcher, device_id: str, since: datetime) -> None:
        self.device_id, self.since = device_id, since
        self.binding: tuple[str, int] | None = None  # the device's binding as last read
        self._event = asyncio.Event()
        self._watcher = watcher

    @property
    def seen(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout_s: float) -> bool:
        """True as soon as the session is seen; False when ``timeout_s`` passes first
        (0: what the watcher knows now, without waiting)."""
        if self._event.is_set():
            return True
        if timeout_s <= 0:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            return False
        return True

    async def moved(self) -> tuple[str, int] | None:
        """Where the binding points now (the UDP sender's retarget), from the last tick."""
        return self.binding

    def close(self) -> None:
        self._watcher._waiting.discard(self)


class ArrivalWatcher:
    """Every waiting knock of one process, checked in one statement per tick."""

    def __init__(self, pool: asyncpg.Pool, tick_s: float = TICK_S) -> None:
        self._pool, self.tick_s = pool, tick_s
        self._waiting: set[Arrival] = set()
        self._task: asyncio.Task[None] | None = None
        self.queries = 0  # statements issued, for tests and curiosity
        # the knocks' opening reads, batched the same way; kept here because the
        # watcher is already the one per-process object every knock is handed
        self.reads = KnockReads(pool)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def watch(self, device_id: str, since: datetime) -> Arrival:
        """Start watching for the device's session since ``since``; close() the
        Arrival when the knock is over, whatever its outcome."""
        arrival = Arrival(self, device_id, since)
        self._waiting.add(arrival)
        # the loop runs only while someone waits: an idle ACS issues no statement
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="knock-arrivals")
        return arrival

    async def _run(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.tick_s)
            await self.check()

    async def check(self) -> None:
        """One tick: every waiting knock whose session is not seen yet, one statement."""
        batch = [a for a in self._waiting if not a.seen]
        if not batch:
            return
        try:
            async with self._pool.acquire() as conn:
                rows = await nat.connection_requests_arrived(
                    conn, [(a.device_id, a.since) for a in batch]
                )
        except (asyncpg.PostgresError, OSError) as exc:
            # the database away for a moment: the knocks keep waiting, the next tick retries
            log(logger, logging.WARNING, "knock_watch_failed", waiting=len(batch), error=repr(exc))
            return
        self.queries += 1
        for arrival, (_dev, _since, arrived, address, port) in zip(batch, rows, strict=True):
            if address is not None and port is not None:
                arrival.binding = (address, port)
            if arrived:
                arrival._event.set()
