"""Bulk jobs at work: the snapshot at creation, operator controls, the tick.

A bulk job applies one task (any GenieACS task name) to every device its
filter matched when it was created. The periodic tick queues the next
devices' tasks as fast as the job's rate allows, optionally knocking on each,
and completes the job once every device's task has ended. All state is in
PostgreSQL and each step is one transaction under the job's row lock, so a
restart, or a second ACS process ticking too, neither repeats nor skips a
device and never exceeds the rate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from acs.connreq.http import ConnectionRequestResult
from acs.core import bulk as rules
from acs.core import bulk_schedule, knocks
from acs.core import tasks as task_rules
from acs.core.filters import Expr
from acs.logs import log
from acs.services import jobs
from acs.store import bulk_jobs as store
from acs.store import device_query
from acs.store import tasks as task_store

logger = logging.getLogger("acs.bulk")

#: devices one job queues per tick at most, whatever its rate: a tick must end
#: well within its interval; tokens not used wait (up to the burst) for the next
MAX_PER_TICK = 1000
#: connection requests in flight for one job's tick (the requester has its own
#: process-wide limit too); each also borrows a pool connection briefly
KNOCK_CONCURRENCY = 16

Knock = Callable[[str], Awaitable[ConnectionRequestResult]]


class ControlError(Exception):
    """An operator action that does not fit the job's status (API 409)."""


class InvalidFilter(ValueError):
    """A parsed filter the SQL compiler refuses (API 400)."""


def _compiled(expr: Expr | None) -> tuple[str, list[object]]:
    try:
        return device_query.compile_filter(expr)
    except ValueError as err:
        raise InvalidFilter(str(err)) from None


def unique_key(bulk_id: int) -> str:
    """The key of every task a job queues: queuing a device again replaces its
    pending task instead of adding a second one."""
    return f"bulk-{bulk_id}"


# --------------------------------------------------------------------------- creation


@dataclass(slots=True)
class Preview:
    total: int
    sample: list[str]


async def preview(
    conn: asyncpg.Connection,
    expr: Expr | None,
    task_name: str,
    task_args: dict[str, Any],
    sample: int = 20,
) -> Preview:
    """What create() would snapshot, written nowhere: the dry run. It refuses
    what create() would refuse."""
    _compiled(expr)
    await jobs.check_file(conn, task_name, task_args)
    page = await device_query.list_devices(conn, expr, limit=sample)
    return Preview(page.total, [item["id"] for item in page.items])


async def create(
    conn: asyncpg.Connection,
    expr: Expr | None,
    *,
    name: str,
    task_name: str,
    task_args: dict[str, Any],
    filter_text: str,
    rate_per_minute: int,
    connection_request: bool,
    expiry_s: int | None,
    created_by: str | None,
    schedule: bulk_schedule.Schedule | None = None,
) -> store.BulkJob:
    """Create a running job with its devices. The arguments must already be
    valid (acs.core.tasks.validate_task); a filter the compiler refuses raises
    InvalidFilter, a download of a file we do not have jobs.UnknownFile, before
    anything is written."""
    where, params = _compiled(expr)
    await jobs.check_file(conn, task_name, task_args)
    async with conn.transaction():
        job = await store.create(
            conn,
            name=name,
            task_name=task_name,
            task_args=task_args,
            filter=filter_text,
            rate_per_minute=rate_per_minute,
            connection_request=connection_request,
            expiry_s=expiry_s,
            created_by=created_by,
            start_at=None if schedule is None else schedule.start_at,
            windows=[] if schedule is None else schedule.as_json(),
        )
        total = await store.snapshot(conn, job.id, where, params)
        if total == 0:
            await store.set_status(
                conn,
                job.id,
                "completed",
                "no device matched the filter",
                expect=("running",),
                finished=True,
            )
        created = await store.get(conn, job.id)
    assert created is not None
    log(
        logger,
        logging.INFO,
        "bulk_job_created",
        bulk=created.id,
        task=task_name,
        devices=total,
        rate=rate_per_minute,
        by=created_by,
    )
    return created


# --------------------------------------------------------------------------- controls


async def _locked(
    conn: asyncpg.Connection, bulk_id: int, allowed: tuple[str, ...], what: str
) -> None:
    job = await store.get(conn, bulk_id, lock=True)
    if job is None:
        raise LookupError(bulk_id)
    if job.status not in allowed:
        raise ControlError(
            f"cannot {what} a bulk job that is {job.status} (only when {' or '.join(allowed)})"
        )


