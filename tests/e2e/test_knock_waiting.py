"""Knock the devices that wait: POST /campaigns/{id}/knock and /bulk-jobs/{id}/knock.

A real ACS, simulated CPEs that would not come on their own for an hour (their
periodic Inform), a campaign and a bulk job that do not knock: only the
operator's action brings the devices in, and they run within seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, dev_id_of, registered, token
from tests.e2e.test_campaigns import catalog_image, ok, serial_filter, wait_campaign
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db

RATE_PER_S = 2.0  # knocks one action starts per second, slow enough to measure
MAX_PER_ACTION = 2


@pytest.fixture
async def knock_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        session_timeout_s=5.0,
        campaign_tick_s=0.3,
        bulk_tick_s=0.3,
        connection_request_username="cr",
        connection_request_password="cr-secret",
        connection_request_timeout_s=2.0,
        knock_waiting_rate_per_s=RATE_PER_S,
        knock_waiting_max=MAX_PER_ACTION,
    )


@pytest.fixture
async def clients(knock_acs: Running, db_pool: asyncpg.Pool, unique_serial) -> Any:
    made = {
        r: Client(knock_acs, await token(db_pool, r, unique_serial))
        for r in ("admin", "operator", "viewer")
    }
    yield made
    for c in made.values():
        await c.close()


async def until(predicate: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.1)


async def test_a_campaign_without_connection_requests_runs_once_its_devices_are_knocked(
    knock_acs: Running, clients: dict[str, Client], unique_serial
) -> None:
    op = clients["operator"]
    fleet = await fleet_of(knock_acs, unique_serial("KC"), 2, periodic_interval=3600)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        image = await catalog_image(clients["admin"], unique_serial, "2.0.0")
        spec = {
            "name": unique_serial("knock-"),
            "image": image["id"],
            "filter": serial_filter(fleet),
            "stages": [{"size": "100%"}],
            "connectionRequest": False,
        }
        campaign = await ok(clients["admin"], "POST", "/campaigns", 201, json=spec)
        cid = campaign["id"]
        # a draft has no devices waiting: nothing to knock
        status, body = await op.call("POST", f"/campaigns/{cid}/knock")
        assert status == 409 and "draft" in body["error"]["message"], body
        await ok(op, "POST", f"/campaigns/{cid}/start")
        # several ticks go by: nobody knocks, the devices wait for their hourly Inform
        await asyncio.sleep(1.5)
        waiting = await ok(op, "GET", f"/campaigns/{cid}")
        assert waiting["totals"] == {"pending": 2}, waiting

        status, body = await clients["viewer"].call("POST", f"/campaigns/{cid}/knock")
        assert status == 403, body
        begun = time.monotonic()
        knocked = await ok(op, "POST", f"/campaigns/{cid}/knock")
        took = time.monotonic() - begun
        assert knocked == {
            "waiting": 2,
            "knocked": 2,
            "reached": 2,
            "remaining": 0,
            "byChannel": {"http": {"accepted": 2}},
            "unreachable": [],
        }
        # the second knock started no sooner than 1 / rate after the first
        assert took >= 1 / RATE_PER_S - 0.05, took
        done = await wait_campaign(op, cid, lambda b: b["status"] == "completed", within_s=20)
        assert done["totals"] == {"succeeded": 2}
        assert all(c.tree.software_version == "2.0.0" for c in fleet.devices.values())
        ran_within = time.monotonic() - begun
        assert ran_within < 20, ran_within

        status, body = await op.call("POST", f"/campaigns/{cid}/knock")
        assert status == 409 and "completed" in body["error"]["message"], body
        status, body = await op.call("POST", "/campaigns/987654321/knock")
        assert status == 404, body
        status, body = await op.call("POST", "/campaigns/not-a-number/knock")
        assert status == 400 and body["error"]["message"], body
    finally:
        await fleet.stop()


async def test_a_bulk_job_without_connection_requests_runs_once_its_devices_are_knocked(
    knock_acs: Running, clients: dict[str, Client], unique_serial
) -> None:
    op = clients["operator"]
    prefix = unique_serial("KB")
    fleet = await fleet_of(knock_acs, prefix, 2, periodic_interval=3600)
    # a device that registered once and is gone: its ConnectionRequestURL refuses;
    # its serial sorts after the fleet's, so the first (capped) knock skips it
    gone = await registered(knock_acs, prefix + "ZZ", digest=("cpe", "cpe-pw"))
    await gone.close()
    gone_id = dev_id_of(gone)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        live = sorted(dev_id(fleet, s) for s in fleet.devices)
        tag = unique_serial("knock-")
        for device in [*live, gone_id]:
            await ok(op, "POST", f"/devices/{device}/tags", json={"tags": [tag]})
        job = await ok(
            op,
            "POST",
            "/bulk-jobs",
            201,
            json={
                "name": "reboot, no knocks",
                "task": {"name": "reboot"},
                "filter": f'tag = "{tag}"',
                "ratePerMinute": 600,
                "connectionRequest": False,
            },
        )
        bid = job["id"]

        async def all_queued() -> bool:
            body = await ok(op, "GET", f"/bulk-jobs/{bid}")
            return body["queued"] == 3

        await until(all_queued, 10, "every device queued")
        await asyncio.sleep(1.0)  # ticks go by; nobody knocks
        body = await ok(op, "GET", f"/bulk-jobs/{bid}")
        assert body["progress"]["pending"] == 3, body

        first = await ok(op, "POST", f"/bulk-jobs/{bid}/knock")
        assert first == {
            "waiting": 3,
            "knocked": 2,
            "reached": 2,
            "remaining": 1,
            "byChannel": {"http": {"accepted": 2}},
            "unreachable": [],
        }

        async def live_done() -> bool:
            body = await ok(op, "GET", f"/bulk-jobs/{bid}")
            return body["progress"]["done"] == 2

        await until(live_done, 15, "the knocked devices rebooted")

        second = await ok(op, "POST", f"/bulk-jobs/{bid}/knock")
        assert (second["waiting"], second["knocked"], second["reached"]) == (1, 1, 0), second
        assert second["remaining"] == 0
        [miss] = second["unreachable"]
        assert miss["device"] == gone_id and miss["channel"] == "http", miss
        assert miss["outcome"] in ("refused", "unreachable"), miss
        assert "refused" in miss["reason"] or "connect" in miss["reason"], miss
        assert second["byChannel"] == {"http": {miss["outcome"]: 1}}
        rows = (await ok(op, "GET", f"/bulk-jobs/{bid}/devices"))["items"]
        row = next(r for r in rows if r["device"] == gone_id)
        assert row["status"] == "pending" and row["connectionRequest"]["ok"] is False, row
        assert row["connectionRequest"]["reason"] == miss["reason"]

        await ok(op, "POST", f"/bulk-jobs/{bid}/cancel")
        status, body = await op.call("POST", f"/bulk-jobs/{bid}/knock")
        assert status == 409 and "cancelled" in body["error"]["message"], body
        status, body = await op.call("POST", "/bulk-jobs/987654321/knock")
        assert status == 404, body
        status, body = await op.call("POST", "/bulk-jobs/0/knock")
        assert status == 400 and body["error"]["message"], body
        status, body = await clients["viewer"].call("POST", f"/bulk-jobs/{bid}/knock")
        assert status == 403, body
    finally:
        await fleet.stop()
