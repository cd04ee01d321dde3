"""A knock's opening reads, many knocks in one statement: one reader per process.

Before its first datagram a knock needs the device's credentials and what the
ACS knows of how to reach it (URL, STUN binding, UDPConnectionRequestAddress,
NATDetected, JID). Read per knock that was three statements and a pool
checkout each; 1,000 knocks at once (a fleet's API calls, a campaign's stage)
queued 3,000 statements on the pool behind the sessions they start, and on a
loaded worker many knocks' time was gone before they tried a channel
(BENCHMARKS.md, run 8: "nothing tried"). Here a knock asks the process's
reader, and the reader sends everything asked since its last statement in one
``nat.knock_contexts``: at most one statement in flight, the knocks that come
while it runs go together in the next. A lone knock waits one loop turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from acs.store import nat

MAX_BATCH = 1000  # devices per statement: bounds the arrays PostgreSQL unnests


class KnockReads:
    """Every starting knock of one process, read in one statement per batch."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = MAX_BATCH) -> None:
        self._pool, self.max_batch = pool, max_batch
        self._queued: dict[str, list[asyncio.Future[Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.queries = 0  # statements issued, for tests and curiosity

    async def context(self, device_id: str) -> Any:
        """The device's ``nat.knock_contexts`` row, or None for an unknown device."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(device_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="knock-reads")
        return await future

    async def _run(self) -> None:
        while self._queued:
            # one loop turn: the knocks of the same burst (gather, a campaign's
            # stage, API calls read from one socket buffer) join this statement
            await asyncio.sleep(0)
            ids = list(self._queued)[: self.max_batch]
            batch = {d: self._queued.pop(d) for d in ids}
            try:
                async with self._pool.acquire() as conn:
                    rows = await nat.knock_contexts(conn, ids)
            except asyncio.CancelledError:
                for futures in (*batch.values(), *self._queued.values()):
                    for f in futures:
                        f.cancel()
                self._queued.clear()
                raise
            except Exception as exc:  # noqa: BLE001 - each knock of the batch gets it
                # what each knock's own read would have raised: the caller decides
                for futures in batch.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc)
                continue
            self.queries += 1
            for row in rows:
                for f in batch[row["device_id"]]:
                    if not f.done():  # a knock whose caller went away meanwhile
                        f.set_result(row if row["known"] else None)
