"""A rollback that misses no one (issue 18 item 4), end to end: the real ACS,
simulated CPEs, a campaign aborted while one device is still installing."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from acs.web.server import Running
from cpe_simulator.cpe import SimulatedCpe as Cpe
from cpe_simulator.fleet import Fleet
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import catalog_image, like_any, ok, wait_campaign
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db


@pytest.fixture
async def fw_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        campaign_tick_s=0.3,
        connection_request_username="cr",
        connection_request_password="cr-secret",
    )


@pytest.fixture
async def admin(fw_acs: Running, db_pool: asyncpg.Pool, unique_serial: Any) -> Any:
    client = Client(fw_acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


class HeldDownload:
    """Holds one simulated CPE's file transfers until released: the test
    decides when its install finishes (after the abort), with no timing."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, serial: str) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        real = Cpe._download

        async def held(cpe: Cpe, transfer: Any) -> bytes:
            if cpe.serial == serial:
                self.entered.set()
                await self.release.wait()
            return await real(cpe, transfer)

        monkeypatch.setattr(Cpe, "_download", held)


async def member(admin: Client, cid: int, fleet: Fleet) -> dict[str, Any]:
    page = await ok(admin, "GET", f"/campaigns/{cid}/devices")
    mine = dev_id(fleet, next(iter(fleet.devices)))
    return next(m for m in page["items"] if m["device"] == mine)


async def test_a_device_finishing_its_install_after_the_abort_is_rolled_back(
    fw_acs: Running, admin: Client, unique_serial: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a product of its own: the catalog is shared by the run's tests, and another
    # test's 1.0.0 image lives in that test's ACS's file store
    product = unique_serial("RBP")
    slow = await fleet_of(
        fw_acs, unique_serial("RS"), 1, periodic_interval=1, product_class=product
    )
    bad_prefix = unique_serial("RX")
    bad_kw: dict[str, Any] = {"faults": "corrupt-download", "product_class": product}
    bad = await fleet_of(fw_acs, bad_prefix, 1, periodic_interval=1, **bad_kw)
    try:
        everyone = [*slow.devices.values(), *bad.devices.values()]
        await slow.wait_for(lambda: all(c.sessions_ok for c in everyone))
        await bad.stop()  # offline until the slow device's Download is on its way
        await catalog_image(admin, unique_serial, "1.0.0", productClass=product)  # the rollback's
        image = await catalog_image(admin, unique_serial, "2.0.0", productClass=product)
        cpe = next(iter(slow.devices.values()))
        held = HeldDownload(monkeypatch, cpe.serial)
        spec = {
            "name": unique_serial("rb-late-"),
            "image": image["id"],
            "filter": like_any(slow, bad),
            "stages": [{"size": "100%", "failureThreshold": "1", "onFailure": "abort"}],
            "rollback": True,
        }
        cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
        await ok(admin, "POST", f"/campaigns/{cid}/start")
        await held.entered.wait()  # the CPE accepted the Download of 2.0.0
        assert (await member(admin, cid, slow))["state"] == "downloading"

        bad = await fleet_of(fw_acs, bad_prefix, 1, periodic_interval=1, **bad_kw)
        aborted = await wait_campaign(admin, cid, lambda b: b["status"] == "aborted")
        assert "failure threshold" in aborted["statusReason"]
        # still in flight at the abort: it cannot be stopped mid-flash
        assert (await member(admin, cid, slow))["state"] == "downloading"

        held.release.set()  # the install finishes after the abort
        done = await wait_campaign(
            admin, cid, lambda b: b["totals"].get("rolled_back") == 1 or b["totals"]["failed"] > 1
        )
        late = await member(admin, cid, slow)
        assert done["totals"].get("rolled_back") == 1, late
        # it ran 2.0.0, and went back
        await slow.wait_for(
            lambda: (cpe.firmware_before, cpe.tree.software_version) == ("2.0.0", "1.0.0")
        )
        late = await member(admin, cid, slow)
        assert (late["state"], late["rollback"]) == ("rolled_back", True)
        assert late["targetVersion"] == "1.0.0" and late["fromVersion"] == "2.0.0"
        assert "succeeded" not in done["totals"]
        why = await ok(admin, "GET", f"/devices/{dev_id(slow, cpe.serial)}/firmware")
        mine = next(c for c in why["campaigns"] if c["campaign"] == cid)
        assert mine["code"] == "rolled_back"
        # an aborted, rolling-back campaign still takes retry-failed: it retries
        # the failed rollbacks (none here); the failed upgrade stays failed
        retried = await ok(admin, "POST", f"/campaigns/{cid}/retry-failed")
        assert retried == {"retried": 0}
        failed = await ok(admin, "GET", f"/campaigns/{cid}/devices?state=failed")
        assert [m["rollback"] for m in failed["items"]] == [False]
    finally:
        await slow.stop()
        await bad.stop()
