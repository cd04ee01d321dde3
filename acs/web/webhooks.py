"""The webhook sender: delivers the outbox (acs/store/webhooks.py) over HTTP.

One asyncio task per ACS process. It claims due deliveries, POSTs each in its
own task and records the outcome; several processes share the outbox safely
(claims are leased with SKIP LOCKED). Rules that keep it from hurting the rest:

- at most ``webhook_concurrency`` requests in flight, and at most
  ``webhook_per_hook_concurrency`` to one hook, so a hook that hangs holds a
  few slots for ``webhook_timeout_s`` and every other hook goes on;
- a database connection is held only to claim or record, never during HTTP,
  so deliveries cannot starve CWMP sessions of connections;
- delivery is at least once: a sender that dies mid-request leaves its claim
  to expire, and the row is sent again. Receivers drop duplicates by the
  event's ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

import aiohttp
import asyncpg

from acs.config import Settings
from acs.core import webhooks as rules
from acs.logs import log
from acs.store import webhooks as store
from acs.store.db import UNAVAILABLE

logger = logging.getLogger("acs.webhooks")

# the project's one list of "the database is unavailable": it includes the
# InternalClientError asyncpg raises when PostgreSQL stops mid-query, which this
# sender's own copy of the list lacked (a restart logged a sender error)
DB_ERRORS = UNAVAILABLE


class WebhookSender:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self._http: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[asyncio.Task[None], int] = {}  # delivery task -> hook id
        self._wake = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=s.webhook_concurrency),
            timeout=aiohttp.ClientTimeout(total=s.webhook_timeout_s),
            # a hook's answer is not a place to pick up cookies for the next one
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._loop_task = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._inflight) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # bounded: shutting down must not hang on a task that will not end
            _done, stuck = await asyncio.wait(tasks, timeout=5)
            if stuck:
                log(logger, logging.ERROR, "webhook_sender_stuck", tasks=len(stuck))
        # cancelled deliveries keep their claim and are sent again once it expires
        self._inflight.clear()
        if self._http is not None:
            await self._http.close()

    # ------------------------------------------------------------ the loop

    async def _run(self) -> None:
        s = self.settings
        while True:
            self._wake.clear()
            free = s.webhook_concurrency - len(self._inflight)
            if free > 0:
                try:
                    await self._claim_and_send(free)
                except DB_ERRORS as exc:
                    log(logger, logging.WARNING, "webhook_claim_failed", error=exc)
                except Exception:  # the sender must outlive any one bad round
                    logger.exception("event=webhook_sender_error")
            # Either every slot is busy or nothing more is due: look again when a
            # delivery ends (it frees a slot, and its hook may have more) or
            # after a poll (new events, retries coming due).
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that lands as its timeout fires, and stop() would then
            # wait for this loop forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.webhook_poll_s):
                    await self._wake.wait()

    async def _claim_and_send(self, free: int) -> int:
        s = self.settings
        per_hook = s.webhook_per_hook_concurrency
        busy_count = Counter(self._inflight.values())
        busy = [hook for hook, n in busy_count.items() if n >= per_hook]
        # the lease outlasts the request it covers, with room for recording the outcome
        lease_s = s.webhook_timeout_s * 2 + 30
        async with self.pool.acquire() as conn:
            claimed = await store.claim(
                conn, limit=free, per_hook=per_hook, busy=busy, lease_s=lease_s
            )
            # a hook with deliveries in flight may have less room than a whole
            # per_hook batch: hand the rest back at once
            taken: list[store.Delivery] = []
            extra: list[int] = []
            for d in claimed:
                if busy_count[d.webhook_id] < per_hook:
                    busy_count[d.webhook_id] += 1
                    taken.append(d)
                else:
                    extra.append(d.id)
            if extra:
                await store.release(conn, extra)
        for delivery in taken:
            task = asyncio.create_task(self._deliver(delivery))
            self._inflight[task] = delivery.webhook_id
            task.add_done_callback(self._done)
        return len(taken)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            # a bug, not a hook's failure: say so; the claim expires and it is retried
            log(logger, logging.ERROR, "webhook_delivery_crashed", error=repr(task.exception()))

    # ------------------------------------------------------------ one delivery

    async def _deliver(self, d: store.Delivery) -> None:
        assert self._http is not None
        body = rules.body_of(d.payload)
        headers = {
            "Content-Type": "application/json",
            rules.EVENT_HEADER: d.event_type,
            rules.SIGNATURE_HEADER: rules.signature(d.secret, body),
            rules.DELIVERY_HEADER: str(d.id),
            "User-Agent": "acs-webhooks/1",
        }
        status: int | None = None
        error: str | None = None
        try:
            # no redirects: a hook answers where it was registered
            async with self._http.post(
                d.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                if not 200 <= status < 300:
                    text = (await resp.content.read(300)).decode("utf-8", errors="replace")
                    error = f"HTTP {status}: {text.strip()}" if text.strip() else f"HTTP {status}"
        except TimeoutError:
            error = f"timeout: no answer within {self.settings.webhook_timeout_s:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except ValueError as exc:  # e.g. a URL aiohttp cannot use
            error = f"invalid request: {exc}"
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        try:
            await self._record(d, status, error)
        except DB_ERRORS as exc:
            # the claim expires and the delivery is tried again: at least once
            log(logger, logging.WARNING, "webhook_record_failed", delivery=d.id, error=exc)

    async def _record(self, d: store.Delivery, status: int | None, error: str | None) -> None:
        s = self.settings
        async with self.pool.acquire() as conn:
            if error is None:
                assert status is not None
                await store.mark_delivered(conn, d.id, status)
                log(
                    logger,
                    logging.INFO,
                    "webhook_delivered",
                    hook=d.webhook_id,
                    delivery=d.id,
                    event_type=d.event_type,
                    status=status,
                )
                return
            state = await store.mark_failed(
                conn,
                d.id,
                status=status,
                error=error,
                retry_in_s=rules.retry_delay(d.attempts + 1, s.webhook_retry_base_s),
                max_attempts=s.webhook_max_attempts,
            )
        log(
            logger,
            logging.WARNING,
            "webhook_abandoned" if state == "abandoned" else "webhook_failed",
            hook=d.webhook_id,
            delivery=d.id,
            event_type=d.event_type,
            attempt=d.attempts + 1,
            error=error,
        )
