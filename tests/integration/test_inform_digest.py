"""The Inform digest of acs.store.sessions.open_session (migration 0028).

A periodic Inform whose values the tree already holds skips the tree; any
write of the tree row, by any writer, must make the next Inform read it again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import asyncpg
import pytest

from acs.cwmp.messages import ParameterValueStruct
from acs.store import devices, sessions
from tests.integration.test_store import PV, T0, _discovered, inform

pytestmark = pytest.mark.db

SW = "Device.DeviceInfo.SoftwareVersion"


async def _known(conn: asyncpg.Connection, serial: str, *, discover: bool = True) -> str:
    dev, _ = await devices.upsert_from_inform(conn, inform(serial))
    if discover:
        # a discovery lists names only, and drops the Inform's values (not listed):
        # an Inform puts them back, and its tree write leaves no digest
        await _discovered(conn, dev.id)
        await _open(conn, inform(serial, at=T0 - timedelta(minutes=1)), "S-discovered")
        assert await _seen(conn, dev.id) is None
    return dev.id


async def _open(
    conn: asyncpg.Connection, rec: devices.InformRecord, session: str
) -> sessions.Opened:
    opened = await sessions.open_session(conn, rec, session, 30)
    assert opened is not None
    await sessions.release_session(conn, rec.device_id, session)
    return opened


async def _seen(conn: asyncpg.Connection, dev_id: str) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT inform_seen FROM device_sessions WHERE device_id = $1", dev_id
    )
    return value


async def _value(conn: asyncpg.Connection, dev_id: str, path: str) -> str | None:
    return (await devices.get_parameters(conn, dev_id, path))[path].value


async def _opens_while_tree_locked(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, rec: devices.InformRecord, session: str
) -> bool:
    """Whether open_session completes while another transaction holds the tree
    row's lock: only an Inform that skips the tree does (the long way locks it)."""
    async with db_pool.acquire() as other, other.transaction():
        await other.execute(
            "SELECT 1 FROM device_parameters WHERE device_id = $1 FOR UPDATE", rec.device_id
        )
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '1s'")
                opened = await sessions.open_session(conn, rec, session, 30)
        except asyncpg.LockNotAvailableError:
            return False
    assert opened is not None
    await sessions.release_session(conn, rec.device_id, session)
    return True


async def test_repeated_inform_skips_the_tree(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev_id = await _known(conn, serial)
    assert await _seen(conn, dev_id) is None
    # the first Inform reads the tree, finds every value there: records the digest
    assert not await _opens_while_tree_locked(db_pool, conn, inform(serial), "S0")
    first = await _open(conn, inform(serial, at=T0 + timedelta(minutes=5)), "S1")
    assert not first.tree_unknown
    seen = await _seen(conn, dev_id)
    assert seen is not None
    # the same values again: the tree is neither read nor locked
    assert await _opens_while_tree_locked(
        db_pool, conn, inform(serial, at=T0 + timedelta(minutes=10)), "S2"
    )
    again = await _open(conn, inform(serial, at=T0 + timedelta(minutes=15)), "S3")
    assert not again.tree_unknown  # discovered, without reading the tree
    assert await _seen(conn, dev_id) == seen
    dev = await devices.get_device(conn, dev_id)
    assert dev is not None and dev.last_inform == T0 + timedelta(minutes=15)


async def test_any_tree_write_makes_the_next_inform_read_it(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev_id = await _known(conn, serial)
    await _open(conn, inform(serial), "S1")
    assert await _seen(conn, dev_id) is not None
    # a writer that knows nothing of the digest changes a value the Inform reports
    await conn.execute(
        "UPDATE device_parameters SET tree = jsonb_set(tree, ARRAY[$2, 'v'], '\"9.9\"')"
        " WHERE device_id = $1",
        dev_id,
        SW,
    )
    assert await _value(conn, dev_id, SW) == "9.9"
    assert not await _opens_while_tree_locked(
        db_pool, conn, inform(serial, at=T0 + timedelta(minutes=5)), "S2"
    )  # (it waited for the tree's lock and was rolled back)
    await _open(conn, inform(serial, at=T0 + timedelta(minutes=6)), "S2b")
    # the CPE's value is back: the Inform was not skipped
    assert await _value(conn, dev_id, SW) == "1.0"
    # the store's own writers too (a GetParameterValues answer)
    await _open(conn, inform(serial, at=T0 + timedelta(minutes=10)), "S3")
    assert await _seen(conn, dev_id) is not None
    await devices.merge_parameter_values(conn, dev_id, [PV(SW, "2.0")], T0 + timedelta(hours=1))
    await _open(conn, inform(serial, at=T0 + timedelta(hours=2)), "S4")
    assert await _value(conn, dev_id, SW) == "1.0"


async def test_tree_write_in_the_same_transaction_is_seen(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    """Same transaction, same xmin: the row version's ctid still tells them apart."""
    serial = unique_serial()
    dev_id = await _known(conn, serial)
    async with conn.transaction():
        await _open(conn, inform(serial), "S1")
        await devices.merge_parameter_values(conn, dev_id, [PV(SW, "3.0")], T0)
        await _open(conn, inform(serial, at=T0 + timedelta(minutes=5)), "S2")
        assert await _value(conn, dev_id, SW) == "1.0"


async def test_changed_values_are_written_and_the_digest_follows(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev_id = await _known(conn, serial)
    await _open(conn, inform(serial), "S1")
    before = await _seen(conn, dev_id)
    params = inform(serial).parameters
    params[0] = ParameterValueStruct(SW, "1.1")
    later = T0 + timedelta(minutes=5)
    await _open(conn, inform(serial, params, at=later), "S2")
    assert await _value(conn, dev_id, SW) == "1.1"
    # written in that statement: its new version is not known there
    assert await _seen(conn, dev_id) is None
    await _open(conn, inform(serial, params, at=later + timedelta(minutes=5)), "S3")
    after = await _seen(conn, dev_id)
    assert after is not None and after != before


async def test_undiscovered_device_never_skips(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev_id = await _known(conn, serial, discover=False)
    for k in range(2):
        opened = await _open(conn, inform(serial, at=T0 + timedelta(minutes=k)), f"S{k}")
        assert opened.tree_unknown
        assert await _seen(conn, dev_id) is None


async def test_refused_inform_leaves_the_digest(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev_id = await _known(conn, serial)
    assert await sessions.open_session(conn, inform(serial), "HOLDER", 30) is not None
    async with db_pool.acquire() as other:
        assert await sessions.open_session(other, inform(serial), "OTHER", 30) is None
    assert await _seen(conn, dev_id) is not None
