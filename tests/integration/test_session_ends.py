"""Quiet sessions' ends written together (acs/services/session_ends.py and
acs.store.session_logs.insert_quiet), against PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from acs.core.session_log import elided
from acs.services.session_ends import SessionEnds
from acs.store import devices, session_logs, sessions
from tests.integration.test_store import T0, inform

pytestmark = pytest.mark.db

KEEP = 3
MESSAGES: list[dict[str, Any]] = [
    {"direction": "in", "at": T0.isoformat(), "rpc": "Inform", "status": None, "size": 2090,
     "body": "<Inform/>"},
    {"direction": "out", "at": T0.isoformat(), "rpc": "InformResponse", "status": 200,
     "size": 300, "body": "<InformResponse/>"},
    {"direction": "in", "at": T0.isoformat(), "rpc": None, "status": None, "size": 0, "body": ""},
    {"direction": "out", "at": T0.isoformat(), "rpc": None, "status": 204, "size": 0, "body": ""},
]  # fmt: skip


async def _in_session(conn: asyncpg.Connection, serial: str, session: str) -> str:
    """A device whose lease ``session`` holds."""
    dev, _ = await devices.upsert_from_inform(conn, inform(serial))
    assert await sessions.acquire_session(conn, dev.id, session, 30)
    return dev.id


def _quiet(dev_id: str, session: str, *, outcome: str = "completed") -> session_logs.NewSessionLog:
    return session_logs.NewSessionLog(
        device_id=dev_id,
        session_key=session,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=1),
        outcome=outcome,
        reason=None,
        events=["2 PERIODIC"],
        remote_address="192.0.2.7",
        message_count=4,
        stored_bytes=26,
        truncated=False,
        messages=MESSAGES,
        elided=elided(MESSAGES),
        full_tag="log:full",
    )


async def _holder(conn: asyncpg.Connection, dev_id: str) -> str | None:
    holder: str | None = await conn.fetchval(
        "SELECT session_id FROM device_sessions WHERE device_id = $1", dev_id
    )
    return holder


async def _logs(conn: asyncpg.Connection, dev_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT session_key, stored_bytes, messages, events, remote_address, outcome"
        " FROM session_logs WHERE device_id = $1 ORDER BY id",
        dev_id,
    )


async def test_one_statement_logs_releases_and_prunes_many_devices(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    plain = await _in_session(conn, unique_serial(), "S-plain")
    tagged = await _in_session(conn, unique_serial(), "S-tagged")
    await conn.execute("UPDATE devices SET tags = '{log:full}' WHERE id = $1", tagged)
    # a lease another session has taken since: the end must not give it back
    taken = await _in_session(conn, unique_serial(), "S-newer")
    # a device with KEEP older rows: after its end it keeps its newest KEEP
    full = await _in_session(conn, unique_serial(), "S-full")
    for n in range(KEEP):
        await session_logs.insert(conn, _quiet(full, f"S-old-{n}"), KEEP)
    gone = await _in_session(conn, unique_serial(), "S-gone")
    await conn.execute("DELETE FROM devices WHERE id = $1", gone)

    logged = await session_logs.insert_quiet(
        conn,
        [
            _quiet(plain, "S-plain"),
            _quiet(tagged, "S-tagged"),
            _quiet(taken, "S-older"),
            _quiet(full, "S-full"),
            _quiet(gone, "S-gone"),
        ],
        KEEP,
    )

    assert logged == {"S-plain", "S-tagged", "S-older", "S-full"}
    assert await _holder(conn, plain) is None
    assert await _holder(conn, tagged) is None
    assert await _holder(conn, taken) == "S-newer"
    [row] = await _logs(conn, plain)
    assert row["session_key"] == "S-plain" and row["stored_bytes"] == 0
    assert row["events"] == ["2 PERIODIC"] and row["remote_address"] == "192.0.2.7"
    assert all(m["body"] == "" and m["note"] for m in row["messages"])
    [row] = await _logs(conn, tagged)
    assert row["stored_bytes"] == 26 and row["messages"][0]["body"] == "<Inform/>"
    assert [r["session_key"] for r in await _logs(conn, full)] == ["S-old-1", "S-old-2", "S-full"]
    assert await _logs(conn, gone) == []


async def test_ends_that_come_together_share_one_statement(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    ends = SessionEnds(db_pool, KEEP, window_s=0.05, max_batch=200)
    ids = [await _in_session(conn, unique_serial(), f"S-{n}") for n in range(20)]

    written = await asyncio.gather(*(ends.end(_quiet(d, f"S-{n}")) for n, d in enumerate(ids)))

    assert written == [True] * 20
    assert ends.batches == 1 and ends.written == 20
    for dev_id in ids:
        assert await _holder(conn, dev_id) is None
        assert len(await _logs(conn, dev_id)) == 1


async def test_ends_past_the_batch_size_or_during_a_write_go_in_the_next(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    ends = SessionEnds(db_pool, KEEP, window_s=0.0, max_batch=4)
    ids = [await _in_session(conn, unique_serial(), f"S-{n}") for n in range(10)]

    first = asyncio.create_task(ends.end(_quiet(ids[0], "S-0")))
    await asyncio.sleep(0)  # the writer has taken S-0 alone: no window
    rest = [ends.end(_quiet(d, f"S-{n}")) for n, d in enumerate(ids) if n]

    assert await asyncio.gather(first, *rest) == [True] * 10
    # S-0 alone, then the nine that came during its write: 4 + 4 + 1
    assert ends.batches == 4 and ends.written == 10


async def test_a_refused_batch_is_written_one_by_one_and_only_the_bad_end_fails(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    ends = SessionEnds(db_pool, KEEP, window_s=0.05, max_batch=200)
    good = [await _in_session(conn, unique_serial(), f"S-{n}") for n in range(3)]
    bad = await _in_session(conn, unique_serial(), "S-bad")

    results = await asyncio.gather(
        *(ends.end(_quiet(d, f"S-{n}")) for n, d in enumerate(good)),
        ends.end(_quiet(bad, "S-bad", outcome="not-an-outcome")),  # the CHECK refuses it
        return_exceptions=True,
    )

    assert results[:3] == [True, True, True]
    assert isinstance(results[3], asyncpg.CheckViolationError)
    assert ends.batches == 3  # the refused batch is not counted: the three alone are
    for dev_id in good:
        assert await _holder(conn, dev_id) is None and len(await _logs(conn, dev_id)) == 1
    # nothing of the refused end was half-written: its lease is still held, no row
    assert await _holder(conn, bad) == "S-bad" and await _logs(conn, bad) == []


async def test_a_cancelled_caller_does_not_take_its_end_out_of_the_batch(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    ends = SessionEnds(db_pool, KEEP, window_s=0.05, max_batch=200)
    dev_id = await _in_session(conn, unique_serial(), "S-cancelled")

    caller = asyncio.create_task(ends.end(_quiet(dev_id, "S-cancelled")))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(1000):  # at most 10 s
        if ends.written:
            break
        await asyncio.sleep(0.01)

    assert await _holder(conn, dev_id) is None and len(await _logs(conn, dev_id)) == 1
