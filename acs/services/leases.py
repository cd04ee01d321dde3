"""One host runs each kind of periodic work: leases kept in PostgreSQL (acs.store.leases).

Every ACS host (worker 0 of each ``acs serve``) runs a ``LeaseKeeper``: it
takes the leases nobody holds and renews its own every third of the lease
duration. Its scheduler still fires every tick, but a tick does its work only
through ``run``, inside a transaction that holds the lease row locked and
proves this process still holds it, so a tick runs on one host at a time.

A host that dies stops renewing; its leases expire ``ACS_LEASE_DURATION_S``
later by the database's clock, and the next renewal of another host takes
them. A host that loses the database cannot renew either: once a full lease
duration has passed since its last successful renewal it counts its leases as
lost (its own monotonic clock can only make it give up early, never take
anything), and long-running work tied to a lease (the webhook sender) stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from uuid import uuid4

import asyncpg

from acs.logs import log
from acs.store import leases as store
from acs.store.db import UNAVAILABLE

logger = logging.getLogger("acs.leases")

# the kinds of periodic work; each is one lease row
EXPIRE_TRANSFERS = "expire_transfers"
EXPIRE_DIAGNOSTICS = "expire_diagnostics"
CAMPAIGNS = "campaigns"
BULK_JOBS = "bulk_jobs"
RETENTION = "retention"
WEBHOOKS = "webhooks"
HISTORY = "history_online"
ALL = (EXPIRE_TRANSFERS, EXPIRE_DIAGNOSTICS, CAMPAIGNS, BULK_JOBS, RETENTION, WEBHOOKS, HISTORY)

# a tick handed over to a host whose scheduler is out of phase waits for at
# least this share of its interval since the last run, by anyone
MIN_GAP_SHARE = 0.5

Changed = Callable[[frozenset[str], frozenset[str]], Awaitable[None]]  # (gained, lost)


class LeaseKeeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        host: str,
        duration_s: float,
        names: tuple[str, ...] = ALL,
        *,
        on_change: Changed | None = None,
        on_tick: Callable[[str], None] | None = None,
    ) -> None:
        self.pool = pool
        self.host = host
        self.duration_s = duration_s
        self.names = list(names)
        self.holder_id = uuid4()  # this process: a restarted host is a new holder
        self.held: frozenset[str] = frozenset()
        self.on_change = on_change
        self.on_tick = on_tick
        self._renewed_at: float | None = None  # monotonic, of the last successful renewal
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                await store.ensure(conn, self.names)
        except UNAVAILABLE as exc:  # the loop retries; serving CWMP need not wait
            log(logger, logging.WARNING, "lease_renew_failed", host=self.host, error=exc)
        await self.renew()
        self._task = asyncio.create_task(self._loop(), name="lease-keeper")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.duration_s / 3)
            await self.renew()

    async def renew(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                await store.ensure(conn, self.names)
                got = frozenset(
                    await store.take_or_renew(
                        conn, self.names, self.host, self.holder_id, self.duration_s
                    )
                )
        except UNAVAILABLE as exc:
            log(logger, logging.WARNING, "lease_renew_failed", host=self.host, error=exc)
            now = time.monotonic()
            if self._renewed_at is not None and now - self._renewed_at < self.duration_s:
                return  # what we hold has not run out yet, whatever the database says
            got = frozenset()
        else:
            self._renewed_at = time.monotonic()
        # a row locked by our own running tick was skipped, not lost: that tick extended it
        await self._set(got)

    async def _set(self, got: frozenset[str]) -> None:
        gained, lost = got - self.held, self.held - got
        self.held = got
        if gained:
            log(
                logger, logging.INFO, "lease_taken", host=self.host, leases=",".join(sorted(gained))
            )
        if lost:
            log(
                logger, logging.WARNING, "lease_lost", host=self.host, leases=",".join(sorted(lost))
            )
        if (gained or lost) and self.on_change is not None:
            await self.on_change(gained, lost)

    async def run(
        self, name: str, interval_s: float, work: Callable[[], Awaitable[object]]
    ) -> bool:
        """Do ``work`` now if this process holds lease ``name`` and the tick is due; True if
        it ran. The lease row stays locked until the work is done (see acs.store.leases)."""
        if name not in self.held:
            return False  # no round trip on the hosts that do not lead
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                if not await store.run_tick(
                    conn, name, self.holder_id, self.duration_s, interval_s * MIN_GAP_SHARE
                ):
                    return False
                await work()
        except UNAVAILABLE as exc:
            # the work's own writes are committed or not by their own transactions;
            # the tick is idempotent by design and the next one picks up
            log(logger, logging.WARNING, "tick_failed", tick=name, error=exc)
            return False
        if self.on_tick is not None:
            self.on_tick(name)
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:  # a clean stop hands the leases over at once instead of after their expiry
            async with asyncio.timeout(5):
                async with self.pool.acquire() as conn:
                    await store.release(conn, self.holder_id)
        except UNAVAILABLE as exc:
            log(logger, logging.WARNING, "lease_release_failed", host=self.host, error=exc)
        await self._set(frozenset())
