"""Health soak end to end: campaigns halted by each health signal of upgraded
simulated CPEs, a fleet-wide dip the control group explains, the report."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
import pytest

from acs.web.server import Running
from cpe_simulator.fleet import Fleet, FleetConfig
from cpe_simulator.profiles import Timing
from tests.e2e.conftest import cwmp_url
from tests.e2e.test_api import Client
from tests.e2e.test_campaigns import admin, catalog_image, fw_acs, ok, wait_campaign
from tests.e2e.test_metrics import scrape, value
from tests.e2e.test_simulator_fleet import dev_id

pytestmark = pytest.mark.db

__all__ = ["admin", "fw_acs"]  # fixtures used by name

# a simulated hour of the health profiles lasts a second here
TIMING = Timing(slow_s=0.3, reboot_s=0.2, retry_min_wait_s=0.2, retry_multiplier=1.5, hour_s=1.0)


async def sim(acs: Running, prefix: str, n: int, faults: str = "", interval: int = 1) -> Fleet:
    fleet = Fleet(
        FleetConfig(
            acs_url=cwmp_url(acs),
            devices=n,
            serial_prefix=prefix,
            username="cpe",
            password="cpe-pw",
            timing=TIMING,
            periodic_interval=interval,
            faults=faults,
        )
    )
    await fleet.start()
    await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
    return fleet


def like(*fleets: Fleet) -> str:
    return " OR ".join(f'DeviceID.SerialNumber LIKE "{f.config.serial_prefix}%"' for f in fleets)


async def soak_campaign(
    admin: Client,
    unique_serial: Any,
    fleets: list[Fleet],
    health: dict[str, Any],
    *,
    soak: int = 6,
    first: str = "50%",
    **extra: Any,
) -> int:
    """A two-stage campaign whose first stage soaks; the second stage is the
    control group. Returns its id, started."""
    await catalog_image(admin, unique_serial, "1.0.0")
    image = await catalog_image(admin, unique_serial, "2.0.0")
    spec = {
        "name": unique_serial("soak-"),
        "image": image["id"],
        "filter": like(*fleets),
        "stages": [
            {"size": first, "soak": soak, "failureThreshold": "1", "onSuccess": "pause"},
            *([{"size": "100%"}] if first != "100%" else []),
        ],
        "health": health,
    } | extra
    cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
    await ok(admin, "POST", f"/campaigns/{cid}/start")
    return cid


def halted(body: dict[str, Any]) -> bool:
    return body["status"] in ("paused", "aborted") and "unhealthy" in (body["statusReason"] or "")


async def test_unexpected_reboots_after_the_upgrade_pause_the_campaign(
    fw_acs: Running, admin: Client, unique_serial: Any, db_pool: asyncpg.Pool
) -> None:
    fleet = await sim(fw_acs, unique_serial("HR"), 4, faults="reboot-after-upgrade:1")
    hook = await ok(
        admin,
        "POST",
        "/webhooks",
        201,
        json={"url": "http://127.0.0.1:9/hook", "events": ["campaign.health_gate"]},
    )
    try:
        cid = await soak_campaign(
            admin, unique_serial, [fleet], {"reboots": 0, "missedInforms": None}, soak=60
        )
        body = await wait_campaign(admin, cid, halted, within_s=90)
        assert body["status"] == "paused"
        assert "reboots" in body["statusReason"]
        stage = body["health"]["stages"][0]
        assert stage["unhealthy"] >= 1 and stage["unhealthyDevices"]
        reboots = next(s for s in stage["signals"] if s["signal"] == "reboots")
        assert reboots["upgraded"]["showing"] >= 1
        assert reboots["control"]["showing"] == 0  # the devices not upgraded did not reboot
        gate = body["health"]["gates"][0]
        assert gate["action"] == "pause" and gate["devices"] == stage["unhealthyDevices"]
        # the second stage never started
        assert body["stages"][1]["states"] == {"pending": 2}
        device = stage["unhealthyDevices"][0]
        report = await ok(admin, "GET", f"/campaigns/{cid}/report")
        row = next(d for d in report["devices"] if d["device"] == device)
        assert row["health"] == "unhealthy" and row["tripped"] == ["reboots"]
        assert (row["versionBefore"], row["versionAfter"]) == ("1.0.0", "2.0.0")
        signal = next(s for s in row["signals"] if s["signal"] == "reboots")
        assert signal["tripped"] and int(signal["value"]) >= 1
        # the gate decision went out as a webhook event, and is counted in the metrics
        async with db_pool.acquire() as conn:
            payload = await conn.fetchval(
                "SELECT payload FROM webhook_outbox WHERE webhook_id = $1"
                " AND event_type = 'campaign.health_gate'",
                hook["id"],
            )
        event = payload["data"]
        assert (event["campaign"], event["action"], event["stage"]) == (cid, "pause", 1)
        assert event["devices"] == stage["unhealthyDevices"]
        assert event["comparison"]["control"]["showing"] == 0
        metrics = await scrape(fw_acs)
        assert value(metrics, "acs_campaign_health_gates", campaign=str(cid), action="pause") == 1
        unhealthy = value(
            metrics, "acs_campaign_soak_devices", campaign=str(cid), verdict="unhealthy"
        )
        assert unhealthy == stage["unhealthy"]
    finally:
        await fleet.stop()
        await admin.call("DELETE", f"/webhooks/{hook['id']}")


async def test_a_device_falling_silent_after_the_upgrade_pauses_the_campaign(
    fw_acs: Running, admin: Client, unique_serial: Any
) -> None:
    fleet = await sim(fw_acs, unique_serial("HS"), 4, faults="silent-after-upgrade", interval=2)
    try:
        cid = await soak_campaign(
            admin, unique_serial, [fleet], {"reboots": None, "missedInforms": 2}, soak=60
        )
        body = await wait_campaign(admin, cid, halted, within_s=90)
        assert "silence" in body["statusReason"]
        stage = body["health"]["stages"][0]
        silence = next(s for s in stage["signals"] if s["signal"] == "silence")
        assert silence["upgraded"]["showing"] >= 1 and silence["control"]["showing"] == 0
    finally:
        await fleet.stop()


async def test_a_kpi_going_bad_after_the_upgrade_rolls_back(
    fw_acs: Running, admin: Client, unique_serial: Any
) -> None:
    fleet = await sim(fw_acs, unique_serial("HK"), 4, faults="wan-down-after-upgrade")
    try:
        health = {
            "reboots": None,
            "missedInforms": None,
            "kpis": [{"condition": 'Device.IP.Interface.1.Status = "Up"'}],
        }
        cid = await soak_campaign(admin, unique_serial, [fleet], health, soak=60, rollback=True)
        body = await wait_campaign(admin, cid, halted, within_s=90)
        assert "kpi" in body["statusReason"]
        stage = body["health"]["stages"][0]
        kpi = next(s for s in stage["signals"] if s["signal"] == "kpi")
        assert kpi["upgraded"]["showing"] >= 1 and kpi["control"]["showing"] == 0
        # the gate sent the upgraded devices back to the version they had (how a
        # rollback itself goes is tests/e2e/test_campaigns.py's subject)
        report = await ok(admin, "GET", f"/campaigns/{cid}/report")
        unhealthy = [d for d in report["devices"] if d["health"] == "unhealthy"]
        assert unhealthy and all(d["rollback"] for d in unhealthy), unhealthy
        assert unhealthy and "Down" in next(
            s["detail"] for s in unhealthy[0]["signals"] if s["signal"] == "kpi"
        )
    finally:
        await fleet.stop()


async def test_jobs_faulting_after_the_upgrade_pause_the_campaign(
    fw_acs: Running, admin: Client, unique_serial: Any, db_pool: asyncpg.Pool
) -> None:
    fleet = await sim(fw_acs, unique_serial("HF"), 2)
    try:
        health = {"reboots": None, "missedInforms": None, "faultRate": "50%", "minJobs": 2}
        cid = await soak_campaign(admin, unique_serial, [fleet], health, soak=120)
        body = await wait_campaign(admin, cid, lambda b: b["health"]["stages"][0]["soaking"] == 1)
        device = next(
            d["device"]
            for d in (await ok(admin, "GET", f"/campaigns/{cid}/report"))["devices"]
            if d["health"] == "soaking"
        )
        # the operator's later jobs on the upgraded device fault (9005: no such parameter)
        for _ in range(2):
            await ok(
                admin,
                "POST",
                f"/devices/{device}/tasks",
                201,
                json={"name": "getParameterValues", "parameterNames": ["Device.NoSuchThing"]},
            )
        body = await wait_campaign(admin, cid, halted, within_s=60)
        assert "fault_rate" in body["statusReason"]
        assert body["health"]["stages"][0]["unhealthyDevices"] == [device]
    finally:
        await fleet.stop()


async def test_a_fleet_wide_dip_the_control_group_shares_does_not_halt(
    fw_acs: Running, admin: Client, unique_serial: Any
) -> None:
    fleet = await sim(fw_acs, unique_serial("HD"), 6)
    try:
        health = {
            "reboots": None,
            "missedInforms": None,
            "kpis": [{"condition": 'Device.IP.Interface.1.Status = "Up"'}],
            "controlGroup": 3,
        }
        cid = await soak_campaign(admin, unique_serial, [fleet], health, soak=20)
        await wait_campaign(
            admin,
            cid,
            lambda b: (
                b["health"]["stages"][0]["soaking"] == 3 and b["health"]["control"]["devices"] == 3
            ),
        )
        # the whole network dips: upgraded or not, every WAN goes down. The
        # devices not yet upgraded first, so that the gate, which decides at
        # each reading, sees the dip in the control group before the upgraded
        # devices' readings come in
        upgraded = {s for s, c in fleet.devices.items() if c.tree.software_version == "2.0.0"}
        for serial in sorted(set(fleet.devices) - upgraded):
            fleet.change_value(serial, "Device.IP.Interface.1.Status", "Down")
        await wait_campaign(admin, cid, lambda b: b["health"]["control"]["showing"] == 3)
        for serial in sorted(upgraded):
            fleet.change_value(serial, "Device.IP.Interface.1.Status", "Down")
        body = await wait_campaign(
            admin,
            cid,
            lambda b: b["status"] != "running" or b["health"]["stages"][0]["soaking"] == 0,
            within_s=60,
        )
        stage = body["health"]["stages"][0]
        assert stage["unhealthy"] == 3, stage
        kpi = next(s for s in stage["signals"] if s["signal"] == "kpi")
        assert kpi["control"]["showing"] == 3 and kpi["beyondReference"] == 0
        # paused only for the operator's approval of stage 2 (onSuccess: pause), not halted
        body = await wait_campaign(admin, cid, lambda b: b["status"] == "paused")
        assert "reached its success threshold" in body["statusReason"], body["statusReason"]
        assert body["health"]["gates"][0]["action"] == "passed"
    finally:
        await fleet.stop()


async def test_the_report_as_csv(fw_acs: Running, admin: Client, unique_serial: Any) -> None:
    fleet = await sim(fw_acs, unique_serial("HC"), 2)
    try:
        health = {"reboots": 0, "missedInforms": 5}
        cid = await soak_campaign(admin, unique_serial, [fleet], health, soak=2, first="100%")
        body = await wait_campaign(admin, cid, lambda b: b["status"] == "completed")
        assert body["health"]["totals"] == {"healthy": 2}
        async with admin.http.get(f"{admin.base}/campaigns/{cid}/report.csv") as got:
            assert got.status == 200 and got.content_type == "text/csv"
            text = await got.text()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["device"] for r in rows} == {dev_id(fleet, s) for s in fleet.devices}
        for r in rows:
            assert (r["version_before"], r["version_after"], r["health"]) == (
                "1.0.0",
                "2.0.0",
                "healthy",
            )
            assert r["state"] == "succeeded" and r["stage"] == "1" and r["soak_finished"]
    finally:
        await fleet.stop()


async def test_bad_health_definitions_are_refused_with_the_reason(
    fw_acs: Running, admin: Client, unique_serial: Any
) -> None:
    image = await catalog_image(admin, unique_serial, "2.0.0")
    base = {"name": unique_serial("bad-"), "image": image["id"], "stages": [{"size": "100%"}]}
    cases = [
        (
            {
                "stages": [{"size": "100%", "soak": 60}],
                "health": {"kpis": [{"condition": 'Device.IP.Interface.1.Status = "Up" AND'}]},
            },
            "health.kpis.0.condition",
            "position 39",
        ),
        ({"stages": [{"size": "100%", "soak": 90 * 86400}]}, "", "could never complete"),
        ({"health": {"reboots": 1}}, "", "no stage has a soak"),
        (
            {"stages": [{"size": "100%", "soak": 60}], "health": {"faultRate": "7"}},
            "health",
            "faultRate",
        ),
    ]
    for change, path, words in cases:
        got, body = await admin.call("POST", "/campaigns", json=base | change)
        assert got == 400, (change, body)
        error = body["error"]["errors"][0]
        assert error["path"] == path and words in error["message"], (change, error)
    got, body = await admin.call("GET", "/campaigns")
    assert base["name"] not in {c["name"] for c in body["items"]}  # nothing half-written


async def test_signals_of_a_device_that_left_the_audience_are_ignored_and_said_so(
    fw_acs: Running, admin: Client, unique_serial: Any
) -> None:
    fleet = await sim(fw_acs, unique_serial("HL"), 2, faults="reboot-after-upgrade:3")
    tag = unique_serial("soak-").lower()
    try:
        ids = [dev_id(fleet, s) for s in fleet.devices]
        for device in ids:
            await ok(admin, "POST", f"/devices/{device}/tags", json={"tags": [tag]})
        await catalog_image(admin, unique_serial, "1.0.0")
        image = await catalog_image(admin, unique_serial, "2.0.0")
        spec = {
            "name": unique_serial("leave-"),
            "image": image["id"],
            "filter": f'tag = "{tag}"',
            "stages": [{"size": "100%", "soak": 30, "failureThreshold": "1"}],
            "health": {"reboots": 0, "missedInforms": None},
        }
        cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
        await ok(admin, "POST", f"/campaigns/{cid}/start")
        await wait_campaign(admin, cid, lambda b: b["health"]["stages"][0]["soaking"] == 2)
        # both leave the audience before their reboot 3 simulated hours later
        for device in ids:
            await ok(admin, "DELETE", f"/devices/{device}/tags/{tag}")
        body = await wait_campaign(admin, cid, lambda b: b["status"] == "completed", within_s=60)
        assert body["health"]["totals"] == {"ignored": 2}
        assert body["health"]["stages"][0]["ignored"] == 2
        report = await ok(admin, "GET", f"/campaigns/{cid}/report")
        for row in report["devices"]:
            assert row["health"] == "ignored"
            assert "left the campaign's audience" in row["note"]
            assert "signals are ignored" in row["note"]
    finally:
        await fleet.stop()


async def test_wifi_clients_dropping_after_the_upgrade_pause_the_campaign(
    fw_acs: Running, admin: Client, unique_serial: Any
) -> None:
    fleet = await sim(fw_acs, unique_serial("HW"), 4, faults="wifi-clients-drop")
    try:
        health = {
            "reboots": None,
            "missedInforms": None,
            "kpis": [
                {"condition": "Device.WiFi.AccessPoint.1.AssociatedDeviceNumberOfEntries >= 1"}
            ],
        }
        cid = await soak_campaign(admin, unique_serial, [fleet], health, soak=60)
        body = await wait_campaign(admin, cid, halted, within_s=90)
        stage = body["health"]["stages"][0]
        kpi = next(s for s in stage["signals"] if s["signal"] == "kpi")
        # before the upgrade they had clients; the devices not upgraded still do
        assert kpi["baseline"]["showing"] == 0 and kpi["control"]["showing"] == 0
        assert kpi["upgraded"]["showing"] == stage["unhealthy"] >= 1
        report = await ok(admin, "GET", f"/campaigns/{cid}/report")
        row = next(d for d in report["devices"] if d["device"] == stage["unhealthyDevices"][0])
        detail = next(s["detail"] for s in row["signals"] if s["signal"] == "kpi")
        assert "AssociatedDeviceNumberOfEntries = '0'" in detail
    finally:
        await fleet.stop()
