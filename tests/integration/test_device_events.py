"""Device events in PostgreSQL: kept per device, newest first, bounded."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import pytest

from acs.store import device_events, devices
from tests.integration.test_store import inform

pytestmark = pytest.mark.db


async def _device(db_pool: asyncpg.Pool, unique_serial: Callable[..., str]) -> str:
    async with db_pool.acquire() as conn:
        dev, _ = await devices.upsert_from_inform(conn, inform(unique_serial(), params=[]))
    return dev.id


async def test_events_list_newest_first_filter_by_kind_and_page(
    db_pool: asyncpg.Pool, unique_serial: Callable[..., str]
) -> None:
    dev = await _device(db_pool, unique_serial)
    other = await _device(db_pool, unique_serial)
    async with db_pool.acquire() as conn:
        for i in range(5):
            kind = "AutonomousTransferComplete" if i % 2 else "RequestDownload"
            await device_events.record(conn, dev, kind, {"n": i, "note": "naïve ✓"})
        await device_events.record(conn, other, "RequestDownload", {"n": 99})

        all_of_dev = await device_events.list_events(conn, dev)
        assert [e.detail["n"] for e in all_of_dev] == [4, 3, 2, 1, 0]
        assert all_of_dev[0].detail["note"] == "naïve ✓"  # jsonb round trip, unicode intact

        autonomous = await device_events.list_events(conn, dev, kind="AutonomousTransferComplete")
        assert [e.detail["n"] for e in autonomous] == [3, 1]

        first = await device_events.list_events(conn, dev, limit=2)
        rest = await device_events.list_events(conn, dev, before=first[-1].id, limit=10)
        assert [e.detail["n"] for e in first + rest] == [4, 3, 2, 1, 0]


async def test_a_device_keeps_only_its_newest_events(
    db_pool: asyncpg.Pool, unique_serial: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(device_events, "KEEP", 3)
    dev = await _device(db_pool, unique_serial)
    other = await _device(db_pool, unique_serial)
    async with db_pool.acquire() as conn:
        await device_events.record(conn, other, "Kicked", {})
        for i in range(6):
            await device_events.record(conn, dev, "Kicked", {"n": i})
        assert [e.detail["n"] for e in await device_events.list_events(conn, dev)] == [5, 4, 3]
        # another device's history is not touched by this one's pruning
        assert len(await device_events.list_events(conn, other)) == 1


async def test_events_go_with_their_device(
    db_pool: asyncpg.Pool, unique_serial: Callable[..., str]
) -> None:
    dev = await _device(db_pool, unique_serial)
    async with db_pool.acquire() as conn:
        await device_events.record(conn, dev, "Kicked", {})
        await devices.delete_device(conn, dev)
        count = await conn.fetchval("SELECT count(*) FROM device_events WHERE device_id = $1", dev)
    assert count == 0
