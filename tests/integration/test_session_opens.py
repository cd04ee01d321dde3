"""Periodic Informs that change nothing, opened together (acs.store.sessions.open_repeated
and acs/services/session_opens.py).

The grouped statement must open exactly the sessions the single statement
would only have locked and read, with the same answers, and leave every
other Inform untouched for the single statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import asyncpg
import pytest

from acs.services.session_opens import SessionOpens
from acs.store import devices, sessions
from tests.integration.test_inform_digest import _known, _open, _seen
from tests.integration.test_store import PV, T0, inform

pytestmark = pytest.mark.db

LATER = T0 + timedelta(hours=1)


async def _repeating(conn: asyncpg.Connection, serial: str) -> str:
    """A discovered device whose Inform digest is recorded: its next identical
    Inform changes nothing."""
    dev_id = await _known(conn, serial)
    await _open(conn, inform(serial, at=T0 + timedelta(minutes=5)), f"S-seen-{serial}")
    assert await _seen(conn, dev_id) is not None
    return dev_id


async def _lock_of(conn: asyncpg.Connection, dev_id: str) -> tuple[str | None, object]:
    row = await conn.fetchrow(
        "SELECT session_id, last_inform FROM device_sessions WHERE device_id = $1", dev_id
    )
    assert row is not None
    return row["session_id"], row["last_inform"]


async def _task(conn: asyncpg.Connection, dev_id: str, status: str, session: str | None) -> int:
    task_id: int = await conn.fetchval(
        "INSERT INTO tasks (device_id, name, status, session_id, started_at)"
        " VALUES ($1, 'reboot', $2, $3, CASE WHEN $3::text IS NULL THEN NULL ELSE now() END)"
        " RETURNING id",
        dev_id,
        status,
        session,
    )
    return task_id


async def test_grouped_open_answers_as_the_single_statement(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    plain, busy = unique_serial(), unique_serial()
    plain_id, busy_id = await _repeating(conn, plain), await _repeating(conn, busy)
    await _task(conn, busy_id, "pending", None)
    opened = await sessions.open_repeated(
        conn, [(inform(plain, at=LATER), "G-plain"), (inform(busy, at=LATER), "G-busy")], 30
    )
    assert set(opened) == {"G-plain", "G-busy"}
    assert await _lock_of(conn, plain_id) == ("G-plain", LATER)
    assert await _lock_of(conn, busy_id) == ("G-busy", LATER)
    for sid, dev_id in (("G-plain", plain_id), ("G-busy", busy_id)):
        await sessions.release_session(conn, dev_id, sid)
    # the single statement, on the same state, says the same
    for serial, sid in ((plain, "G-plain"), (busy, "G-busy")):
        single = await _open(conn, inform(serial, at=LATER + timedelta(minutes=1)), "single")
        assert single == opened[sid]
    assert opened["G-busy"].may_have_tasks and not opened["G-plain"].may_have_tasks
    assert not opened["G-plain"].tree_unknown


async def test_what_changed_is_left_for_the_single_statement(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    same, new_value, moved, held, first_boot = (unique_serial() for _ in range(5))
    same_id = await _repeating(conn, same)
    new_value_id = await _repeating(conn, new_value)
    moved_id = await _repeating(conn, moved)
    held_id = await _repeating(conn, held)
    assert await sessions.acquire_session(conn, held_id, "S-other", 60)
    changed = inform(new_value, at=LATER)
    changed.parameters = [
        PV("Device.DeviceInfo.SoftwareVersion", "2.0") if p.name.endswith("SoftwareVersion") else p
        for p in changed.parameters
    ]
    elsewhere = inform(moved, at=LATER)
    elsewhere.remote_address = "192.0.2.99"
    before = {d: await _lock_of(conn, d) for d in (new_value_id, moved_id, held_id)}
    opened = await sessions.open_repeated(
        conn,
        [
            (inform(same, at=LATER), "G-same"),
            (changed, "G-value"),  # a value the tree does not hold
            (elsewhere, "G-moved"),  # a device column that differs
            (inform(held, at=LATER), "G-held"),  # another session holds the lock
            (inform(first_boot, at=LATER), "G-unknown"),  # never seen
        ],
        30,
    )
    assert set(opened) == {"G-same"}
    assert await _lock_of(conn, same_id) == ("G-same", LATER)
    # nothing of the others was written
    assert {d: await _lock_of(conn, d) for d in (new_value_id, moved_id, held_id)} == before
    assert (await devices.get_parameters(conn, new_value_id, "Device.DeviceInfo."))[
        "Device.DeviceInfo.SoftwareVersion"
    ].value == "1.0"
    assert await conn.fetchval("SELECT 1 FROM devices WHERE serial_number = $1", first_boot) is None
    # the single statement then records what changed
    single = await _open(conn, changed, "S-value")
    assert not single.tree_unknown
    assert (await devices.get_parameters(conn, new_value_id, "Device.DeviceInfo."))[
        "Device.DeviceInfo.SoftwareVersion"
    ].value == "2.0"


async def test_two_informs_of_one_device_open_one_session(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev_id = await _repeating(conn, serial)
    opened = await sessions.open_repeated(
        conn, [(inform(serial, at=LATER), "G-1"), (inform(serial, at=LATER), "G-2")], 30
    )
    assert len(opened) == 1
    (winner,) = opened
    assert (await _lock_of(conn, dev_id))[0] == winner


async def test_jobs_a_dead_session_left_running_are_put_back(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev_id = await _repeating(conn, serial)
    # a session that died holding the lock and a running job; its lease ran out
    assert await sessions.acquire_session(conn, dev_id, "S-dead", 0)
    task_id = await _task(conn, dev_id, "running", "S-dead")
    await asyncio.sleep(0.01)
    opened = await sessions.open_repeated(conn, [(inform(serial, at=LATER), "G-next")], 30)
    assert opened["G-next"].may_have_tasks
    row = await conn.fetchrow("SELECT status, session_id FROM tasks WHERE id = $1", task_id)
    assert row is not None and (row["status"], row["session_id"]) == ("pending", None)


async def test_concurrent_informs_share_a_statement(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serials = [unique_serial() for _ in range(12)]
    ids = [await _repeating(conn, s) for s in serials]
    changed = unique_serial()
    await _repeating(conn, changed)
    odd = inform(changed, at=LATER)
    odd.events = ["2 PERIODIC"]
    odd.remote_address = "192.0.2.7"  # left alone: None, for the single statement
    opens = SessionOpens(db_pool, 30, window_s=0.05, max_batch=100)
    results = await asyncio.gather(
        *(opens.open(inform(s, at=LATER), f"B-{n}") for n, s in enumerate(serials)),
        opens.open(odd, "B-odd"),
    )
    assert opens.batches == 1 and opens.opened == 12
    assert all(r is not None for r in results[:-1]) and results[-1] is None
    assert [(await _lock_of(conn, d))[0] for d in ids] == [f"B-{n}" for n in range(12)]


async def test_a_failed_batch_leaves_every_inform_to_the_single_statement(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev_id = await _repeating(conn, serial)
    # a lease the database refuses (make_interval: out of range) fails the batch
    opens = SessionOpens(db_pool, float("inf"), window_s=0.0, max_batch=100)
    assert await opens.open(inform(serial, at=LATER), "F-1") is None
    assert (opens.failed, opens.opened) == (1, 0)
    assert (await _lock_of(conn, dev_id))[0] is None


async def test_a_cancelled_caller_gives_its_lock_back(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev_id = await _repeating(conn, serial)
    opens = SessionOpens(db_pool, 30, window_s=0.05, max_batch=100)
    caller = asyncio.create_task(opens.open(inform(serial, at=LATER), "C-1"))
    await asyncio.sleep(0.01)  # in the batch's window
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(100):  # the batch is written, then the lock given back
        if opens.batches and (await _lock_of(conn, dev_id))[0] is None:
            break
        await asyncio.sleep(0.02)
    assert opens.batches == 1
    assert await _lock_of(conn, dev_id) == (None, LATER)
