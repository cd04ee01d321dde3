"""Bulk jobs end to end: the API, the real ACS and its tick, simulated CPEs."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import ok
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db

TOLERANCE_S = 0.25  # clock reads of one database; only the tick's own latency varies


@pytest.fixture
async def bulk_acs(start_acs: StartAcs) -> Running:
    # connection request credentials are the simulator's defaults
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        session_timeout_s=5.0,
        bulk_tick_s=0.3,
        connection_request_username="cr",
        connection_request_password="cr-secret",
    )


@pytest.fixture
async def clients(bulk_acs: Running, db_pool: asyncpg.Pool, unique_serial) -> Any:
    made = {
        r: Client(bulk_acs, await token(db_pool, r, unique_serial)) for r in ("operator", "viewer")
    }
    yield made
    for c in made.values():
        await c.close()


async def wait_job(
    client: Client, bulk_id: int, predicate: Any, within_s: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        body = await ok(client, "GET", f"/bulk-jobs/{bulk_id}")
        if predicate(body):
            return body
        if time.monotonic() > deadline:
            # the devices say which one is stuck and why (a failed knock, a fault)
            stuck = [
                d
                for d in await job_devices(client, bulk_id)
                if d["status"] not in ("done", "fault", "expired", "cancelled")
            ]
            raise AssertionError(f"bulk job never reached the condition: {body}; open: {stuck}")
        await asyncio.sleep(0.2)


async def job_devices(client: Client, bulk_id: int, status: str | None = None) -> list[dict]:
    """Every device of the job, four per page so paging is exercised too."""
    items: list[dict] = []
    after: str | None = None
    while True:
        params = (
            {"limit": "4"}
            | ({"status": status} if status else {})
            | ({"after": after} if after else {})
        )
        page = await ok(client, "GET", f"/bulk-jobs/{bulk_id}/devices", params=params)
        items += page["items"]
        after = page["next"]
        if after is None:
            return items


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_bulk_reboot_of_a_tagged_set_at_60_per_minute_with_connection_requests(
    bulk_acs: Running, clients: dict[str, Client], unique_serial
) -> None:
    op = clients["operator"]
    # devices that would not come for an hour on their own: only a knock brings them
    fleet = await fleet_of(bulk_acs, unique_serial("B"), 14, periodic_interval=3600)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        serials = sorted(fleet.devices)
        chosen, others = serials[:10], serials[10:]
        tag = unique_serial("reboot-")
        for serial in chosen:
            await ok(op, "POST", f"/devices/{dev_id(fleet, serial)}/tags", json={"tags": [tag]})
        chosen_ids = sorted(dev_id(fleet, s) for s in chosen)
        spec = {
            "name": "reboot the lab",
            "task": {"name": "reboot"},
            "filter": f'tag = "{tag}"',
            "ratePerMinute": 60,
            "connectionRequest": True,
        }
        preview = await ok(op, "POST", "/bulk-jobs", params={"dryRun": "true"}, json=spec)
        assert preview == {"dryRun": True, "devices": 10, "sample": chosen_ids}
        assert all(
            j["filter"] != spec["filter"] for j in (await ok(op, "GET", "/bulk-jobs"))["items"]
        )

        job = await ok(op, "POST", "/bulk-jobs", 201, json=spec)
        assert (job["status"], job["total"], job["task"]) == ("running", 10, {"name": "reboot"})
        done = await wait_job(op, job["id"], lambda b: b["status"] == "completed")
        assert done["progress"] == {
            "notQueued": 0,
            "skipped": 0,
            "pending": 0,
            "running": 0,
            "done": 10,
            "fault": 0,
            "expired": 0,
            "cancelled": 0,
        }
        assert done["queued"] == 10 and done["reason"] == "every task ended: 10 done"

        rows = await job_devices(op, job["id"])
        assert [r["device"] for r in rows] == chosen_ids
        assert all(r["status"] == "done" and r["task"] for r in rows)
        assert all(r["connectionRequest"]["ok"] for r in rows)
        # spread by the rate: the i-th device no sooner than i s after the start
        # (measured from the start, which is what the rate promises: a first tick
        # that runs late shortens the span from the first device to the last)
        queued = sorted(at(r["queued"]) for r in rows)
        started = at(done["started"])
        for i, q in enumerate(queued):
            assert q - started >= i - TOLERANCE_S, (i, q - started)
        # the order is the device ids'
        assert [r["device"] for r in sorted(rows, key=lambda r: at(r["queued"]))] == chosen_ids

        # each chosen CPE rebooted: it came back with 1 BOOT and M Reboot. A job is
        # done once the CPE accepts the Reboot, so the last boot may still be on its way
        await fleet.wait_for(lambda: all(fleet.devices[s].sessions_ok >= 3 for s in chosen))
        for serial in chosen:
            dev = await ok(op, "GET", f"/devices/{dev_id(fleet, serial)}")
            assert {"1 BOOT", "M Reboot"} <= set(dev["lastEvents"]), dev["lastEvents"]
        # the others were left alone: no job, no knock, no session since their boot
        for serial in others:
            assert (await ok(op, "GET", f"/devices/{dev_id(fleet, serial)}/tasks"))["items"] == []
            assert fleet.devices[serial].sessions_ok == 1
        assert fleet.counters[("connection_request", "accepted")] == 10
    finally:
        await fleet.stop()


async def test_pause_resume_and_cancel_mid_way(
    bulk_acs: Running, clients: dict[str, Client], unique_serial
) -> None:
    op = clients["operator"]
    fleet = await fleet_of(bulk_acs, unique_serial("P"), 8, periodic_interval=3600)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        spec = {
            "name": "set a value, slowly",
            "task": {
                "name": "setParameterValues",
                "parameterValues": [["Device.DeviceInfo.ProvisioningCode", "LAB"]],
            },
            "filter": f'DeviceID.SerialNumber LIKE "{fleet.config.serial_prefix}%"',
            "ratePerMinute": 30,  # one device every 2 s; without knocks they stay pending
        }
        job = await ok(op, "POST", "/bulk-jobs", 201, json=spec)
        bid = job["id"]
        await wait_job(op, bid, lambda b: b["queued"] >= 2)
        paused = await ok(op, "POST", f"/bulk-jobs/{bid}/pause")
        assert paused["status"] == "paused"
        await asyncio.sleep(2.5)  # longer than the rate's interval
        still = await ok(op, "GET", f"/bulk-jobs/{bid}")
        assert still["queued"] == paused["queued"]
        await ok(op, "POST", f"/bulk-jobs/{bid}/pause", 409)
        await ok(op, "POST", f"/bulk-jobs/{bid}/resume")
        await wait_job(op, bid, lambda b: b["queued"] > paused["queued"])

        cancelled = await ok(op, "POST", f"/bulk-jobs/{bid}/cancel")
        n = cancelled["queued"]
        assert cancelled["status"] == "cancelled" and 3 <= n < 8
        assert cancelled["progress"]["cancelled"] == n
        assert cancelled["progress"]["notQueued"] == 8 - n
        assert cancelled["progress"]["pending"] == 0
        who = cancelled["createdBy"]  # the same operator token created and cancelled it
        assert cancelled["reason"] == f"cancelled by {who}; {n} pending task(s) withdrawn"
        await asyncio.sleep(2.5)
        after = await ok(op, "GET", f"/bulk-jobs/{bid}")
        assert after["queued"] == n and after["progress"] == cancelled["progress"]
        assert len(await job_devices(op, bid, "cancelled")) == n
        assert len(await job_devices(op, bid, "notQueued")) == 8 - n
        body = await ok(op, "POST", f"/bulk-jobs/{bid}/cancel", 409)
        assert "cancelled" in body["error"]["message"]
        # the devices never ran anything
        assert all(c.sessions_ok == 1 for c in fleet.devices.values())
    finally:
        await fleet.stop()


async def test_bad_input_is_refused_with_the_path_of_the_bad_field(
    clients: dict[str, Client],
) -> None:
    op, viewer = clients["operator"], clients["viewer"]
    good = {"name": "n", "task": {"name": "reboot"}, "filter": 'tag = "x"'}

    async def refused(body: Any, status: int = 400, **kw: Any) -> dict[str, Any]:
        got = await ok(op, "POST", "/bulk-jobs", status, json=body, **kw)
        return got["error"]

    err = await refused(good | {"task": {"name": "explode"}})
    assert [e["path"] for e in err["errors"]] == ["task.name"]
    err = await refused(good | {"task": {"name": "scheduleInform", "delaySeconds": 0}})
    assert err["code"] == "invalid_task"
    assert [e["path"] for e in err["errors"]] == ["task.delaySeconds"]
    bad_values = {"name": "setParameterValues", "parameterValues": [["Device.X", "1", "xsd:nope"]]}
    err = await refused(good | {"task": bad_values})
    assert [e["path"] for e in err["errors"]] == ["task.parameterValues"]
    err = await refused(good | {"task": {"name": "download"}})  # neither url nor fileName
    assert [e["path"] for e in err["errors"]] == ["task"]
    err = await refused(good | {"filter": 'tag = "x" AND'})
    assert err["code"] == "invalid_filter" and err["errors"][0]["path"] == "filter"
    assert "position" in err["errors"][0]["message"]
    err = await refused(good | {"filter": ""})
    assert [e["path"] for e in err["errors"]] == ["filter"]
    err = await refused(good | {"ratePerMinute": 0})
    assert [e["path"] for e in err["errors"]] == ["ratePerMinute"]
    err = await refused(good | {"surprise": 1})
    assert [e["path"] for e in err["errors"]] == ["surprise"]
    err = await refused(good, params={"dryRun": "perhaps"})
    assert [e["path"] for e in err["errors"]] == ["dryRun"]
    status, body = await op.call("POST", "/bulk-jobs", data=b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"

    err = (await ok(viewer, "POST", "/bulk-jobs", 403, json=good))["error"]
    assert err["code"] == "forbidden"
    assert isinstance((await ok(viewer, "GET", "/bulk-jobs"))["items"], list)

    for method, path in (
        ("GET", "/bulk-jobs/999999999"),
        ("GET", "/bulk-jobs/999999999/devices"),
        ("POST", "/bulk-jobs/999999999/cancel"),
        ("POST", "/bulk-jobs/999999999/resume"),
    ):
        assert (await ok(op, method, path, 404))["error"]["code"] == "not_found"
    assert (await ok(op, "GET", "/bulk-jobs/abc", 400))["error"]["code"] == "invalid_id"
    job = await ok(op, "POST", "/bulk-jobs", 201, json=good | {"filter": 'tag = "nobody-has-it"'})
    assert (job["status"], job["total"]) == ("completed", 0)
    err = await ok(op, "GET", f"/bulk-jobs/{job['id']}/devices", 400, params={"status": "x"})
    assert [e["path"] for e in err["error"]["errors"]] == ["status"]
    await ok(op, "POST", f"/bulk-jobs/{job['id']}/cancel", 409)


async def test_fota_only_terminals_are_skipped_with_the_reason(
    bulk_acs: Running, clients: dict[str, Client], unique_serial
) -> None:
    """A reboot for a set holding a terminal that only checks in over FOTA:
    the terminal can never run it, so it is skipped, and the job still completes."""
    from tests.e2e.test_fota import Terminal

    op = clients["operator"]
    fleet = await fleet_of(bulk_acs, unique_serial("K"), 2, periodic_interval=3600)
    modem = Terminal(bulk_acs, unique_serial("IMEI"), unique_serial("MF"), "1.0.0")
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        await modem.check()
        tag = unique_serial("mixed-")
        gateways = sorted(dev_id(fleet, s) for s in fleet.devices)
        for dev in [*gateways, modem.device_id]:
            await ok(op, "POST", f"/devices/{dev}/tags", json={"tags": [tag]})
        spec = {
            "name": "reboot a mixed set",
            "task": {"name": "reboot"},
            "filter": f'tag = "{tag}"',
            "ratePerMinute": 600,
            "connectionRequest": True,
        }
        job = await ok(op, "POST", "/bulk-jobs", 201, json=spec)
        assert job["total"] == 3
        done = await wait_job(op, job["id"], lambda b: b["status"] == "completed")
        assert (done["progress"]["skipped"], done["progress"]["done"]) == (1, 2), done
        assert done["queued"] == 2 and done["reason"] == "every task ended: 2 done, 1 skipped"
        (skipped,) = await job_devices(op, job["id"], "skipped")
        assert skipped["device"] == modem.device_id
        assert skipped["task"] is None and skipped["queued"] is None
        assert skipped["connectionRequest"] is None  # nothing was sent to it
        assert "never opened a CWMP session" in skipped["reason"]
        assert (await ok(op, "GET", f"/devices/{modem.device_id}/tasks"))["items"] == []
        assert sorted(d["device"] for d in await job_devices(op, job["id"], "done")) == gateways
    finally:
        await modem.close()
        await fleet.stop()


async def test_a_bulk_download_of_a_missing_file_is_refused_at_creation(
    clients: dict[str, Client], unique_serial
) -> None:
    op = clients["operator"]
    missing = f"{unique_serial('nofile-')}.bin"
    spec = {
        "name": "flash a file nobody uploaded",
        "task": {"name": "download", "fileName": missing},
        "filter": "DeviceID.ID IS NOT NULL",
    }
    for query in ({}, {"dryRun": "true"}):
        body = await ok(op, "POST", "/bulk-jobs", 404, params=query, json=spec)
        assert body["error"]["code"] == "unknown_file"
        assert repr(missing) in body["error"]["message"]
        assert [e["path"] for e in body["error"]["errors"]] == ["task.fileName"]
    listed = (await ok(op, "GET", "/bulk-jobs", params={"limit": "200"}))["items"]
    assert all(j["name"] != spec["name"] for j in listed)


async def test_a_device_busy_at_its_knock_is_knocked_again(
    bulk_acs: Running, clients: dict[str, Client], unique_serial, monkeypatch
) -> None:
    """A CPE takes three connection requests per 10 s (the simulator, as TR-069
    3.2.2 lets it); the bulk job's knock past that gets 503 and is tried again
    instead of leaving the task to the next Inform, an hour away."""
    from acs.core import knocks

    monkeypatch.setattr(knocks, "BUSY_AGAIN_AFTER_S", 2.0)  # the ACS runs in this process
    op = clients["operator"]
    fleet = await fleet_of(bulk_acs, unique_serial("R"), 1, periodic_interval=3600)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        (serial,) = fleet.devices
        dev = dev_id(fleet, serial)
        for _ in range(3):  # the CPE's whole allowance of the window
            body = await ok(op, "POST", f"/devices/{dev}/connection-request")
            assert body["ok"] is True, body
        job = await ok(
            op,
            "POST",
            "/bulk-jobs",
            201,
            json={
                "name": "reboot a busy device",
                "task": {"name": "reboot"},
                "filter": f'DeviceID.ID = "{dev}"',
                "connectionRequest": True,
            },
        )
        done = await wait_job(op, job["id"], lambda b: b["status"] == "completed", 60)
        assert done["progress"]["done"] == 1, done
        assert fleet.counters[("connection_request", "503")] >= 1
        assert fleet.counters[("connection_request", "accepted")] >= 4
        (row,) = await job_devices(op, job["id"])
        assert row["connectionRequest"]["ok"] is True, row  # the knock that got through
    finally:
        await fleet.stop()
