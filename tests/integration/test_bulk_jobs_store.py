"""Bulk jobs against a real PostgreSQL: the snapshot, the rate across restarts
and outages, two tickers at once, controls and completion. The HTTP side and
real CPEs are in tests/e2e/test_bulk_jobs.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from acs.core.filters import parse_filter
from acs.services import bulk_jobs as engine
from acs.store import bulk_jobs as store
from acs.store import devices
from acs.store import tasks as task_store
from acs.store.device_query import compile_filter
from tests.integration.test_store import inform

pytestmark = pytest.mark.db


async def make_devices(conn: asyncpg.Connection, prefix: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        dev, _ = await devices.upsert_from_inform(conn, inform(f"{prefix}{i:03d}", params=[]))
        ids.append(dev.id)
    return sorted(ids)


def by_prefix(prefix: str) -> str:
    return f'DeviceID.SerialNumber LIKE "{prefix}%"'


async def new_job(
    conn: asyncpg.Connection, prefix: str, rate: int = 60, **kw: object
) -> store.BulkJob:
    spec: dict[str, object] = {
        "name": "t",
        "task_name": "reboot",
        "task_args": {},
        "filter_text": by_prefix(prefix),
        "rate_per_minute": rate,
        "connection_request": False,
        "expiry_s": None,
        "created_by": "test",
    } | kw
    return await engine.create(conn, parse_filter(str(spec["filter_text"])), **spec)  # type: ignore[arg-type]


@pytest.fixture
async def jobs(db_pool: asyncpg.Pool) -> AsyncIterator[list[int]]:
    """Jobs a test created, cancelled afterwards so no ACS of a later test ticks them."""
    created: list[int] = []
    yield created
    async with db_pool.acquire() as conn:
        for bulk_id in created:
            try:
                await engine.cancel(conn, bulk_id, "cleanup")
            except engine.ControlError:
                pass


async def age(conn: asyncpg.Connection, bulk_id: int, seconds: float) -> None:
    """As if the job's rate epoch were ``seconds`` older (an ACS down that long)."""
    await conn.execute(
        "UPDATE bulk_jobs SET rate_epoch = rate_epoch - make_interval(secs => $2) WHERE id = $1",
        bulk_id,
        seconds,
    )


async def test_snapshot_takes_the_matching_devices_in_batches(
    conn: asyncpg.Connection, unique_serial: Callable[..., str], jobs: list[int]
) -> None:
    prefix = unique_serial("BS")
    matching = await make_devices(conn, prefix, 7)
    await make_devices(conn, unique_serial("BX"), 2)  # not matched
    job = await new_job(conn, prefix)
    jobs.append(job.id)
    assert (job.total, job.status, job.queued) == (7, "running", 0)
    # the cursor and COPY interleave across several batches
    other = await new_job(conn, unique_serial("none"))
    jobs.append(other.id)
    where, params = compile_filter(parse_filter(by_prefix(prefix)))
    async with conn.transaction():
        assert await store.snapshot(conn, other.id, where, params, batch=3) == 7
    for bulk_id in (job.id, other.id):
        rows = await store.list_devices(conn, bulk_id, state=None, after=None, limit=100)
        assert [r.device_id for r in rows] == matching
        assert {r.state for r in rows} == {"notQueued"}


