"""The guards between operator data and a device's session, against real PostgreSQL:
a precondition the database refuses, and stored policies the compiler refuses."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from acs.core.filters import Like
from acs.services import provisioning
from acs.store import policies as store
from tests.integration.test_device_query import inform

pytestmark = pytest.mark.db

NOW = datetime(2026, 11, 1, tzinfo=UTC)


async def _policy(
    conn: asyncpg.Connection, name: str, precondition: str, spec: dict
) -> store.PolicyRow:
    return await store.create(conn, {"name": name, "precondition": precondition, "spec": spec}, "t")


async def test_one_precondition_the_database_refuses_does_not_take_the_others_down(
    db_pool: asyncpg.Pool, unique_serial: Callable[..., str]
) -> None:
    product = unique_serial("PG")
    async with db_pool.acquire() as conn:
        device = await inform(conn, product, unique_serial(), NOW, [])
        flt = f'DeviceID.ProductClass = "{product}"'
        good = provisioning.load(await _policy(conn, unique_serial("good-"), flt, {}))
        other = provisioning.load(await _policy(conn, unique_serial("other-"), "", {}))
        # an AST the parser no longer produces (LIKE ending with its escape
        # character), as a policy stored before that rule would still carry
        broken_row = await _policy(conn, unique_serial("broken-"), "", {})
        broken = dataclasses.replace(
            provisioning.load(broken_row), precondition=Like("DeviceID.Manufacturer", "\\")
        )
        failed: list[tuple[provisioning.LoadedPolicy, str]] = []
        hits = await provisioning.matching(conn, device, [good, broken, other], failed)
        assert hits == [good, other]
        assert [(p.row.id, "could not be evaluated" in why) for p, why in failed] == [
            (broken_row.id, True)
        ]
        # inside a transaction the failed query must not abort it
        async with conn.transaction():
            failed.clear()
            hits = await provisioning.matching(conn, device, [broken, good], failed)
            assert hits == [good] and len(failed) == 1
            assert await conn.fetchval("SELECT 1") == 1
        for row in (good.row, other.row, broken_row):
            await store.delete(conn, row.id)


async def test_the_book_keeps_refused_policies_only_to_report_them(
    db_pool: asyncpg.Pool, unique_serial: Callable[..., str]
) -> None:
    product = unique_serial("PB")
    async with db_pool.acquire() as conn:
        device = await inform(conn, product, unique_serial(), NOW, [])
        flt = f'DeviceID.ProductClass = "{product}"'
        rows = [
            await _policy(conn, unique_serial("tags-"), flt, {"tags": {"remove": ["has space"]}}),
            await _policy(conn, unique_serial("like-"), 'DeviceID.OUI LIKE "\\\\"', {}),
            await _policy(conn, unique_serial("shape-"), flt, {"parameters": "all"}),
            await _policy(
                conn,
                unique_serial("window-"),
                flt,
                {},
            ),
        ]
        await conn.execute(
            "UPDATE policies SET windows = $2 WHERE id = $1",
            rows[3].id,
            [{"cron": "not a cron", "durationMinutes": 5}],
        )
        try:
            book = provisioning.PolicyBook(ttl_s=0)
            found = await provisioning.session_plan(
                conn, book, device, "Device.", ["2 PERIODIC"], NOW, 100
            )
            assert found is None  # nothing usable applies
            results = await store.results(conn, device)
            faults = {pid: r.faults for pid, r in results.items()}
            assert set(faults) == {rows[0].id, rows[2].id, rows[3].id}  # "like-" matches no one
            assert "tags.remove.0" in faults[rows[0].id][0]["reason"]
            assert "parameters: must be a list" in faults[rows[2].id][0]["reason"]
            assert "windows.0: unusable window" in faults[rows[3].id][0]["reason"]
            for pid in faults:
                with pytest.raises(provisioning.SpecError):
                    provisioning.load(await store.get(conn, pid))
        finally:
            for row in rows:
                await store.delete(conn, row.id)
