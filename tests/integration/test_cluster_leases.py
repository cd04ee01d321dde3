"""Cluster leases on a real PostgreSQL: one holder per kind of work, takeover only after
expiry by the database's clock, and no tick run twice even when two hosts both believe
they lead (acs/store/leases.py, acs/services/leases.py)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
import pytest_asyncio

from acs.services import leases
from acs.services.leases import LeaseKeeper
from acs.store import leases as store

pytestmark = pytest.mark.db


@pytest_asyncio.fixture
async def names() -> AsyncIterator[tuple[str, ...]]:
    # lease names of their own: the table is shared with the rest of the run
    tag = secrets.token_hex(3)
    yield (f"t{tag}_campaigns", f"t{tag}_retention")


async def lease_row(pool: asyncpg.Pool, name: str) -> store.Lease:
    async with pool.acquire() as conn:
        return next(lease for lease in await store.all_leases(conn) if lease.name == name)


async def test_one_host_holds_each_lease_and_a_clean_stop_hands_it_over(
    db_pool: asyncpg.Pool, names: tuple[str, ...]
) -> None:
    a = LeaseKeeper(db_pool, "host-a", 5, names)
    b = LeaseKeeper(db_pool, "host-b", 5, names)
    await a.start()
    await b.start()
    try:
        assert a.held == frozenset(names) and b.held == frozenset()
        await b.renew()  # held and live: renewing elsewhere takes nothing
        assert b.held == frozenset()
        async with db_pool.acquire() as conn:
            assert await store.held_by(conn, "host-a") == sorted(names)
        await a.close()  # releases: b need not wait for the expiry
        await b.renew()
        assert b.held == frozenset(names)
        assert (await lease_row(db_pool, names[0])).holder == "host-b"
    finally:
        await a.close()
        await b.close()


async def test_a_dead_holder_is_replaced_only_after_its_lease_ran_out(
    db_pool: asyncpg.Pool, names: tuple[str, ...]
) -> None:
    a = LeaseKeeper(db_pool, "host-a", 2, names)
    b = LeaseKeeper(db_pool, "host-b", 2, names)
    await a.renew()
    assert a.held == frozenset(names)
    expires = (await lease_row(db_pool, names[0])).expires_at
    # a "dies": it renews no more and releases nothing; b keeps trying
    taken_at = None
    for _ in range(40):
        await b.renew()
        if b.held:
            async with db_pool.acquire() as conn:
                taken_at = await conn.fetchval("SELECT now()")
            break
        await asyncio.sleep(0.25)
    try:
        assert b.held == frozenset(names), "b never took over the dead holder's leases"
        row = await lease_row(db_pool, names[0])
        assert row.holder == "host-b" and row.since is not None
        assert row.since >= expires, "taken before the old lease had expired"
        assert taken_at is not None and taken_at - expires < timedelta(seconds=5)
        # the old holder, back from the dead, finds it has nothing
        await a.renew()
        assert a.held == frozenset()
        assert await a.run(names[0], 1.0, noop) is False
    finally:
        await b.close()


async def test_a_host_with_its_clock_an_hour_ahead_does_not_steal(
    db_pool: asyncpg.Pool, names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = LeaseKeeper(db_pool, "host-a", 30, names)
    await a.renew()
    assert a.held == frozenset(names)
    skewed = LeaseKeeper(db_pool, "host-skewed", 30, names)
    # the wall clock an hour ahead (the event loop's monotonic clock is left alone:
    # shifting it would fire every pending timeout of the test at once)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)
    try:
        await skewed.renew()
        ran = await skewed.run(names[0], 1.0, noop)
    finally:
        monkeypatch.undo()
    try:
        assert skewed.held == frozenset(), "a host's own clock decided a lease had expired"
        assert ran is False
        assert (await lease_row(db_pool, names[0])).holder == "host-a"
    finally:
        await a.close()


async def test_two_hosts_believing_they_lead_never_run_a_tick_at_once_or_twice(
    db_pool: asyncpg.Pool, names: tuple[str, ...]
) -> None:
    """Split brain: a holds the lease and runs a tick longer than the lease; b, whose
    renewal would find the lease expired meanwhile, and which is told it leads, too."""
    name = names[0]
    a = LeaseKeeper(db_pool, "host-a", 2, (name,))
    b = LeaseKeeper(db_pool, "host-b", 2, (name,))
    await a.renew()
    running: list[str] = []
    overlaps: list[tuple[str, str]] = []
    done: list[str] = []

    def tick(host: str, seconds: float):  # type: ignore[no-untyped-def]
        async def work() -> None:
            if running:
                overlaps.append((running[0], host))
            running.append(host)
            await asyncio.sleep(seconds)
            running.remove(host)
            done.append(host)

        return work

    # a's tick outlives a's lease (2 s) by far
    a_tick = asyncio.create_task(a.run(name, 0.1, tick("host-a", 3.5)))
    await asyncio.sleep(2.5)  # a's lease has run out by the database's clock now
    assert not a_tick.done() and running == ["host-a"]
    await b.renew()  # the row is locked by a's tick: skipped, not taken
    assert b.held == frozenset()
    b.held = frozenset({name})  # and yet b believes it leads
    b_ran = await b.run(name, 0.1, tick("host-b", 0.1))
    assert await a_tick is True
    assert b_ran is False
    assert overlaps == [] and done == ["host-a"]
    row = await lease_row(db_pool, name)
    assert row.runs == 1 and row.holder == "host-a"
    await a.close()


async def test_a_renewal_while_its_own_tick_runs_keeps_the_lease(
    db_pool: asyncpg.Pool, names: tuple[str, ...]
) -> None:
    """The tick holds its lease row locked; the holder's renewal skips the row, and
    must still count it held, or the host drops the lease and its ticks for a period."""
    name = names[0]
    a = LeaseKeeper(db_pool, "host-a", 5, (name,))
    await a.renew()
    ticking, release = asyncio.Event(), asyncio.Event()

    async def long_tick() -> None:
        ticking.set()
        await release.wait()

    tick = asyncio.create_task(a.run(name, 0.1, long_tick))
    try:
        await asyncio.wait_for(ticking.wait(), 10)
        await a.renew()  # the row is locked by a's own tick
        assert a.held == frozenset({name})
    finally:
        release.set()
        assert await tick is True
    await a.renew()
    assert a.held == frozenset({name})
    await a.close()


async def test_a_handed_over_tick_waits_for_its_interval(
    db_pool: asyncpg.Pool, names: tuple[str, ...]
) -> None:
    name = names[0]
    a = LeaseKeeper(db_pool, "host-a", 5, (name,))
    b = LeaseKeeper(db_pool, "host-b", 5, (name,))
    await a.renew()
    assert await a.run(name, 60.0, noop)
    await a.close()
    await b.renew()
    assert b.held == frozenset({name})
    # a ran it a moment ago: b, whose scheduler fires now, must not run it again
    assert await b.run(name, 60.0, noop) is False
    assert (await lease_row(db_pool, name)).runs == 1
    await b.close()


async def noop() -> None:
    return None


def test_every_kind_of_periodic_work_has_a_lease() -> None:
    assert len(set(leases.ALL)) == len(leases.ALL) == 7
