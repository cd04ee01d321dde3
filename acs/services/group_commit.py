"""Writes of many sessions in one statement, as a database groups commits.

At a thousand sessions a second most of a small statement's cost is the
statement itself, not its rows: the round trip, bind, executor start and
commit record in PostgreSQL, a pool checkout and an asyncpg call in the ACS
(BENCHMARKS.md, runs 11-pgperiodic and 13). So callers hand their item to a
GroupCommit and wait: the first item of a batch waits ``window_s`` for others
(none when the window is 0), and every item that arrives while a batch is
being written goes into the next one, so under load batches form by
themselves. Each caller still waits for its own result, as when it wrote
alone.

A batch the write refuses (``refused``) is written again one item at a time,
so one bad item costs only itself; a refused item alone raises to its caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg

from acs.logs import log

logger = logging.getLogger("acs.cwmp")

# a batch's statement the database refused or could not run
STATEMENT_FAILED = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """The items waiting to be written, and the one task writing them."""

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[list[Result]]],
        *,
        window_s: float,
        max_batch: int,
        refused: tuple[type[BaseException], ...],
        name: str,
    ) -> None:
        self._write_batch = write  # one result per item, in the items' order
        self.window_s = window_s
        self.max_batch = max_batch
        self.refused = refused
        self.name = name  # in the log line of a split batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._first_at = 0.0  # when the oldest waiting item arrived (monotonic)
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # statements that succeeded, for tests and benchmarks

    async def submit(self, item: Item) -> Result:
        """Write ``item`` with whatever else is waiting; its own result."""
        # a cancelled caller does not take its item out of a batch being written
        return await asyncio.shield(self.enqueue(item))

    def enqueue(self, item: Item) -> asyncio.Future[Result]:
        """``item`` on its way into a batch; the future of its result."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        if not self._waiting:
            self._first_at = time.monotonic()
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        return future

    async def _write_all(self) -> None:
        # no item can slip in between the last look at ``_waiting`` and ``_writer``
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

    async def _write(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._write_batch([item for item, _ in batch])
        except self.refused as exc:
            if len(batch) > 1:
                log(logger, logging.INFO, f"{self.name}_split", items=len(batch), error=exc)
                for one in batch:
                    await self._write([one])
                return
            _settle(batch[0][1], exc)
            return
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # a bug: every caller hears of it, none hangs
            log(logger, logging.ERROR, f"{self.name}_failed", items=len(batch), error=repr(exc))
            for _, future in batch:
                _settle(future, exc)
            return
        self.batches += 1
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)


def _settle(future: asyncio.Future[Result], outcome: Result | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
