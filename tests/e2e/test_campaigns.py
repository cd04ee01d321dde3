"""Firmware campaigns end to end: the API, the real ACS, simulated CPEs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from acs.web.server import Running, running_acs
from cpe_simulator.firmware import make_image
from cpe_simulator.fleet import Fleet
from tests.e2e.conftest import StartAcs, make_settings
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
        connection_request_username="cr",
        connection_request_password="cr-secret",
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


# --------------------------------------------------------------------------- the big one


class RestartableAcs:
    """An ACS that can be stopped and started again on the same ports, as an
    operator restarts one: CPEs keep the URL they were given."""

    def __init__(self, database_url: str, data_dir: Any, **overrides: Any) -> None:
        self.database_url = database_url
        self.overrides = {"data_dir": data_dir, **overrides}
        self.ctx: Any = None
        self.running: Running | None = None

    async def start(self) -> Running:
        self.ctx = running_acs(make_settings(**self.overrides), self.database_url)
        self.running = await self.ctx.__aenter__()
        ports = self.running.ports
        self.overrides |= {
            "cwmp_port": ports["cwmp"],
            "api_port": ports["api"],
            "files_port": ports["files"],
        }
        return self.running

    async def stop(self) -> None:
        if self.ctx is not None:
            ctx, self.ctx = self.ctx, None
            await ctx.__aexit__(None, None, None)


def like_any(*fleets: Fleet) -> str:
    return " OR ".join(f'DeviceID.SerialNumber LIKE "{f.config.serial_prefix}%"' for f in fleets)


async def test_three_stage_campaign_over_200_cpes_survives_a_restart(
    database_url: str, db_pool: asyncpg.Pool, tmp_path: Any, unique_serial
) -> None:
    acs = RestartableAcs(
        database_url,
        tmp_path,
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        session_timeout_s=5.0,
        campaign_tick_s=0.3,
    )
    running = await acs.start()
    admin = Client(running, await token(db_pool, "admin", unique_serial))
    fleets: dict[str, Fleet] = {}
    try:
        faults = "corrupt-download:0.05,power-loss:0.05"
        fleets["main"] = await fleet_of(
            running, unique_serial("M"), 200, periodic_interval=2, faults=faults, max_concurrent=100
        )
        fleets["hardware"] = await fleet_of(
            running, unique_serial("H"), 3, periodic_interval=2, hardware_version="HW2.0"
        )
        fleets["region"] = await fleet_of(running, unique_serial("G"), 3, periodic_interval=2)
        fleets["same"] = await fleet_of(
            running, unique_serial("S"), 2, periodic_interval=2, software_version="2.0.0"
        )
        fleets["newer"] = await fleet_of(
            running, unique_serial("N"), 2, periodic_interval=2, software_version="3.0.0"
        )
        fleets["stone"] = await fleet_of(
            running, unique_serial("T"), 2, periodic_interval=2, software_version="0.9.0"
        )
        everyone = [c for f in fleets.values() for c in f.devices.values()]
        await fleets["main"].wait_for(lambda: all(c.sessions_ok for c in everyone), 120)
        # the image is for region "UK": every device but the "region" fleet's is tagged uk
        async with db_pool.acquire() as conn:
            await conn.execute(
                "UPDATE devices SET tags = array_append(tags, 'uk')"
                " WHERE serial_number LIKE ANY($1::text[])",
                [f.config.serial_prefix + "%" for n, f in fleets.items() if n != "region"],
            )
        image = await catalog_image(
            admin,
            unique_serial,
            "2.0.0",
            minVersion="1.0.0",
            region={"name": "UK", "source": "tag", "values": ["uk"]},
        )
        spec = {
            "name": unique_serial("big-"),
            "image": image["id"],
            "filter": like_any(*fleets.values()),
            "stages": [
                {"size": "10%", "successThreshold": "80%", "failureThreshold": "50%"},
                {"size": "50%", "successThreshold": "80%", "failureThreshold": "50%"},
                {"size": "100%", "successThreshold": "80%", "failureThreshold": "50%"},
            ],
            "maxAttempts": 3,
            "retryBackoffS": 0.5,
            "verifyTimeoutS": 20,
            "maxInFlight": 40,
        }
        preview = await ok(admin, "POST", "/campaigns?dryRun=true", json=spec)
        assert [s["devices"] for s in preview["stages"]] == [20, 80, 100]
        assert preview["skipped"] == {
            "hardware_mismatch": 3,
            "region_mismatch": 3,
            "same_version": 2,
            "not_newer": 2,
            "needs_stepping_stone": 2,
        }
        cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
        started = await ok(admin, "POST", f"/campaigns/{cid}/start")
        # the dry run showed the very devices the start took
        assert [s["devices"] for s in started["stages"]] == [20, 80, 100]
        members = await ok(admin, "GET", f"/campaigns/{cid}/devices?stage=1&limit=1000")
        assert sorted(m["device"] for m in members["items"]) == sorted(
            preview["stages"][0]["sample"]
        )

        # Stage 1 is a draw of 20 from 200 devices of which about a tenth are made to
        # fail; a draw holding five or more of them pauses the stage below its 80 %
        # success threshold, as designed. An operator approves it then, and so does the
        # test: the draw must not decide it (every count is still checked below).
        def in_stage_2(b: dict[str, Any]) -> bool:
            return b["currentStage"] >= 2 and b["stages"][1]["states"].get("succeeded", 0) >= 5

        def held_at_stage_1(b: dict[str, Any]) -> bool:
            return b["status"] == "paused" and "success threshold" in (b["statusReason"] or "")

        body = await wait_campaign(admin, cid, lambda b: in_stage_2(b) or held_at_stage_1(b), 120)
        if held_at_stage_1(body):
            await ok(admin, "POST", f"/campaigns/{cid}/approve")
            await wait_campaign(admin, cid, in_stage_2, 120)
        # restart the ACS while stage 2 is under way
        await admin.close()
        await acs.stop()
        await asyncio.sleep(1.0)
        running = await acs.start()
        admin = Client(running, await token(db_pool, "admin", unique_serial))
        done = await wait_campaign(admin, cid, lambda b: b["status"] == "completed", 240)

        main = fleets["main"]
        corrupt = {s for s, c in main.devices.items() if c.has("corrupt-download")}
        lost = {s for s, c in main.devices.items() if c.has("power-loss")} - corrupt
        good = set(main.devices) - corrupt - lost
        assert corrupt and lost  # the shares gave both kinds of trouble
        assert done["totals"] == {
            "succeeded": len(good),
            "failed": len(corrupt) + len(lost),
            "skipped": 12,
        }
        for serial in good:  # succeeded devices report the new version
            assert main.devices[serial].tree.software_version == "2.0.0"
        async with db_pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT cd.device_id, cd.state, cd.code, cd.fault_code, cd.attempts, cd.reason,"
                " d.serial_number, d.software_version,"
                " (SELECT count(*) FROM tasks t WHERE t.device_id = cd.device_id"
                "   AND t.name = 'download' AND t.args->>'commandKey' LIKE $2) AS downloads,"
                " (SELECT count(*) FROM tasks t WHERE t.device_id = cd.device_id"
                "   AND t.name = 'download' AND t.status = 'done'"
                "   AND t.args->>'commandKey' LIKE $2) AS done"
                " FROM campaign_devices cd JOIN devices d ON d.id = cd.device_id"
                " WHERE cd.campaign_id = $1",
                cid,
                f"campaign-{cid}-%",
            )
        by_serial = {r["serial_number"]: r for r in rows}
        for serial in good:
            r = by_serial[serial]
            assert r["software_version"] == "2.0.0"
            # one Download per attempt, and never two that completed
            assert r["downloads"] == r["attempts"] and r["done"] == 1
        for serial in corrupt:
            r = by_serial[serial]
            assert (r["state"], r["code"], r["fault_code"]) == ("failed", "download_fault", 9018)
        # the restart may cost a device an attempt (its download found the file
        # server down: 9015; or the session that carried the Download was cut),
        # so only power losses and those can end a power-loss device
        codes = []
        for serial in lost:
            r = by_serial[serial]
            assert (r["state"], r["attempts"]) == ("failed", 3), r
            assert r["code"] in ("power_loss", "download_fault", "transfer_lost"), r
            assert r["code"] != "download_fault" or r["fault_code"] == 9015, r
            assert main.devices[serial].tree.software_version == "1.0.0"
            codes.append(r["code"])
        assert "power_loss" in codes

        async def why(fleet: str) -> dict[str, Any]:
            f = fleets[fleet]
            body = await ok(admin, "GET", f"/devices/{dev_id(f, next(iter(f.devices)))}/firmware")
            return next(c for c in body["campaigns"] if c["campaign"] == cid)

        expected = {
            "hardware": "hardware_mismatch",
            "region": "region_mismatch",
            "same": "same_version",
            "newer": "not_newer",
            "stone": "needs_stepping_stone",
        }
        for fleet, code in expected.items():
            verdict = await why(fleet)
            assert (verdict["state"], verdict["code"]) == ("skipped", code), verdict
        assert "HW2.0" in (await why("hardware"))["reason"]
        assert "1.0.0 or later" in (await why("stone"))["reason"]
        failed_serial = next(iter(corrupt))
        body = await ok(admin, "GET", f"/devices/{dev_id(main, failed_serial)}/firmware")
        verdict = next(c for c in body["campaigns"] if c["campaign"] == cid)
        assert verdict["code"] == "device_faulted" and "9018" in verdict["reason"]
    finally:
        for fleet in fleets.values():
            await fleet.stop()
        await admin.close()
        await acs.stop()


# --------------------------------------------------------------------------- halting


async def test_failure_threshold_aborts_and_skips_the_rest(
    fw_acs: Running, admin: Client, unique_serial
) -> None:
    fleet = await fleet_of(
        fw_acs, unique_serial("A"), 10, periodic_interval=1, faults="corrupt-download"
    )
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        image = await catalog_image(admin, unique_serial, "2.0.0")
        spec = {
            "name": unique_serial("abort-"),
            "image": image["id"],
            "filter": serial_filter(fleet),
            "stages": [
                {"size": "20%", "failureThreshold": "1", "onFailure": "abort"},
                {"size": "100%"},
            ],
        }
        cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
        await ok(admin, "POST", f"/campaigns/{cid}/start")
        # the first failure aborts; the other stage-1 device fails too if its
        # Download went out first, else it is skipped with everyone else
        done = await wait_campaign(
            admin,
            cid,
            lambda b: (
                b["status"] == "aborted"
                and b["stages"][0]["states"].get("failed", 0) >= 1
                and sum(b["stages"][0]["states"].get(k, 0) for k in ("failed", "skipped")) == 2
            ),
        )
        assert "failure threshold 1 reached" in done["statusReason"]
        assert done["stages"][1]["states"] == {"skipped": 8}
        rest = await ok(admin, "GET", f"/campaigns/{cid}/devices?stage=2")
        assert {(m["state"], m["code"]) for m in rest["items"]} == {("skipped", "campaign_aborted")}
        failed = await ok(admin, "GET", f"/campaigns/{cid}/devices?state=failed")
        assert all(m["faultCode"] == 9018 for m in failed["items"])
        assert all(c.tree.software_version == "1.0.0" for c in fleet.devices.values())
        # an aborted campaign takes no more orders
        status, body = await admin.call("POST", f"/campaigns/{cid}/resume")
        assert status == 409 and "aborted" in body["error"]["message"]
    finally:
        await fleet.stop()


async def test_failure_threshold_pauses_and_rolls_back_the_upgraded(
    fw_acs: Running, admin: Client, unique_serial
) -> None:
    good = await fleet_of(fw_acs, unique_serial("RG"), 4, periodic_interval=1)
    bad_prefix = unique_serial("RB")
    bad = await fleet_of(fw_acs, bad_prefix, 2, periodic_interval=1, faults="corrupt-download")
    try:
        everyone = [*good.devices.values(), *bad.devices.values()]
        await good.wait_for(lambda: all(c.sessions_ok for c in everyone))
        await bad.stop()  # offline until the good ones are done
        await catalog_image(admin, unique_serial, "1.0.0")  # what a rollback installs
        image = await catalog_image(admin, unique_serial, "2.0.0")
        spec = {
            "name": unique_serial("rollback-"),
            "image": image["id"],
            "filter": like_any(good, bad),
            "stages": [{"size": "100%", "failureThreshold": "1", "onFailure": "pause"}],
            "rollback": True,
        }
        cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
        await ok(admin, "POST", f"/campaigns/{cid}/start")
        await wait_campaign(admin, cid, lambda b: b["totals"].get("succeeded") == 4)
        assert all(c.tree.software_version == "2.0.0" for c in good.devices.values())

        bad = await fleet_of(fw_acs, bad_prefix, 2, periodic_interval=1, faults="corrupt-download")
        paused = await wait_campaign(admin, cid, lambda b: b["status"] == "paused")
        assert "failure threshold" in paused["statusReason"]
        done = await wait_campaign(admin, cid, lambda b: b["totals"].get("rolled_back") == 4)
        assert done["status"] == "paused"
        await good.wait_for(
            lambda: all(c.tree.software_version == "1.0.0" for c in good.devices.values())
        )
        serial = next(iter(good.devices))
        why = await ok(admin, "GET", f"/devices/{dev_id(good, serial)}/firmware")
        mine = next(c for c in why["campaigns"] if c["campaign"] == cid)
        assert (mine["state"], mine["code"]) == ("rolled_back", "rolled_back")
    finally:
        await good.stop()
        await bad.stop()


# --------------------------------------------------------------------------- explanations


async def explain_of(admin: Client, fleet: Fleet, serial: str, cid: int) -> dict[str, Any]:
    body = await ok(admin, "GET", f"/devices/{dev_id(fleet, serial)}/firmware")
    return next(c for c in body["campaigns"] if c["campaign"] == cid)


async def test_explain_says_why_a_pending_device_waits(
    fw_acs: Running, admin: Client, unique_serial
) -> None:
    offline = await fleet_of(fw_acs, unique_serial("X"), 8)
    online: list[Fleet] = []
    try:
        await offline.wait_for(lambda: all(c.sessions_ok for c in offline.devices.values()))
        await offline.stop()
        serials = sorted(offline.devices)
        image = await catalog_image(admin, unique_serial, "2.0.0")

        async def campaign(name: str, serial_list: list[str], **extra: Any) -> int:
            flt = " OR ".join(f'DeviceID.SerialNumber = "{s}"' for s in serial_list)
            spec = {
                "name": unique_serial(name),
                "image": image["id"],
                "filter": flt,
                "stages": [{"size": "100%"}],
            } | extra
            cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
            await ok(admin, "POST", f"/campaigns/{cid}/start")
            return int(cid)

        paused = await campaign("paused-", [serials[0]])
        await ok(admin, "POST", f"/campaigns/{paused}/pause")
        v = await explain_of(admin, offline, serials[0], paused)
        assert v["code"] == "campaign_paused" and "paused by" in v["reason"]

        hour = (time.gmtime().tm_hour + 12) % 24
        window = {"cron": f"0 {hour} * * *", "durationMinutes": 60, "timezone": "UTC"}
        windowed = await campaign("window-", [serials[1]], windows=[window])
        v = await explain_of(admin, offline, serials[1], windowed)
        assert v["code"] == "outside_window" and f"T{hour:02d}:00:00" in v["reason"]

        staged = await campaign("stages-", serials[2:4], stages=[{"size": "50%"}, {"size": "100%"}])
        codes = {(await explain_of(admin, offline, s, staged))["code"] for s in serials[2:4]}
        assert codes == {"waiting_for_device", "stage_not_reached"}

        # overlapping campaigns: the higher priority holds the device
        low = await campaign("low-", [serials[4]], priority=0)
        high = await campaign("high-", [serials[4]], priority=5)
        v = await explain_of(admin, offline, serials[4], low)
        assert v["code"] == "precedence" and f"#{high}" in v["reason"]
        v = await explain_of(admin, offline, serials[4], high)
        assert v["code"] == "waiting_for_device"

        # a bricked device holds the only download slot
        brick = await fleet_of(fw_acs, unique_serial("XB"), 1, periodic_interval=1, faults="brick")
        online.append(brick)
        await brick.wait_for(lambda: all(c.sessions_ok for c in brick.devices.values()))
        limited = await campaign("limited-", [next(iter(brick.devices)), serials[5]], maxInFlight=1)
        await wait_campaign(admin, limited, lambda b: b["totals"].get("downloading") == 1)
        v = await explain_of(admin, offline, serials[5], limited)
        assert v["code"] == "rate_limited" and "at most 1 at once" in v["reason"]

        # a transient failure: the next attempt waits out its back-off
        cut = await fleet_of(
            fw_acs, unique_serial("XT"), 1, periodic_interval=1, faults="truncated-download"
        )
        online.append(cut)
        await cut.wait_for(lambda: all(c.sessions_ok for c in cut.devices.values()))
        cut_serial = next(iter(cut.devices))
        backoff = await campaign("backoff-", [cut_serial], retryBackoffS=3600)
        await wait_campaign(
            admin, backoff, lambda b: b["totals"] == {"pending": 1} and b["started"]
        )
        v = await explain_of(admin, cut, cut_serial, backoff)
        deadline = time.monotonic() + 30
        while v["code"] != "retry_backoff":  # the first attempt is still under way
            assert time.monotonic() < deadline, v
            await asyncio.sleep(0.2)
            v = await explain_of(admin, cut, cut_serial, backoff)
        assert "9017" in v["reason"] and "next attempt after" in v["reason"]

        # not in a campaign at all
        v = await explain_of(admin, offline, serials[6], paused)
        assert v["code"] == "filter_mismatch" and v["state"] is None
    finally:
        for fleet in online:
            await fleet.stop()


# --------------------------------------------------------------------------- bad input


async def test_catalog_and_campaign_bad_input(
    fw_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial
) -> None:
    image = await catalog_image(admin, unique_serial, "2.0.0")

    async def refused(method: str, path: str, status: int, body: Any) -> dict[str, Any]:
        got, answer = await admin.call(method, path, json=body)
        assert got == status, (path, got, answer)
        return answer["error"]

    base = {
        "name": unique_serial("bad-"),
        "image": image["id"],
        "stages": [{"size": "100%"}],
    }
    err = await refused(
        "POST",
        "/firmware/images",
        400,
        {
            "file": image["file"],
            "oui": "ACDE48",
            "productClass": "HGW",
            "hardwareVersions": [],
            "version": "2.0.0",
        },
    )
    assert err["errors"][0]["path"] == "hardwareVersions"
    err = await refused(
        "POST",
        "/firmware/images",
        404,
        {
            "file": "no-such.bin",
            "oui": "ACDE48",
            "productClass": "HGW",
            "hardwareVersions": ["HW1.0"],
            "version": "2.0.0",
        },
    )
    assert err["code"] == "unknown_file"
    err = await refused(
        "POST", "/campaigns", 400, base | {"stages": [{"size": "100%", "failureThreshold": "150%"}]}
    )
    assert err["errors"][0]["path"] == "stages.0.failureThreshold"
    assert "over 100%" in err["errors"][0]["message"]
    err = await refused(
        "POST",
        "/campaigns",
        400,
        base | {"windows": [{"cron": "0 0 30 2 *", "durationMinutes": 60}]},
    )
    assert err["errors"][0]["path"].startswith("windows.0")
    assert "never opens" in err["errors"][0]["message"]
    err = await refused("POST", "/campaigns", 400, base | {"channel": "stable"})
    assert "exactly one of image or channel" in err["errors"][0]["message"]
    err = await refused(
        "POST", "/campaigns", 400, base | {"stages": [{"size": "50%"}, {"size": "10%"}]}
    )
    assert "cumulative" in err["errors"][0]["message"]
    err = await refused("POST", "/campaigns", 400, base | {"filter": "DeviceID.OUI = "})
    assert err["errors"][0]["path"] == "filter"
    err = await refused("POST", "/campaigns", 404, base | {"image": 999_999_999})
    assert err["code"] == "unknown_image"
    # a file the catalog offers cannot be deleted from under it
    err = await refused("DELETE", f"/files/{image['file']}", 409, None)
    assert err["code"] == "in_use"
    # a version the product's scheme cannot read is refused
    product = unique_serial("P")
    await ok(admin, "PUT", f"/firmware/products/ACDE48/{product}", json={"versionScheme": "semver"})
    err = await refused(
        "POST",
        "/firmware/images",
        400,
        {
            "file": image["file"],
            "oui": "ACDE48",
            "productClass": product,
            "hardwareVersions": ["HW1.0"],
            "version": "V1.0.0B05",
        },
    )
    assert err["code"] == "invalid_version"
    # controls that do not fit the campaign's state
    cid = (await ok(admin, "POST", "/campaigns", 201, json=base))["id"]
    err = await refused("POST", f"/campaigns/{cid}/resume", 409, None)
    assert "draft" in err["message"]
    await refused("POST", "/campaigns", 409, base)  # the name is taken
    viewer = Client(fw_acs, await token(db_pool, "viewer", unique_serial))
    try:
        got, _ = await viewer.call("POST", "/campaigns", json=base | {"name": "v"})
        assert got == 403
    finally:
        await viewer.close()


async def test_image_that_fits_no_hardware_skips_everyone(
    fw_acs: Running, admin: Client, unique_serial
) -> None:
    fleet = await fleet_of(fw_acs, unique_serial("W"), 3)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        image = await catalog_image(admin, unique_serial, "2.0.0", hardwareVersions=["HW9.9"])
        spec = {
            "name": unique_serial("nohw-"),
            "image": image["id"],
            "filter": serial_filter(fleet),
            "stages": [{"size": "100%"}],
        }
        preview = await ok(admin, "POST", "/campaigns?dryRun=true", json=spec)
        assert preview["audience"] == 0 and preview["skipped"] == {"hardware_mismatch": 3}
        assert "HW1.0" in preview["skippedSamples"]["hardware_mismatch"][0]
        cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
        await ok(admin, "POST", f"/campaigns/{cid}/start")
        done = await wait_campaign(admin, cid, lambda b: b["status"] == "completed")
        assert done["audience"] == 0 and done["totals"] == {"skipped": 3}
    finally:
        await fleet.stop()


async def test_continuous_membership_takes_devices_that_match_later(
    fw_acs: Running, admin: Client, unique_serial
) -> None:
    prefix = unique_serial("J")
    first = await fleet_of(fw_acs, prefix, 2, periodic_interval=1)
    later: Fleet | None = None
    try:
        await first.wait_for(lambda: all(c.sessions_ok for c in first.devices.values()))
        image = await catalog_image(admin, unique_serial, "2.0.0")
        spec = {
            "name": unique_serial("cont-"),
            "image": image["id"],
            "filter": f'DeviceID.SerialNumber LIKE "{prefix}%"',
            "membership": "continuous",
            "stages": [{"size": "100%"}],
            # always open: a window that opens every minute for a minute
            "windows": [{"cron": "* * * * *", "durationMinutes": 1, "timezone": "Europe/Paris"}],
            "startsPerMinute": 100,
        }
        cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
        await ok(admin, "POST", f"/campaigns/{cid}/start")
        await wait_campaign(admin, cid, lambda b: b["totals"] == {"succeeded": 2})
        # a device registered after the start joins, and is upgraded too
        later = await fleet_of(fw_acs, prefix, 1, periodic_interval=1, first_serial=50)
        joined = await wait_campaign(admin, cid, lambda b: b["totals"] == {"succeeded": 3})
        assert joined["status"] == "running"  # continuous campaigns keep taking devices
        assert all(c.tree.software_version == "2.0.0" for c in later.devices.values())
    finally:
        await first.stop()
        if later is not None:
            await later.stop()


async def test_connection_requests_pull_pending_devices_in(
    fw_acs: Running, admin: Client, unique_serial
) -> None:
    # devices that would not Inform again for an hour
    fleet = await fleet_of(fw_acs, unique_serial("K"), 4, periodic_interval=3600)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        image = await catalog_image(admin, unique_serial, "2.0.0")
        spec = {
            "name": unique_serial("knock-"),
            "image": image["id"],
            "filter": serial_filter(fleet),
            "stages": [{"size": "100%"}],
            "connectionRequest": True,
            "maxInFlight": 2,
        }
        cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
        await ok(admin, "POST", f"/campaigns/{cid}/start")
        done = await wait_campaign(admin, cid, lambda b: b["status"] == "completed")
        assert done["totals"] == {"succeeded": 4}
        assert all(c.tree.software_version == "2.0.0" for c in fleet.devices.values())
        assert fleet.counters[("connection_request", "accepted")] >= 4
    finally:
        await fleet.stop()


async def test_a_campaign_knocks_by_default_and_again_when_the_device_is_busy(
    fw_acs: Running, admin: Client, unique_serial, monkeypatch
) -> None:
    """No connectionRequest in the body: the campaign knocks (as the UI's box,
    ticked by default). The CPE has just taken its three connection requests
    of 10 s, so the first knock gets 503; it is knocked again soon, not after
    KNOCK_AGAIN_AFTER_S (300 s), and the campaign finishes unattended."""
    from acs.core import knocks

    monkeypatch.setattr(knocks, "BUSY_AGAIN_AFTER_S", 2.0)  # the ACS runs in this process
    fleet = await fleet_of(fw_acs, unique_serial("Y"), 1, periodic_interval=3600)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        (serial,) = fleet.devices
        image = await catalog_image(admin, unique_serial, "2.0.0")
        spec = {
            "name": unique_serial("default-knock-"),
            "image": image["id"],
            "filter": serial_filter(fleet),
            "stages": [{"size": "100%"}],
        }
        created = await ok(admin, "POST", "/campaigns", 201, json=spec)
        assert created["connectionRequest"] is True
        # a window the campaign's first tick surely falls in, however late it runs
        # on a loaded machine (the simulator's default is 10 s)
        fleet.cr_server.window_s = 30.0
        for _ in range(3):  # the CPE's whole allowance of the window
            body = await ok(admin, "POST", f"/devices/{dev_id(fleet, serial)}/connection-request")
            assert body["ok"] is True, body
        # the sessions those knocks brought are over: a campaign started while one runs
        # would be taken up by it, with no knock to refuse
        cpe = fleet.devices[serial]
        await fleet.wait_for(lambda: not cpe.in_session and not cpe.events)
        await ok(admin, "POST", f"/campaigns/{created['id']}/start")
        done = await wait_campaign(admin, created["id"], lambda b: b["status"] == "completed")
        assert done["totals"] == {"succeeded": 1}
        assert fleet.devices[serial].tree.software_version == "2.0.0"
        assert fleet.counters[("connection_request", "503")] >= 1
    finally:
        await fleet.stop()