async def test_a_filter_matching_nothing_completes_at_once(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    job = await new_job(conn, unique_serial("nobody"))
    assert (job.total, job.status) == (0, "completed")
    assert job.reason == "no device matched the filter"


async def test_an_outage_does_not_release_a_backlog_and_the_count_survives(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial, jobs: list[int]
) -> None:
    prefix = unique_serial("BR")
    ids = await make_devices(conn, prefix, 9)
    job = await new_job(conn, prefix, rate=60)
    jobs.append(job.id)
    _, first = await engine.queue_due(conn, job.id, tick_s=2.0)
    assert first == ids[:1]  # the first device goes at once
    # the ACS was down for an hour: 3600 devices earned, two ticks' worth (4) go
    await age(conn, job.id, 3600)
    _, after_outage = await engine.queue_due(conn, job.id, tick_s=2.0)
    assert after_outage == ids[1:5]
    # a new process (another connection, nothing in memory) goes on from the
    # stored count: nothing more is due yet, and no device is queued twice
    async with db_pool.acquire() as fresh:
        _, again = await engine.queue_due(fresh, job.id, tick_s=2.0)
        assert again == []
        await age(fresh, job.id, 1.0)
        _, next_one = await engine.queue_due(fresh, job.id, tick_s=2.0)
        assert next_one == ids[5:6]
    stored = await store.get(conn, job.id)
    assert stored is not None and stored.queued == 6
    for dev in ids[:6]:
        queued = [t for t in await task_store.list_tasks(conn, dev) if t.unique_key]
        assert [(t.name, t.unique_key, t.status) for t in queued] == [
            ("reboot", f"bulk-{job.id}", "pending")
        ]


async def test_two_tickers_at_once_queue_each_device_once_within_the_rate(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial, jobs: list[int]
) -> None:
    prefix = unique_serial("BT")
    ids = await make_devices(conn, prefix, 20)
    job = await new_job(conn, prefix, rate=60)
    jobs.append(job.id)
    await age(conn, job.id, 5.0)  # 6 devices earned

    async def ticker() -> list[str]:
        async with db_pool.acquire() as c:
            got: list[str] = []
            for _ in range(5):
                got += (await engine.queue_due(c, job.id, tick_s=10.0))[1]
            return got

    a, b = await asyncio.gather(ticker(), ticker())
    assert sorted(a + b) == ids[:6]
    stored = await store.get(conn, job.id)
    assert stored is not None and stored.queued == 6


async def test_pause_stops_queuing_and_resume_earns_nothing_for_the_pause(
    conn: asyncpg.Connection, unique_serial, jobs: list[int]
) -> None:
    prefix = unique_serial("BP")
    ids = await make_devices(conn, prefix, 6)
    job = await new_job(conn, prefix, rate=60)
    jobs.append(job.id)
    await engine.queue_due(conn, job.id, tick_s=2.0)
    paused = await engine.pause(conn, job.id, "op")
    assert paused.status == "paused" and paused.reason == "paused by op"
    await age(conn, job.id, 600)
    assert await engine.queue_due(conn, job.id, tick_s=2.0) == (None, [])
    with pytest.raises(engine.ControlError, match="cannot pause a bulk job that is paused"):
        await engine.pause(conn, job.id, "op")
    resumed = await engine.resume(conn, job.id, "op")
    assert resumed.status == "running"
    # ten paused minutes earned nothing: only the one device due on resume, as at a start
    assert (await engine.queue_due(conn, job.id, tick_s=2.0))[1] == ids[1:2]
    assert (await engine.queue_due(conn, job.id, tick_s=2.0))[1] == []


async def test_cancel_withdraws_pending_tasks_and_refuses_twice(
    conn: asyncpg.Connection, unique_serial, jobs: list[int]
) -> None:
    prefix = unique_serial("BC")
    ids = await make_devices(conn, prefix, 5)
    job = await new_job(conn, prefix, rate=60)
    jobs.append(job.id)
    await age(conn, job.id, 2.0)
    _, queued = await engine.queue_due(conn, job.id, tick_s=2.0)
    assert queued == ids[:3]
    running = next(t for t in await task_store.list_tasks(conn, ids[0]))
    await task_store.mark_running(conn, running.id, "session-x")
    cancelled = await engine.cancel(conn, job.id, "op")
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert cancelled.reason == "cancelled by op; 2 pending task(s) withdrawn"
    assert await engine.progress(conn, job.id) == {
        "notQueued": 2,
        "skipped": 0,
        "pending": 0,
        "running": 1,  # a task a session already runs is left to finish
        "done": 0,
        "fault": 0,
        "expired": 0,
        "cancelled": 2,
    }
    await age(conn, job.id, 60)
    assert await engine.queue_due(conn, job.id, tick_s=2.0) == (None, [])
    with pytest.raises(engine.ControlError, match="cannot cancel a bulk job that is cancelled"):
        await engine.cancel(conn, job.id, "op")
    with pytest.raises(LookupError):
        await engine.cancel(conn, 10**15, "op")


async def test_completes_when_every_task_ended_counting_overdue_pending_as_expired(
    conn: asyncpg.Connection, unique_serial, jobs: list[int]
) -> None:
    prefix = unique_serial("BD")
    ids = await make_devices(conn, prefix, 3)
    job = await new_job(conn, prefix, rate=600, expiry_s=60)
    jobs.append(job.id)
    await age(conn, job.id, 10)
    _, queued = await engine.queue_due(conn, job.id, tick_s=2.0)
    assert queued == ids
    assert not await engine.complete_if_done(conn, job.id)
    tasks = {d: (await task_store.list_tasks(conn, d))[-1] for d in ids}
    await task_store.mark_done(conn, tasks[ids[0]].id, {})
    await task_store.mark_fault(conn, tasks[ids[1]].id, 9001, "Request denied")
    assert not await engine.complete_if_done(conn, job.id)
    # the third device never came: its pending task is past its expiry
    await conn.execute(
        "UPDATE tasks SET expires_at = $2 WHERE id = $1",
        tasks[ids[2]].id,
        datetime.now(UTC) - timedelta(seconds=1),
    )
    assert await engine.complete_if_done(conn, job.id)
    done = await store.get(conn, job.id)
    assert done is not None and done.status == "completed"
    assert done.reason == "every task ended: 1 done, 1 expired, 1 fault"
    faults = await store.list_devices(conn, job.id, state="fault", after=None, limit=10)
    assert [(f.device_id, f.fault_code, f.fault_string) for f in faults] == [
        (ids[1], 9001, "Request denied")
    ]


async def test_a_device_deleted_after_the_snapshot_is_left_out(
    conn: asyncpg.Connection, unique_serial, jobs: list[int]
) -> None:
    prefix = unique_serial("BG")
    ids = await make_devices(conn, prefix, 3)
    job = await new_job(conn, prefix, rate=600)
    jobs.append(job.id)
    assert await devices.delete_device(conn, ids[1])
    await age(conn, job.id, 10)
    _, queued = await engine.queue_due(conn, job.id, tick_s=2.0)
    assert queued == [ids[0], ids[2]]
    assert (await engine.progress(conn, job.id))["pending"] == 2
