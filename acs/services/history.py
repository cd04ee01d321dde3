"""The fleet's history, written by the ACS itself (acs.core.history).

Every process already counts what it serves in its Prometheus metrics; its
recorder adds what those counters gained since the last flush to the current
5-minute bucket, every ``flush_s`` and once more when the process stops. A
flush that fails (the database is away) keeps its counts for the next one,
so nothing is lost but the bucket they land in. One process (worker 0) also
writes the online-devices level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter

from acs.core.history import bucket_of
from acs.logs import log
from acs.metrics import ABANDONED, COMPLETED, Metrics
from acs.store import history as store

logger = logging.getLogger("acs.history")

# the window in which a device counts as online: it Informed within the hour
ONLINE_WINDOW_S = 3600.0


def _total(counter: Counter, keep: Callable[[dict[str, str]], bool] = lambda _l: True) -> int:
    total = 0.0
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and keep(sample.labels):
                total += sample.value
    return int(total)


def totals(metrics: Metrics) -> dict[str, int]:
    """What this process has served since it started, per history series."""
    served = (COMPLETED, ABANDONED)
    return {
        "sessions": _total(metrics.sessions, lambda lab: lab["outcome"] in served),
        "sessions_abandoned": _total(metrics.sessions, lambda lab: lab["outcome"] == ABANDONED),
        "boots": _total(metrics.inform_events, lambda lab: lab["event"] == "1 BOOT"),
        "cpe_faults": _total(metrics.cpe_faults),
        "jobs_faulted": _total(metrics.jobs_finished, lambda lab: lab["state"] == "fault"),
        "connection_requests": _total(metrics.connection_requests),
        "connection_requests_failed": _total(
            metrics.connection_requests, lambda lab: lab["outcome"] != "accepted"
        ),
    }


class HistoryRecorder:
    def __init__(
        self, pool: asyncpg.Pool, metrics: Metrics, flush_s: float, *, online: bool
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.flush_s = flush_s
        self.online = online
        self.flushed = {name: 0 for name in totals(metrics)}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="history")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()

    async def flush(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        current = totals(self.metrics)
        gained = {k: v - self.flushed[k] for k, v in current.items() if v > self.flushed[k]}
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await store.add(conn, bucket_of(now), gained)
                if self.online:
                    await store.set_online(conn, bucket_of(now), ONLINE_WINDOW_S)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log(logger, logging.WARNING, "history_flush_failed", error=repr(err))
            return  # the counts stay owed: the next flush adds them
        self.flushed = current

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # shutting down: the database may be gone
            await asyncio.wait_for(self.flush(), timeout=5)