async def cancel(conn: asyncpg.Connection, bulk_id: int, who: str) -> store.BulkJob:
    """Stop queuing and withdraw the tasks no session has picked yet."""
    async with conn.transaction():
        # the row lock waits for a tick that is queuing this job right now, so
        # its tasks are withdrawn too and no later tick queues more
        await _locked(conn, bulk_id, ("running", "paused"), "cancel")
        withdrawn = await store.cancel_pending_tasks(conn, bulk_id)
        job = await store.set_status(
            conn,
            bulk_id,
            "cancelled",
            f"cancelled by {who}; {withdrawn} pending task(s) withdrawn",
            expect=("running", "paused"),
            finished=True,
        )
    assert job is not None
    log(logger, logging.INFO, "bulk_job_cancelled", bulk=bulk_id, withdrawn=withdrawn, by=who)
    return job


async def pause(conn: asyncpg.Connection, bulk_id: int, who: str) -> store.BulkJob:
    """Stop queuing; tasks already queued still run when their devices come."""
    async with conn.transaction():
        await _locked(conn, bulk_id, ("running",), "pause")
        job = await store.set_status(
            conn, bulk_id, "paused", f"paused by {who}", expect=("running",)
        )
    assert job is not None
    log(logger, logging.INFO, "bulk_job_paused", bulk=bulk_id, by=who)
    return job


async def resume(conn: asyncpg.Connection, bulk_id: int, who: str) -> store.BulkJob:
    """Queue again, at the job's rate from now on: the pause earned no tokens."""
    async with conn.transaction():
        await _locked(conn, bulk_id, ("paused",), "resume")
        job = await store.set_status(
            conn,
            bulk_id,
            "running",
            f"resumed by {who}",
            expect=("paused",),
            restart_rate_at_queued=True,
        )
    assert job is not None
    log(logger, logging.INFO, "bulk_job_resumed", bulk=bulk_id, by=who)
    return job


# --------------------------------------------------------------------------- the tick


async def tick(pool: asyncpg.Pool, knock: Knock | None, tick_s: float) -> None:
    """One round over the running jobs: queue what the rate allows, knock on
    those devices if the job asks for it, complete jobs whose tasks all ended."""
    async with pool.acquire() as conn:
        for bulk_id in await store.open_ids(conn):
            try:
                await tick_job(conn, bulk_id, knock, tick_s)
            except (asyncpg.PostgresError, OSError) as exc:
                # one job's trouble (a lock timeout, say) must not stall the others
                log(logger, logging.WARNING, "bulk_tick_failed", bulk=bulk_id, error=exc)


async def tick_job(
    conn: asyncpg.Connection, bulk_id: int, knock: Knock | None, tick_s: float
) -> None:
    if not await may_send(conn, bulk_id):
        # before its start time, or outside its windows: queue and knock nothing
        await complete_if_done(conn, bulk_id)
        return
    job, queued = await queue_due(conn, bulk_id, tick_s)
    if job is None:
        return  # paused, cancelled or ticked by another process meanwhile
    if job.connection_request and knock is not None:
        if queued:
            await knock_devices(conn, bulk_id, queued, knock)
        again = await store.claim_knocks_again(conn, bulk_id, MAX_PER_TICK)
        if again:
            log(logger, logging.INFO, "bulk_job_knocked_again", bulk=bulk_id, devices=len(again))
            await knock_devices(conn, bulk_id, again, knock)
    await complete_if_done(conn, bulk_id)


def schedule_of(job: store.BulkJob) -> bulk_schedule.Schedule:
    return bulk_schedule.from_stored(job.start_at, job.windows)


def held(job: store.BulkJob) -> str | None:
    """Why a running job does not send now (its start time, its windows), or None."""
    if job.status != "running":
        return None
    return bulk_schedule.held(schedule_of(job), datetime.now(UTC))


async def may_send(conn: asyncpg.Connection, bulk_id: int) -> bool:
    """Whether the job may queue now. At its start time it is marked started;
    when its window closes, the tasks no session has taken yet are withdrawn,
    to be queued again at the next opening."""
    job = await store.get(conn, bulk_id)
    if job is None or (job.start_at is None and not job.windows):
        return True
    now = datetime.now(UTC)
    schedule = schedule_of(job)
    if schedule.start_at is not None and schedule.start_at > now:
        return False
    if job.started_at is None:
        await store.mark_started(conn, bulk_id)
    if bulk_schedule.held(schedule, now) is None:
        return True
    async with conn.transaction():
        if await store.lock_running(conn, bulk_id) is None:
            return False
        withdrawn = await store.withdraw_unsent(conn, bulk_id)
    if withdrawn:
        log(logger, logging.INFO, "bulk_job_window_closed", bulk=bulk_id, withdrawn=withdrawn)
    return False


