"""Scheduled bulk jobs end to end (issue 18 item 7): a start time and
maintenance windows. The ACS's own bulk tick is a minute here (the longest
allowed) and the test drives the tick itself, so what a tick does is asserted, not when it runs;
time passing is played by moving the job's start or windows in the database."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from acs.services import bulk_jobs as engine
from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import ok
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db


@pytest.fixture
async def slow_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest", cpe_username="cpe", cpe_password="cpe-pw", bulk_tick_s=60
    )


@pytest.fixture
async def op(slow_acs: Running, db_pool: asyncpg.Pool, unique_serial: Any) -> Any:
    client = Client(slow_acs, await token(db_pool, "operator", unique_serial))
    yield client
    await client.close()


def rfc(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def closed_window() -> dict[str, Any]:
    """Opens twelve hours from now, for an hour: closed for the whole test."""
    hour = (time.gmtime().tm_hour + 12) % 24
    return {"cron": f"0 {hour} * * *", "durationMinutes": 60, "timezone": "UTC"}


ALWAYS = {"cron": "* * * * *", "durationMinutes": 2, "timezone": "UTC"}  # open every minute


async def tick(pool: asyncpg.Pool, bulk_id: int) -> None:
    async with pool.acquire() as conn:
        await engine.tick_job(conn, bulk_id, None, 3600)


async def test_a_scheduled_job_sends_nothing_before_its_start(
    slow_acs: Running, op: Client, db_pool: asyncpg.Pool, unique_serial: Any
) -> None:
    fleet = await fleet_of(slow_acs, unique_serial("BS"), 2, periodic_interval=1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        start = datetime.now(UTC) + timedelta(hours=6)
        body = {
            "name": unique_serial("later-"),
            "task": {"name": "reboot"},
            "filter": f'DeviceID.SerialNumber LIKE "{fleet.config.serial_prefix}%"',
            "ratePerMinute": 6000,
            "startAt": rfc(start),
        }
        job = await ok(op, "POST", "/bulk-jobs", 201, json=body)
        assert (job["status"], job["total"], job["queued"]) == ("running", 2, 0)
        assert job["started"] is None and job["startAt"] == rfc(start)
        assert job["waiting"] == f"scheduled: starts at {rfc(start)}"
        await tick(db_pool, job["id"])
        assert (await ok(op, "GET", f"/bulk-jobs/{job['id']}"))["queued"] == 0

        # its start time comes
        async with db_pool.acquire() as conn:
            await conn.execute(
                "UPDATE bulk_jobs SET start_at = now(), rate_epoch = now() WHERE id = $1",
                job["id"],
            )
        await tick(db_pool, job["id"])
        now = await ok(op, "GET", f"/bulk-jobs/{job['id']}")
        # the first device goes at once, the next at the job's rate
        assert now["queued"] >= 1 and now["started"] is not None and now["waiting"] is None

        async def ticked() -> bool:
            await tick(db_pool, job["id"])
            return bool((await ok(op, "GET", f"/bulk-jobs/{job['id']}"))["queued"] == 2)

        deadline = time.monotonic() + 30
        while not await ticked():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert await fleet_reboots(fleet) == 2
    finally:
        await fleet.stop()


async def wait_for_job(op: Client, bid: int, predicate: Any, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while not predicate(body := await ok(op, "GET", f"/bulk-jobs/{bid}")):
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)


async def fleet_reboots(fleet: Any) -> int:
    await fleet.wait_for(
        lambda: all(c.requests_seen["Reboot"] >= 1 for c in fleet.devices.values())
    )
    return sum(1 for c in fleet.devices.values() if c.requests_seen["Reboot"] >= 1)


async def test_a_job_sends_only_inside_its_window(
    slow_acs: Running, op: Client, db_pool: asyncpg.Pool, unique_serial: Any
) -> None:
    fleet = await fleet_of(slow_acs, unique_serial("BW"), 1, periodic_interval=1)
    serial = next(iter(fleet.devices))
    device = dev_id(fleet, serial)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        await fleet.stop()  # offline: its task waits in the queue
        body = {
            "name": unique_serial("window-"),
            "task": {"name": "reboot"},
            "filter": f'DeviceID.ID = "{device}"',
            "windows": [closed_window()],
        }
        job = await ok(op, "POST", "/bulk-jobs", 201, json=body)
        bid = job["id"]
        assert job["waiting"].startswith("outside the maintenance windows; the next opens at")
        await tick(db_pool, bid)
        assert (await ok(op, "GET", f"/bulk-jobs/{bid}"))["queued"] == 0

        async def set_windows(windows: list[dict[str, Any]]) -> None:
            async with db_pool.acquire() as conn:
                await conn.execute(
                    "UPDATE bulk_jobs SET windows = $2::jsonb WHERE id = $1",
                    bid,
                    windows,
                )

        await set_windows([ALWAYS])  # the window opens: the device's task is queued
        await tick(db_pool, bid)
        opened = await ok(op, "GET", f"/bulk-jobs/{bid}")
        assert opened["queued"] == 1 and opened["progress"]["pending"] == 1
        [first] = (await ok(op, "GET", f"/bulk-jobs/{bid}/devices"))["items"]

        await set_windows([closed_window()])  # it closes before the device came
        await tick(db_pool, bid)
        closed = await ok(op, "GET", f"/bulk-jobs/{bid}")
        assert closed["queued"] == 0 and closed["progress"]["notQueued"] == 1
        async with db_pool.acquire() as conn:
            status = await conn.fetchval("SELECT status FROM tasks WHERE id = $1", first["task"])
        assert status == "cancelled"  # withdrawn: nothing reaches it outside its window

        await set_windows([ALWAYS])  # the next opening: queued again, and sent
        await tick(db_pool, bid)
        again = await ok(op, "GET", f"/bulk-jobs/{bid}")
        assert again["queued"] == 1
        fleet = await fleet_of(slow_acs, fleet.config.serial_prefix, 1, periodic_interval=1)
        await fleet_reboots(fleet)
        await wait_for_job(op, bid, lambda b: b["progress"]["done"] == 1)
        await tick(db_pool, bid)
        final = await ok(op, "GET", f"/bulk-jobs/{bid}")
        assert final["status"] == "completed" and final["progress"]["done"] == 1
    finally:
        await fleet.stop()


async def test_a_schedule_that_cannot_work_is_refused_with_the_reason(op: Client) -> None:
    good = {"name": "n", "task": {"name": "reboot"}, "filter": 'tag = "nobody-has-it"'}

    async def refused(extra: dict[str, Any], **kw: Any) -> dict[str, Any]:
        got = await ok(op, "POST", "/bulk-jobs", 400, json=good | extra, **kw)
        return dict(got["error"])

    past = rfc(datetime.now(UTC) - timedelta(hours=1))
    err = await refused({"startAt": past})
    assert err["code"] == "invalid_schedule" and err["errors"][0]["path"] == "startAt"
    assert "in the past" in err["message"]
    err = await refused({"startAt": past}, params={"dryRun": "true"})  # the dry run refuses too
    assert err["code"] == "invalid_schedule"
    err = await refused({"startAt": rfc(datetime.now(UTC) + timedelta(days=800))})
    assert "days ahead" in err["message"]
    never = {"cron": "0 0 30 2 *", "durationMinutes": 60, "timezone": "UTC"}
    err = await refused({"windows": [never]})
    assert err["errors"][0]["path"] == "windows.0"
    assert "never opens" in err["errors"][0]["message"]
    err = await refused({"windows": [{"cron": "0 2 * * 1", "durationMinutes": 60}]})
    assert err["errors"][0]["path"] == "windows.0" and "mon" in err["errors"][0]["message"]
