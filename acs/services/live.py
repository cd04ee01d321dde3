"""Live updates, fanned out: one LISTEN connection per process (not one per
browser) hears what the writes of every worker and host announced, and each
browser's stream gets the topics it asked for, throttled per topic for the
whole process (acs.core.live.Throttle), so a storm of sessions costs each
page at most one refresh a second."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from acs.core import live as rules
from acs.logs import log
from acs.store import live as store

logger = logging.getLogger("acs.live")

QUEUE_MAX = 64  # topics waiting for one slow browser before it is told to re-fetch all
CHECK_S = 30.0  # how often an idle listening connection is proved alive
BACKOFF_S = (0.5, 1, 2, 5, 10)


@dataclass(eq=False, slots=True)
class Subscriber:
    topics: frozenset[str]
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))

    def offer(self, topic: str) -> None:
        try:
            self.queue.put_nowait(topic)
        except asyncio.QueueFull:
            # too far behind to say what changed: everything may have
            self.queue = asyncio.Queue(QUEUE_MAX)
            self.queue.put_nowait(rules.RESYNC)

    def take_all(self, first: str) -> list[str]:
        """``first`` and whatever else waits, each once."""
        out = {first}
        while not self.queue.empty():
            out.add(self.queue.get_nowait())
        for word in (rules.CLOSED, rules.RESYNC):
            if word in out:
                return [word]
        return sorted(out)


class LiveHub:
    """Started on the first subscriber; reconnects until closed."""

    def __init__(self, dsn: str | None) -> None:
        self.dsn = dsn
        self.clients: set[Subscriber] = set()
        self.throttle = rules.Throttle()
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._sequence = 0

    def next_id(self) -> int:
        """The next event id of this process (the SSE id field)."""
        self._sequence += 1
        return self._sequence

    @property
    def available(self) -> bool:
        return self.dsn is not None and not self._closed

    def subscribe(self, topics: Iterable[str]) -> Subscriber:
        sub = Subscriber(frozenset(topics))
        self.clients.add(sub)
        if self._task is None and self.available:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.clients.discard(sub)

    async def close(self) -> None:
        self._closed = True
        for sub in self.clients:  # end every stream: shutdown need not wait for browsers
            sub.offer(rules.CLOSED)
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    # ---------------------------------------------------------------- hearing

    def heard(self, payload: str) -> None:
        now = time.monotonic()
        for topic in rules.topics_of(payload):
            if self.throttle.hear(topic, now):
                self._send(topic)
        self._arm()

    def _send(self, topic: str) -> None:
        for sub in self.clients:
            if topic in sub.topics or topic == rules.RESYNC:
                sub.offer(topic)

    def _arm(self) -> None:
        due = self.throttle.next_due()
        if due is None or (self._timer is not None and not self._timer.cancelled()):
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, due - time.monotonic()), self._flush)

    def _flush(self) -> None:
        self._timer = None
        for topic in self.throttle.due(time.monotonic()):
            self._send(topic)
        self._arm()

    # ---------------------------------------------------------------- the connection

    async def _run(self) -> None:
        assert self.dsn is not None
        attempt = 0
        first = True
        while not self._closed:
            try:
                listener = await store.listen(self.dsn, self.heard)
            except Exception as exc:  # noqa: BLE001 - whatever failed, retry after a pause
                wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                log(logger, logging.WARNING, "live_listen_failed", error=repr(exc), retry_s=wait)
                await asyncio.sleep(wait)
                continue
            attempt = 0
            self.connected.set()
            log(logger, logging.INFO, "live_listening", channel=rules.CHANNEL)
            if not first:
                # what was written while we were away was not heard: re-fetch all
                self._send(rules.RESYNC)
            first = False
            try:
                while not self._closed:
                    try:
                        await asyncio.wait_for(listener.lost.wait(), CHECK_S)
                        break
                    except TimeoutError:
                        if not await listener.alive():
                            break
            finally:
                self.connected.clear()
                await listener.close()
            if not self._closed:
                log(logger, logging.WARNING, "live_listen_lost", channel=rules.CHANNEL)
