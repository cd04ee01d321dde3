"""Live updates from the writes themselves: the triggers of migration 0025
announce on acs_live in the writing transaction, and a process's one
listener (LiveHub) hands each subscriber the topics it asked for."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from acs.core import live as rules
from acs.services.live import LiveHub

pytestmark = pytest.mark.db


async def heard(sub, want: str, wait_s: float = 10.0) -> list[str]:
    """What the subscriber hears until ``want`` comes (or the wait runs out)."""
    got: list[str] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    while want not in got:
        left = end - loop.time()
        if left <= 0:
            break
        try:
            got += sub.take_all(await asyncio.wait_for(sub.queue.get(), left))
        except TimeoutError:
            break
    return got


async def test_a_session_end_a_job_and_a_rollback_are_heard_or_not(
    database_url: str, db_pool: asyncpg.Pool, unique_serial
) -> None:
    dev = unique_serial("LIVE-")
    hubs = [LiveHub(database_url), LiveHub(database_url)]  # two processes, two listeners
    try:
        subs = [h.subscribe([f"device:{dev}", "jobs"]) for h in hubs]
        for h in hubs:
            await asyncio.wait_for(h.connected.wait(), 10)
        async with db_pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO devices (id, oui, product_class, serial_number, manufacturer)"
                " VALUES ($1, 'ACDE48', 'HGW', $1, 'ACME')",
                dev,
            )
        for sub in subs:  # first contact, heard by every process
            assert f"device:{dev}" in await heard(sub, f"device:{dev}")
        async with db_pool.acquire() as conn:
            # a write that rolls back is never announced
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO tasks (device_id, name) VALUES ($1, 'reboot')", dev
                    )
                    raise RuntimeError("rolled back")
        await asyncio.sleep(1.1)  # past the throttle window of the first event
        assert subs[0].queue.empty()
        async with db_pool.acquire() as conn:
            task_id = await conn.fetchval(
                "INSERT INTO tasks (device_id, name) VALUES ($1, 'reboot') RETURNING id", dev
            )
        for sub in subs:
            assert "jobs" in await heard(sub, "jobs")
        async with db_pool.acquire() as conn:
            # a session: the lease taken (nothing to say), then released (its end)
            await conn.execute(
                "UPDATE device_sessions SET session_id = 's1' WHERE device_id = $1", dev
            )
            await conn.execute("UPDATE tasks SET attempts = attempts + 1 WHERE id = $1", task_id)
            await asyncio.sleep(1.1)
            for sub in subs:
                assert sub.queue.empty(), (
                    "a lease taken or a column beside status is news to no page"
                )
            await conn.execute(
                "UPDATE device_sessions SET session_id = NULL WHERE device_id = $1", dev
            )
        for sub in subs:
            assert f"device:{dev}" in await heard(sub, f"device:{dev}")
    finally:
        for h in hubs:
            await h.close()


async def test_a_storm_reaches_a_subscriber_as_two_events(
    database_url: str, db_pool: asyncpg.Pool, unique_serial
) -> None:
    dev = unique_serial("STORM-")
    hub = LiveHub(database_url)
    try:
        sub = hub.subscribe(["jobs"])
        await asyncio.wait_for(hub.connected.wait(), 10)
        async with db_pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO devices (id, oui, product_class, serial_number, manufacturer)"
                " VALUES ($1, 'ACDE48', 'HGW', $1, 'ACME')",
                dev,
            )
            for _ in range(30):  # thirty transactions, thirty notifications
                await conn.execute("INSERT INTO tasks (device_id, name) VALUES ($1, 'reboot')", dev)
        got = await heard(sub, "jobs")
        assert got == ["jobs"]
        # the rest were folded into one, sent when the window closed
        assert await heard(sub, "jobs", wait_s=5) == ["jobs"]
        await asyncio.sleep(1.5)
        assert sub.queue.empty()
    finally:
        await hub.close()


async def test_closing_the_hub_ends_every_stream(database_url: str) -> None:
    hub = LiveHub(database_url)
    sub = hub.subscribe(["overview"])
    await asyncio.wait_for(hub.connected.wait(), 10)
    await hub.close()
    assert sub.take_all(await sub.queue.get()) == [rules.CLOSED]


async def test_a_lost_listener_reconnects_and_says_resync(database_url: str) -> None:
    hub = LiveHub(database_url)
    try:
        sub = hub.subscribe(["overview"])
        await asyncio.wait_for(hub.connected.wait(), 10)
        other = await asyncpg.connect(database_url)
        try:
            # what a failover or a restart does to the connection: only this
            # test's database, never another run's
            killed = await other.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                " AND pid <> pg_backend_pid()) t"
            )
        finally:
            await other.close()
        assert killed >= 1
        assert rules.RESYNC in await heard(sub, rules.RESYNC, wait_s=20)
        assert hub.connected.is_set()
    finally:
        await hub.close()
