"""Scheduled downloads, transfer management and the CPE's own requests, end to end:
the real ACS over HTTP, the simulator as the CPE, every ACS message checked
against the official CWMP schemas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

import cpe_simulator.cpe as cpe_module
from acs.cwmp import messages as m
from acs.cwmp.soap import Envelope, parse_envelope
from acs.store import devices, tasks
from acs.store import transfers as transfer_store
from acs.web.server import Running
from cpe_simulator import scheduled
from cpe_simulator.firmware import make_image
from cpe_simulator.fleet import Fleet
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import catalog_image, like_any, ok, serial_filter, wait_campaign
from tests.e2e.test_simulator_fleet import dev_id, fleet_of, job_of
from tests.integration.test_store import inform
from tests.xsd import validate_envelope

pytestmark = pytest.mark.db

SETTINGS: dict[str, Any] = {
    "cpe_auth": "digest",
    "cpe_username": "cpe",
    "cpe_password": "cpe-pw",
    "connection_request_username": "cr",
    "connection_request_password": "cr-secret",
    "session_timeout_s": 5.0,
    "campaign_tick_s": 0.3,
}


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[datetime, Envelope]]]:
    """Every ACS message a simulated CPE receives, with when it arrived; each one is
    validated against the CWMP schemas on the way."""
    seen: list[tuple[datetime, Envelope]] = []
    invalid: list[str] = []

    def checked(data: bytes) -> Envelope:
        try:
            validate_envelope(data)
        except AssertionError as bad:
            # the simulator's session breaks on it; the test says why at its end
            invalid.append(str(bad))
            raise
        env = parse_envelope(data)
        seen.append((datetime.now(UTC), env))
        return env

    monkeypatch.setattr(cpe_module, "parse_envelope", checked)
    yield seen
    assert not invalid, invalid
    assert seen  # the CPE did hear the ACS


@pytest.fixture
async def sd_acs(start_acs: StartAcs) -> Running:
    return await start_acs(**SETTINGS, kicked_next_url="https://portal.example.net/welcome")


@pytest.fixture
async def admin(sd_acs: Running, db_pool: asyncpg.Pool, unique_serial) -> AsyncIterator[Client]:
    client = Client(sd_acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


async def firmware_file(admin: Client, unique_serial, version: str = "2.0.0") -> str:
    name = f"fw-{unique_serial()}.bin"
    await ok(admin, "PUT", f"/files/{name}", 201, data=make_image(version, 50_000))
    return name


async def one_device(acs: Running, unique_serial, prefix: str, **kw: Any) -> tuple[Fleet, str]:
    # CWMP 1.4 (the cwmp-1-2 namespace): ScheduleDownload and CancelTransfer are
    # not in the cwmp-1-0 schema
    kw.setdefault("cwmp_version", "1.4")
    fleet = await fleet_of(acs, unique_serial(prefix), **kw)
    serial = next(iter(fleet.devices))
    await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1)
    return fleet, serial


async def queue_and_trigger(
    admin: Client, fleet: Fleet, serial: str, job: dict[str, Any]
) -> dict[str, Any]:
    """Queue a job and let one session run it (a transfer job stays running after it)."""
    queued = await ok(admin, "POST", f"/devices/{dev_id(fleet, serial)}/tasks", 201, json=job)
    await fleet.trigger(serial)
    return await ok(admin, "GET", f"/tasks/{queued['id']}")


def arrivals(seen: list[tuple[datetime, Envelope]], kind: type[m.Message]) -> list[datetime]:
    return [at for at, env in seen if isinstance(env.body, kind)]


async def test_scheduled_download_starts_inside_its_window(
    sd_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial, received
) -> None:
    name = await firmware_file(admin, unique_serial)
    fleet, serial = await one_device(sd_acs, unique_serial, "SD")
    cpe = fleet.devices[serial]
    try:
        window = {"windowStart": 3, "windowEnd": 9, "windowMode": "1 At Any Time"}
        job = await queue_and_trigger(
            admin,
            fleet,
            serial,
            {"name": "scheduleDownload", "fileName": name, "timeWindows": [window]},
        )
        # accepted; the transfer comes later, inside the window
        assert job["status"] == "running", (job["result"], job.get("faultString"))
        (sent_at,) = arrivals(received, m.ScheduleDownload)
        sent = next(e.body for _, e in received if isinstance(e.body, m.ScheduleDownload))
        # the ACS's file server URL and the file's size, filled in when the job ran
        assert sent.url.endswith("/" + name) and sent.file_size > 0
        assert [(w.window_start, w.window_end) for w in sent.time_window_list] == [(3, 9)]
        await fleet.wait_for(lambda: cpe.tree.software_version == "2.0.0" and not cpe.in_session)
        await fleet.wait_for(lambda: not cpe.transfer_results and not cpe.in_session)
        done = await job_of(db_pool, job["id"])
        assert done.status == "done", (done.fault_code, done.fault_string)
        tc = done.result["transferComplete"]
        started = datetime.fromisoformat(tc["startTime"])
        # StartTime has whole seconds on the wire
        opens = sent_at.replace(microsecond=0) + timedelta(seconds=3)
        assert opens <= started <= sent_at + timedelta(seconds=9), (sent_at, started)
        assert ("M ScheduleDownload", done.command_key) not in cpe.events  # delivered
        async with db_pool.acquire() as conn:
            record = await devices.get_device(conn, dev_id(fleet, serial))
        assert record is not None and record.software_version == "2.0.0"
    finally:
        await fleet.stop()


async def test_queued_transfers_listed_then_cancelled(
    sd_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial, received
) -> None:
    name = await firmware_file(admin, unique_serial)
    fleet, serial = await one_device(sd_acs, unique_serial, "SQ")
    cpe = fleet.devices[serial]
    try:
        windows = [
            {"windowStart": 600, "windowEnd": 900, "windowMode": "2 Immediately"},
            {
                "windowStart": 1200,
                "windowEnd": 1800,
                "windowMode": "4 Confirmation Needed",
                "userMessage": "Update ready",
                "maxRetries": 2,
            },
        ]
        scheduled = await queue_and_trigger(
            admin,
            fleet,
            serial,
            {
                "name": "scheduleDownload",
                "fileName": name,
                "timeWindows": windows,
                "commandKey": "night-upgrade",
            },
        )
        assert scheduled["status"] == "running"

        listed = await queue_and_trigger(admin, fleet, serial, {"name": "getAllQueuedTransfers"})
        assert listed["status"] == "done"
        assert listed["result"]["transfers"] == [
            {
                "commandKey": "night-upgrade",
                "state": 1,
                "isDownload": True,
                "fileType": "1 Firmware Upgrade Image",
                "fileSize": 50_000 + len(make_image("2.0.0", 0)),
                "targetFileName": "",
            }
        ]
        short = await queue_and_trigger(admin, fleet, serial, {"name": "getQueuedTransfers"})
        assert short["result"] == {"transfers": [{"commandKey": "night-upgrade", "state": 1}]}

        # a transfer in progress cannot be cancelled (9021): the cancel job fails,
        # the scheduled one goes on
        cancel_it = {"name": "cancelTransfer", "commandKey": "night-upgrade"}
        cpe.transfers[0].state = 2
        refused = await queue_and_trigger(admin, fleet, serial, cancel_it)
        assert refused["status"] == "fault" and refused["fault"]["code"] == 9021, refused
        assert refused["fault"]["message"]
        assert (await job_of(db_pool, scheduled["id"])).status == "running"
        cpe.transfers[0].state = 1

        cancel = await queue_and_trigger(admin, fleet, serial, cancel_it)
        assert cancel["status"] == "done", cancel
        assert cancel["result"]["job"] == scheduled["id"]
        assert cpe.transfers == []
        gone = await job_of(db_pool, scheduled["id"])
        assert gone.status == "cancelled"
        assert gone.fault_string is not None and "CancelTransfer" in gone.fault_string
        assert gone.result is not None and gone.result["cancelledBy"] == cancel["id"]

        unknown = await queue_and_trigger(
            admin, fleet, serial, {"name": "cancelTransfer", "commandKey": "nope"}
        )
        assert unknown["status"] == "fault" and unknown["fault"]["code"] == 9003
        sent = [e.body for _, e in received]
        assert any(isinstance(b, m.CancelTransfer) for b in sent)
        assert any(isinstance(b, m.GetAllQueuedTransfers) for b in sent)
    finally:
        await fleet.stop()


async def test_a_window_the_cpe_cannot_use_fails_the_job_with_9020(
    sd_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial, received
) -> None:
    name = await firmware_file(admin, unique_serial)
    fleet, serial = await one_device(sd_acs, unique_serial, "SC")
    cpe = fleet.devices[serial]
    try:
        window = {"windowStart": 0, "windowEnd": 2, "windowMode": "4 Confirmation Needed"}
        job = await queue_and_trigger(
            admin,
            fleet,
            serial,
            {"name": "scheduleDownload", "fileName": name, "timeWindows": [window]},
        )
        await fleet.wait_for(lambda: not cpe.transfers and not cpe.transfer_results, 20)
        await fleet.wait_for(lambda: not cpe.in_session)
        failed = await job_of(db_pool, job["id"])
        assert failed.status == "fault" and failed.fault_code == 9020, failed
        assert cpe.tree.software_version == "1.0.0"
    finally:
        await fleet.stop()


async def test_schedule_download_bad_input_is_refused(admin: Client, unique_serial) -> None:
    fleet_less_device = "ACDE48-HGW-" + unique_serial("none")
    cases = [
        ([], "timeWindows"),
        ([{"windowStart": 5, "windowEnd": 5}], "greater than windowStart"),
        (
            [{"windowStart": 0, "windowEnd": 60}, {"windowStart": 30, "windowEnd": 90}],
            "must not overlap",
        ),
        (
            [{"windowStart": 100, "windowEnd": 160}, {"windowStart": 0, "windowEnd": 60}],
            "must not overlap",
        ),
        ([{"windowStart": i * 10, "windowEnd": i * 10 + 5} for i in range(3)], "timeWindows"),
        ([{"windowStart": 0, "windowEnd": 5, "windowMode": "5 Whenever"}], "windowMode"),
        ([{"windowStart": -1, "windowEnd": 5}], "windowStart"),
    ]
    for windows, says in cases:
        status, body = await admin.call(
            "POST",
            f"/devices/{fleet_less_device}/tasks",
            json={"name": "scheduleDownload", "url": "http://x/f", "timeWindows": windows},
        )
        assert status == 400, (windows, body)
        assert says in str(body), (windows, body)
    status, body = await admin.call(
        "POST", f"/devices/{fleet_less_device}/tasks", json={"name": "cancelTransfer"}
    )
    assert status == 400 and "commandKey" in str(body)


async def test_transfer_timeout_counts_from_the_last_window_end(
    db_pool: asyncpg.Pool, unique_serial
) -> None:
    async with db_pool.acquire() as conn:
        record, _ = await devices.upsert_from_inform(conn, inform(unique_serial("ST"), params=[]))
        dev = record.id
        late = await tasks.enqueue(conn, dev, "scheduleDownload", {"url": "http://x/f"})
        plain = await tasks.enqueue(conn, dev, "download", {"url": "http://x/f"})
        for job, result in (
            (late, {"commandKey": "a", "status": 1, "windowEndS": 3600}),
            (plain, {"commandKey": "b", "status": 1}),
        ):
            await tasks.mark_running(conn, job.id, "s")
            await tasks.await_transfer(conn, job.id, str(result["commandKey"]), result)
        await conn.execute(
            "UPDATE tasks SET started_at = now() - interval '10 minutes' WHERE device_id = $1", dev
        )
        expired = {t.id for t in await tasks.expire_transfers(conn, 60.0)}
        assert plain.id in expired and late.id not in expired
        # an hour for the window, then the minute of the timeout
        await conn.execute(
            "UPDATE tasks SET started_at = now() - interval '62 minutes' WHERE id = $1", late.id
        )
        assert late.id in {t.id for t in await tasks.expire_transfers(conn, 60.0)}


# --------------------------------------------------------------------------- CPE requests


async def events_of(client: Client, device: str, kind: str) -> list[dict[str, Any]]:
    body = await ok(client, "GET", f"/devices/{device}/events", params={"kind": kind})
    return body["items"]


async def test_request_download_gets_the_image_a_campaign_owes(
    sd_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial, received
) -> None:
    fleet, serial = await one_device(sd_acs, unique_serial, "RD", faults="request-download")
    cpe = fleet.devices[serial]
    dev = dev_id(fleet, serial)
    try:
        # the boot's request found nothing: recorded, with why
        (first,) = await events_of(admin, dev, "RequestDownload")
        assert first["detail"]["outcome"] == "none"
        assert first["detail"]["fileType"] == "1 Firmware Upgrade Image"
        # no campaign offers it (the run's other tests may have campaigns that do not match)
        reason = first["detail"]["reason"]
        assert "no running campaign" in reason or "does not match the device" in reason, reason
        assert isinstance(cpe.cpe_answers[0][1], m.RequestDownloadResponse)

        image = await catalog_image(admin, unique_serial, "2.0.0")
        # the user presses "check for updates" before the campaign reaches the device
        scheduled.ask(cpe, m.RequestDownload("1 Firmware Upgrade Image"))
        campaign = await ok(
            admin,
            "POST",
            "/campaigns",
            201,
            json={
                "name": unique_serial("rd-"),
                "image": image["id"],
                "filter": serial_filter(fleet),
                "stages": [{"size": "100%"}],
                "connectionRequest": False,
            },
        )
        await ok(admin, "POST", f"/campaigns/{campaign['id']}/start")
        await fleet.trigger(serial)
        events = await events_of(admin, dev, "RequestDownload")
        assert events[0]["detail"]["outcome"] == "queued", events[0]
        job = await job_of(db_pool, events[0]["detail"]["job"])
        assert job.name == "download" and job.args["fileName"] == image["file"]
        await fleet.wait_for(lambda: cpe.tree.software_version == "2.0.0", 30)
        # the boot on the new image asks again: up to date now
        await fleet.wait_for(lambda: not cpe.cpe_requests and not cpe.in_session)
        latest = (await events_of(admin, dev, "RequestDownload"))[0]["detail"]
        assert latest["outcome"] in ("none", "queued")
        other = m.RequestDownload("3 Vendor Configuration File", [m.ArgStruct("Version", "7")])
        scheduled.ask(cpe, other)
        await fleet.trigger(serial)
        config = (await events_of(admin, dev, "RequestDownload"))[0]["detail"]
        assert config["outcome"] == "recorded" and config["fileTypeArg"] == {"Version": "7"}
    finally:
        await fleet.stop()


async def test_kicked_with_and_without_a_next_url(
    sd_acs: Running,
    start_acs: StartAcs,
    admin: Client,
    db_pool: asyncpg.Pool,
    unique_serial,
    received,
) -> None:
    fleet, serial = await one_device(sd_acs, unique_serial, "KA", faults="kicked")
    plain_acs = await start_acs(**SETTINGS)
    other, other_serial = await one_device(plain_acs, unique_serial, "KB", faults="kicked")
    try:
        (kicked, answer) = fleet.devices[serial].cpe_answers[0]
        assert isinstance(kicked, m.Kicked)
        assert isinstance(answer, m.KickedResponse)
        assert answer.next_url == "https://portal.example.net/welcome"
        (_, refused) = other.devices[other_serial].cpe_answers[0]
        assert isinstance(refused, m.Fault) and refused.fault_code == 8000
        assert other.devices[other_serial].sessions_failed == 0
        (event,) = await events_of(admin, dev_id(other, other_serial), "Kicked")
        assert event["detail"]["answer"] == "fault 8000"
        assert event["detail"]["command"] == "reset"
    finally:
        await fleet.stop()
        await other.stop()


async def test_autonomous_transfer_is_recorded_and_the_version_read_back(
    sd_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial, received
) -> None:
    fleet, serial = await one_device(sd_acs, unique_serial, "AT", faults="autonomous-transfer")
    cpe = fleet.devices[serial]
    dev = dev_id(fleet, serial)
    try:
        await fleet.wait_for(lambda: cpe.cpe_answers and not cpe.in_session)
        assert isinstance(cpe.cpe_answers[0][1], m.AutonomousTransferCompleteResponse)
        (event,) = await events_of(admin, dev, "AutonomousTransferComplete")
        detail = event["detail"]
        assert detail["fileType"] == "1 Firmware Upgrade Image" and detail["faultCode"] == 0
        job = await job_of(db_pool, detail["reconcileJob"])
        assert job.status == "done"
        assert job.result == {
            "values": [["Device.DeviceInfo.SoftwareVersion", "1.0.0-local", "xsd:string"]]
        }
        async with db_pool.acquire() as conn:
            record = await devices.get_device(conn, dev)
        assert record is not None and record.software_version == "1.0.0-local"
        assert any(isinstance(e.body, m.GetParameterValues) for _, e in received)
    finally:
        await fleet.stop()


# --------------------------------------------------------------------------- campaigns


async def test_auto_campaign_schedules_downloads_where_the_cpe_lists_the_rpc(
    sd_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial, received
) -> None:
    modern = await fleet_of(sd_acs, unique_serial("CA"), 1, cwmp_version="1.4")
    old = await fleet_of(sd_acs, unique_serial("CB"), 1)  # cwmp-1-0: never asked
    knows, unknown = next(iter(modern.devices)), next(iter(old.devices))
    try:
        for fleet in (modern, old):
            await fleet.wait_for(lambda f=fleet: all(c.sessions_ok for c in f.devices.values()))
        # discovery of a cwmp-1-2 CPE asks its GetRPCMethods, and the ACS keeps the answer
        async with db_pool.acquire() as conn:
            listed = await transfer_store.rpc_methods(conn, dev_id(modern, knows))
            never = await transfer_store.rpc_methods(conn, dev_id(old, unknown))
        assert listed is not None and "ScheduleDownload" in listed
        assert never is None
        image = await catalog_image(admin, unique_serial, "2.0.0")
        body = {
            "name": unique_serial("auto-"),
            "image": image["id"],
            "filter": like_any(modern, old),
            "stages": [{"size": "100%"}],
            # two day-long windows twelve hours apart: whatever the time of day,
            # one of them is open with at least twelve hours left
            "windows": [
                {"cron": "0 0 * * *", "durationMinutes": 1440},
                {"cron": "0 12 * * *", "durationMinutes": 1440},
            ],
            "verifyTimeoutS": 1200,
            "transfer": "auto",
        }
        campaign = await ok(admin, "POST", "/campaigns", 201, json=body)
        assert campaign["transfer"] == "auto"
        await ok(admin, "POST", f"/campaigns/{campaign['id']}/start")
        done = await wait_campaign(admin, campaign["id"], lambda b: b["status"] == "completed")
        assert done["totals"] == {"succeeded": 2}
        jobs = {}
        for fleet, serial in ((modern, knows), (old, unknown)):
            assert fleet.devices[serial].tree.software_version == "2.0.0"
            listed_jobs = await ok(admin, "GET", f"/devices/{dev_id(fleet, serial)}/tasks")
            jobs[serial] = next(
                t for t in listed_jobs["items"] if t["name"] in ("download", "scheduleDownload")
            )
        scheduled_job, plain = jobs[knows], jobs[unknown]
        assert scheduled_job["name"] == "scheduleDownload" and scheduled_job["status"] == "done"
        # the rest of the maintenance window, capped at half the verify timeout
        assert scheduled_job["args"]["timeWindows"] == [
            {"windowStart": 0, "windowEnd": 600, "windowMode": "1 At Any Time"}
        ]
        assert plain["name"] == "download" and plain["status"] == "done"
        assert any(isinstance(e.body, m.ScheduleDownload) for _, e in received)
    finally:
        await modern.stop()
        await old.stop()


async def test_a_cwmp_1_0_cpe_is_not_sent_rpcs_its_schema_lacks(
    sd_acs: Running, admin: Client, unique_serial, received
) -> None:
    fleet, serial = await one_device(sd_acs, unique_serial, "SO", cwmp_version="1.0")
    try:
        window = {"windowStart": 0, "windowEnd": 60}
        job = await queue_and_trigger(
            admin,
            fleet,
            serial,
            {"name": "scheduleDownload", "url": "http://127.0.0.1:9/f", "timeWindows": [window]},
        )
        assert job["status"] == "fault" and job["fault"]["code"] == 9000
        assert "cwmp-1-0" in job["fault"]["message"]
        # GetQueuedTransfers is in the cwmp-1-0 schema
        listed = await queue_and_trigger(admin, fleet, serial, {"name": "getQueuedTransfers"})
        assert listed["status"] == "done" and listed["result"] == {"transfers": []}
        assert not any(isinstance(e.body, m.ScheduleDownload) for _, e in received)
    finally:
        await fleet.stop()