async def queue_due(
    conn: asyncpg.Connection, bulk_id: int, tick_s: float
) -> tuple[store.BulkJob | None, list[str]]:
    """Queue the tasks of the devices the rate allows now; return the job and
    the devices queued (job None: not running, or locked by another ticker)."""
    async with conn.transaction():
        locked = await store.lock_running(conn, bulk_id)
        if locked is None:
            return None, []
        job, elapsed_ms = locked
        allowed = rules.allowance(
            job.rate_per_minute,
            elapsed_ms,
            job.queued,
            rules.burst_for(job.rate_per_minute, tick_s),
        )
        take = min(allowed.take, MAX_PER_TICK)
        expires = (
            None if job.expiry_s is None else datetime.now(UTC) + timedelta(seconds=job.expiry_s)
        )
        queued: list[tuple[str, int]] = []
        skipped = 0
        # a skipped device uses none of the rate (nothing is sent to it), so
        # the tick looks further, up to MAX_PER_TICK devices looked at
        while len(queued) < take and len(queued) + skipped < MAX_PER_TICK:
            want = min(take - len(queued), MAX_PER_TICK - len(queued) - skipped)
            candidates = await store.next_devices(conn, bulk_id, want)
            if not candidates:
                break
            batch: list[tuple[str, int]] = []
            skips: list[tuple[str, str]] = []
            for device_id, cwmp_seen in candidates:
                reason = task_rules.never_runs(job.task_name, device_id, cwmp_seen=cwmp_seen)
                if reason is not None:
                    skips.append((device_id, reason))
                    continue
                try:
                    task = await task_store.enqueue(
                        conn,
                        device_id,
                        job.task_name,
                        job.task_args,
                        expires_at=expires,
                        unique_key=unique_key(job.id),
                    )
                except asyncpg.ForeignKeyViolationError:
                    # the device was deleted since the snapshot; its row here goes
                    # with it, and enqueue's savepoint kept the rest of this tick
                    continue
                batch.append((device_id, task.id))
            await store.mark_skipped(conn, bulk_id, skips)
            if batch:
                await store.mark_queued(conn, bulk_id, batch, 0)
            queued += batch
            skipped += len(skips)
        if allowed.epoch_shift_ms:
            await store.mark_queued(conn, bulk_id, [], allowed.epoch_shift_ms)
    if skipped:
        log(logger, logging.INFO, "bulk_job_skipped", bulk=bulk_id, devices=skipped)
    if queued:
        log(
            logger,
            logging.INFO,
            "bulk_job_queued",
            bulk=bulk_id,
            devices=len(queued),
            queued=job.queued + len(queued),
            total=job.total,
        )
    return job, [d for d, _ in queued]


async def knock_devices(
    conn: asyncpg.Connection, bulk_id: int, device_ids: list[str], knock: Knock
) -> None:
    """Connection requests to queued devices, a few at a time; the outcome is
    kept per device. A device that does not answer keeps its task pending
    until its next periodic Inform; one that answers "busy" is knocked again
    (acs.core.knocks)."""
    gate = asyncio.Semaphore(KNOCK_CONCURRENCY)

    async def one(device_id: str) -> tuple[str, str | None, float | None]:
        async with gate:
            result = await knock(device_id)
        if result.ok:
            return device_id, None, None
        return device_id, result.reason, knocks.again_after(result.status)

    outcomes = await asyncio.gather(*(one(d) for d in device_ids))
    await store.record_knocks(conn, bulk_id, outcomes)


async def complete_if_done(conn: asyncpg.Connection, bulk_id: int) -> bool:
    """A running job whose devices are all queued and whose tasks all ended completes."""
    if await store.has_not_queued(conn, bulk_id) or not await store.all_final(conn, bulk_id):
        return False
    counts = await store.state_counts(conn, bulk_id)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no devices"
    done = await store.set_status(
        conn,
        bulk_id,
        "completed",
        f"every task ended: {summary}",
        expect=("running",),
        finished=True,
    )
    if done is not None:
        log(logger, logging.INFO, "bulk_job_completed", bulk=bulk_id, **counts)
    return done is not None


# --------------------------------------------------------------------------- reading


async def progress(conn: asyncpg.Connection, bulk_id: int) -> dict[str, int]:
    """Devices per state, every state present (zero when none)."""
    counts = await store.state_counts(conn, bulk_id)
    return {state: counts.get(state, 0) for state in rules.DEVICE_STATES}
