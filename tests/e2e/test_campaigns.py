"""Firmware campaigns end to end: the API, the real ACS, simulated CPEs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from acs.web.server import Running
from cpe_simulator.firmware import make_image
from cpe_simulator.fleet import Fleet
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db


@pytest.fixture
async def fw_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        session_timeout_s=5.0,
        campaign_tick_s=0.3,
    )


@pytest.fixture
async def admin(fw_acs: Running, db_pool: asyncpg.Pool, unique_serial) -> Any:
    client = Client(fw_acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


async def ok(client: Client, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    got, body = await client.call(method, path, **kw)
    assert got == status, (method, path, got, body)
    return body


async def catalog_image(
    admin: Client, unique_serial, version: str, **fields: Any
) -> dict[str, Any]:
    name = f"fw-{unique_serial()}-{version}.bin"
    await ok(admin, "PUT", f"/files/{name}", 201, data=make_image(version, 20_000))
    body = {
        "file": name,
        "oui": "ACDE48",
        "productClass": "HGW",
        "hardwareVersions": ["HW1.0"],
        "version": version,
    } | fields
    return await ok(admin, "POST", "/firmware/images", 201, json=body)


async def wait_campaign(
    admin: Client, cid: int, predicate: Any, within_s: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        body = await ok(admin, "GET", f"/campaigns/{cid}")
        if predicate(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"campaign never reached the condition: {body}")
        await asyncio.sleep(0.2)


def serial_filter(fleet: Fleet) -> str:
    return f'DeviceID.SerialNumber LIKE "{fleet.config.serial_prefix}%"'


async def test_small_campaign_upgrades_every_device_and_verifies_it(
    fw_acs: Running, admin: Client, unique_serial
) -> None:
    fleet = await fleet_of(fw_acs, unique_serial("C"), 6, periodic_interval=1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        image = await catalog_image(admin, unique_serial, "2.0.0")
        campaign = await ok(
            admin,
            "POST",
            "/campaigns",
            201,
            json={
                "name": unique_serial("camp-"),
                "image": image["id"],
                "filter": serial_filter(fleet),
                "stages": [{"size": "50%"}, {"size": "100%"}],
            },
        )
        assert campaign["status"] == "draft"
        cid = campaign["id"]
        started = await ok(admin, "POST", f"/campaigns/{cid}/start")
        assert started["audience"] == 6
        assert [s["devices"] for s in started["stages"]] == [3, 3]
        done = await wait_campaign(admin, cid, lambda b: b["status"] == "completed")
        assert done["totals"] == {"succeeded": 6}
        assert all(c.tree.software_version == "2.0.0" for c in fleet.devices.values())
        serial = next(iter(fleet.devices))
        why = await ok(admin, "GET", f"/devices/{dev_id(fleet, serial)}/firmware")
        mine = next(c for c in why["campaigns"] if c["campaign"] == cid)
        assert mine["state"] == "succeeded" and "reports 2.0.0" in mine["reason"]
        assert next(i for i in why["images"] if i["image"] == image["id"])["code"] == "same_version"
    finally:
        await fleet.stop()
