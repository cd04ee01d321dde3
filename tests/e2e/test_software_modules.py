"""Software modules end to end: changeDUState jobs over real HTTP, the simulator
installing what it downloads from the ACS's file server, the inventory the API
shows, DU reports no job owns kept as device events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.cwmp.soap import CWMP_NS_1_2
from acs.store import tasks
from acs.store.ids import device_id
from acs.web.server import Running, expire_transfers
from cpe_simulator.cpe import SimulatedCpe
from cpe_simulator.fleet import Fleet
from cpe_simulator.software import SoftwareModules, make_package
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import ok
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.xsd import validate_envelope

pytestmark = pytest.mark.db

APP_UUID = "0b8f3c57-2d43-4d6c-9a41-5a2f7f0e6a11"


@pytest.fixture
async def sw_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        connection_request_username="cr",
        connection_request_password="cr-secret",
        session_timeout_s=5.0,
        bulk_tick_s=0.3,
    )


@pytest.fixture
async def clients(sw_acs: Running, db_pool: asyncpg.Pool, unique_serial) -> AsyncIterator[Any]:
    made = {
        r: Client(sw_acs, await token(db_pool, r, unique_serial))
        for r in ("admin", "operator", "viewer")
    }
    yield made
    for c in made.values():
        await c.close()


async def package(admin: Client, unique_serial, name: str, version: str) -> str:
    """A DU package on the ACS's file server; its file name."""
    file_name = f"{name}-{version}-{unique_serial()}.du"
    data = make_package(name, version, (f"{name}-main", f"{name}-helper"))
    await ok(admin, "PUT", f"/files/{file_name}", 201, data=data)
    return file_name


async def sim(acs: Running, prefix: str, n: int = 1, **kw: Any) -> Fleet:
    # ChangeDUState exists from CWMP 1.2: the simulator speaks 1.4 here
    fleet = await fleet_of(acs, prefix, n, periodic_interval=3600, cwmp_version="1.4", **kw)
    await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
    return fleet


async def run_job(
    op: Client, fleet: Fleet, serial: str, operations: list[dict[str, Any]]
) -> dict[str, Any]:
    """Queue a changeDUState, bring the device, wait for DUStateChangeComplete to
    close the job and for that session (which re-reads the inventory) to end."""
    cpe = fleet.devices[serial]
    job = await ok(
        op,
        "POST",
        f"/devices/{dev_id(fleet, serial)}/tasks",
        201,
        json={"name": "changeDUState", "operations": operations},
    )
    await fleet.trigger(serial)
    done = await wait_task(op, job["id"])
    await fleet.wait_for(lambda: not cpe.in_session and not cpe.du_reports)
    return done


async def wait_task(client: Client, job_id: int, within_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        body = await ok(client, "GET", f"/tasks/{job_id}")
        if body["status"] in ("done", "fault", "expired", "cancelled"):
            return body
        assert time.monotonic() < deadline, f"job never closed: {body}"
        await asyncio.sleep(0.1)


async def software_of(client: Client, device: str) -> dict[str, Any]:
    return await ok(client, "GET", f"/devices/{device}/software")


async def test_install_update_and_uninstall_with_the_inventory_before_and_after(
    sw_acs: Running, clients: dict[str, Any], unique_serial
) -> None:
    admin, op, viewer = clients["admin"], clients["operator"], clients["viewer"]
    v1 = await package(admin, unique_serial, "weather", "1.0")
    v2 = await package(admin, unique_serial, "weather", "1.1")
    fleet = await sim(sw_acs, unique_serial("SW"))
    try:
        serial = next(iter(fleet.devices))
        dev = dev_id(fleet, serial)
        before = await software_of(viewer, dev)
        assert before["modules"] == []
        assert [(e["name"], e["status"], e["enable"]) for e in before["executionEnvironments"]] == [
            ("apps", "Up", True)
        ]
        env = before["executionEnvironments"][0]["ref"]

        installed = await run_job(
            op,
            fleet,
            serial,
            [{"type": "Install", "fileName": v1, "uuid": APP_UUID, "executionEnvRef": env}],
        )
        assert installed["status"] == "done", installed
        (result,) = installed["result"]["results"]
        assert result["uuid"] == APP_UUID and result["fault"] is None
        assert (result["currentState"], result["version"], result["resolved"]) == (
            "Installed",
            "1.0",
            True,
        )
        assert result["deploymentUnitRef"] == "Device.SoftwareModules.DeploymentUnit.1"
        assert len(result["executionUnitRefList"]) == 2
        assert result["startTime"] and result["completeTime"]
        # the simulator really fetched the package from the ACS's file server
        assert SoftwareModules(fleet.devices[serial].tree).installed()[0]["Version"] == "1.0"

        inv = await software_of(viewer, dev)
        (module,) = inv["modules"]
        assert (module["name"], module["uuid"], module["version"], module["status"]) == (
            "weather",
            APP_UUID,
            "1.0",
            "Installed",
        )
        assert module["url"].endswith("/" + v1) and module["executionEnvRef"] + "." == env
        assert [(u["name"], u["status"]) for u in module["executionUnits"]] == [
            ("weather-main", "Active"),
            ("weather-helper", "Active"),
        ]
        assert [u["ref"] for u in module["executionUnits"]] == result["executionUnitRefList"]

        updated = await run_job(
            op, fleet, serial, [{"type": "Update", "uuid": APP_UUID, "fileName": v2}]
        )
        assert updated["status"] == "done", updated
        assert updated["result"]["results"][0]["version"] == "1.1"
        (module,) = (await software_of(viewer, dev))["modules"]
        assert module["version"] == "1.1"
        assert {u["version"] for u in module["executionUnits"]} == {"1.1"}

        removed = await run_job(op, fleet, serial, [{"type": "Uninstall", "uuid": APP_UUID}])
        assert removed["status"] == "done", removed
        assert removed["result"]["results"][0]["currentState"] == "Uninstalled"
        after = await software_of(viewer, dev)
        assert (
            after["modules"] == []
            and after["executionEnvironments"] == inv["executionEnvironments"]
        )
    finally:
        await fleet.stop()


async def test_failing_operations_end_the_job_with_each_fault(
    sw_acs: Running, clients: dict[str, Any], unique_serial
) -> None:
    admin, op = clients["admin"], clients["operator"]
    v1 = await package(admin, unique_serial, "tools", "2.0")
    fleet = await sim(sw_acs, unique_serial("SF"))
    try:
        serial = next(iter(fleet.devices))
        missing = sw_acs.settings.files_base_url + "no-such-package.du"
        job = await run_job(
            op,
            fleet,
            serial,
            [
                {"type": "Install", "fileName": v1, "uuid": APP_UUID},
                {"type": "Install", "fileName": v1, "uuid": APP_UUID},  # the same DU again
                {"type": "Install", "url": missing},
                {"type": "Uninstall", "uuid": "00000000-0000-4000-8000-000000000000"},
                {"type": "Update", "uuid": APP_UUID, "fileName": v1},  # the version it has
            ],
        )
        assert job["status"] == "fault", job
        codes = [r["fault"] and r["fault"]["code"] for r in job["result"]["results"]]
        # duplicate DU, file not there, unknown DU, version already installed
        assert codes == [None, 9026, 9016, 9028, 9032]
        assert job["fault"]["code"] == 9026
        assert job["fault"]["message"].startswith("4 of 5 failed: operation 2")
        assert "9028 Unknown Deployment Unit" in job["fault"]["message"]
        # what did succeed is installed all the same
        inv = await software_of(op, dev_id(fleet, serial))
        assert [(d["uuid"], d["version"]) for d in inv["modules"]] == [(APP_UUID, "2.0")]
    finally:
        await fleet.stop()


async def test_bad_change_du_state_jobs_are_refused_with_the_field(
    sw_acs: Running, clients: dict[str, Any], unique_serial
) -> None:
    op = clients["operator"]
    fleet = await sim(sw_acs, unique_serial("SB"))
    old = await fleet_of(sw_acs, unique_serial("S0"), 1, periodic_interval=3600)
    try:
        dev = dev_id(fleet, next(iter(fleet.devices)))
        path = f"/devices/{dev}/tasks"
        bad = [
            ({"operations": []}, "operations"),
            ({"operations": [{"type": "Reinstall", "uuid": APP_UUID}]}, "operations.0"),
            ({"operations": [{"type": "Install"}]}, "operations.0.Install"),
            (
                {"operations": [{"type": "Install", "url": "http://x/a", "fileName": "a"}]},
                "operations.0.Install",
            ),
            ({"operations": [{"type": "Uninstall", "uuid": "not-a-uuid"}]}, "operations.0"),
            ({"operations": [{"type": "Update"}]}, "operations.0.Update"),
            ({"operations": [{"type": "Uninstall"}]}, "operations.0.Uninstall.uuid"),
            (
                {"operations": [{"type": "Install", "url": "http://x/a"}], "commandKey": "k" * 33},
                "commandKey",
            ),
        ]
        for args, where in bad:
            status, body = await op.call("POST", path, json={"name": "changeDUState", **args})
            assert status == 400, (args, status, body)
            errors = body["error"]["errors"]
            assert any(e["path"].startswith(where) for e in errors), (args, body)
        status, body = await op.call(
            "POST",
            path,
            json={"name": "changeDUState", "operations": [{"type": "Install", "file": "nope.du"}]},
        )
        assert status == 404 and body["error"]["errors"][0]["path"] == "operations.0.file", body
        # a CWMP 1.0 device has no ChangeDUState: refused before it is queued
        await old.wait_for(lambda: all(c.sessions_ok for c in old.devices.values()))
        status, body = await op.call(
            "POST",
            f"/devices/{dev_id(old, next(iter(old.devices)))}/tasks",
            json={
                "name": "changeDUState",
                "operations": [{"type": "Install", "url": "http://x/a"}],
            },
        )
        assert status == 409 and "CWMP 1.2" in body["error"]["message"], body
    finally:
        await fleet.stop()
        await old.stop()


async def test_bulk_install_on_a_filtered_fleet(
    sw_acs: Running, clients: dict[str, Any], unique_serial
) -> None:
    admin, op = clients["admin"], clients["operator"]
    v1 = await package(admin, unique_serial, "vpn", "3.1")
    fleet = await sim(sw_acs, unique_serial("SK"), 5)
    try:
        serials = sorted(fleet.devices)
        chosen = serials[:3]
        tag = unique_serial("apps-")
        for serial in chosen:
            await ok(op, "POST", f"/devices/{dev_id(fleet, serial)}/tags", json={"tags": [tag]})
        spec = {
            "name": "vpn for the pilot",
            "task": {
                "name": "changeDUState",
                "operations": [{"type": "Install", "fileName": v1, "uuid": APP_UUID}],
            },
            "filter": f'tag = "{tag}"',
            "ratePerMinute": 600,
            "connectionRequest": True,
        }
        job = await ok(op, "POST", "/bulk-jobs", 201, json=spec)
        assert job["total"] == 3
        deadline = time.monotonic() + 60
        while (body := await ok(op, "GET", f"/bulk-jobs/{job['id']}"))["status"] != "completed":
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.2)
        assert body["progress"]["done"] == 3 and body["progress"]["fault"] == 0, body
        await fleet.wait_for(
            lambda: not any(c.in_session or c.du_reports for c in fleet.devices.values())
        )
        for serial in serials:
            inv = await software_of(op, dev_id(fleet, serial))
            names = [(d["name"], d["version"]) for d in inv["modules"]]
            assert names == ([("vpn", "3.1")] if serial in chosen else []), serial
            assert fleet.devices[serial].requests_seen["ChangeDUState"] == (serial in chosen)
    finally:
        await fleet.stop()


async def test_autonomous_du_state_change_is_a_device_event(
    sw_acs: Running, clients: dict[str, Any], unique_serial
) -> None:
    fleet = await fleet_of(
        sw_acs,
        unique_serial("SA"),
        1,
        periodic_interval=3600,
        cwmp_version="1.4",
        faults="autonomous-du",
    )
    try:
        cpe: SimulatedCpe = next(iter(fleet.devices.values()))
        await fleet.wait_for(lambda: cpe.local_du_installed and cpe.sessions_ok >= 2)
        await fleet.wait_for(lambda: not cpe.du_reports and not cpe.in_session)
        dev = dev_id(fleet, cpe.serial)
        events = await ok(
            clients["viewer"],
            "GET",
            f"/devices/{dev}/events",
            params={"kind": "AutonomousDUStateChangeComplete"},
        )
        (event,) = events["items"]
        (result,) = event["detail"]["results"]
        assert (result["operationPerformed"], result["currentState"], result["fault"]) == (
            "Install",
            "Installed",
            None,
        )
        # the session that brought the report read the new module into the store
        (module,) = (await software_of(clients["viewer"], dev))["modules"]
        assert (module["name"], module["uuid"]) == ("local-tools", result["uuid"])
        assert [u["name"] for u in module["executionUnits"]] == ["shell"]
    finally:
        await fleet.stop()


async def test_change_du_state_on_the_wire_its_timeout_and_an_unowned_report(
    sw_acs: Running, clients: dict[str, Any], db_pool: asyncpg.Pool, unique_serial
) -> None:
    """The ACS's ChangeDUState validates against cwmp-1-2.xsd / cwmp-1-4.xsd; a
    DUStateChangeComplete no job owns becomes a device event; a report that never
    comes ends the job by the transfer timeout, naming what was missing."""
    cpe = CpeDouble(
        cwmp_url(sw_acs), unique_serial(), cwmp_ns=CWMP_NS_1_2, digest=("cpe", "cpe-pw")
    )
    dev = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    op = clients["operator"]
    try:
        await cpe.session(["0 BOOTSTRAP"])
        job = await ok(
            op,
            "POST",
            f"/devices/{dev}/tasks",
            201,
            json={
                "name": "changeDUState",
                "commandKey": "du-1",
                "operations": [
                    {
                        "type": "Install",
                        "url": "http://127.0.0.1:9/app.du",
                        "uuid": APP_UUID,
                        "username": "fetch",
                        "password": "fetch-secret",
                        "executionEnvRef": "Device.SoftwareModules.ExecEnv.1",
                    },
                    {"type": "Update", "uuid": APP_UUID, "version": "1.0"},
                    {"type": "Uninstall", "uuid": APP_UUID, "version": "1.0"},
                ],
            },
        )
        assert job["args"]["operations"][0]["password"] != "fetch-secret"  # masked
        reply = await cpe.post(cpe.inform_message(["2 PERIODIC"]))
        assert isinstance(reply.message, m.InformResponse)
        reply = await cpe.post(None)
        validate_envelope(reply.body)
        sent = reply.message
        assert isinstance(sent, m.ChangeDUState) and sent.command_key == "du-1"
        assert [type(o).__name__ for o in sent.operations] == [
            "InstallOpStruct",
            "UpdateOpStruct",
            "UninstallOpStruct",
        ]
        assert sent.operations[0].password == "fetch-secret"  # in clear to the CPE only
        assert reply.envelope is not None
        end = await cpe.post(m.ChangeDUStateResponse(), cwmp_id=reply.envelope.cwmp_id)
        assert end.status == 204
        waiting = await ok(op, "GET", f"/tasks/{job['id']}")
        assert waiting["status"] == "running" and waiting["result"]["awaitingDUStateChangeComplete"]

        # a report with a CommandKey no job has: kept as an event, the job untouched
        stray = m.DUStateChangeComplete(
            results=[
                m.OpResultStruct(
                    uuid=APP_UUID,
                    deployment_unit_ref="",
                    version="",
                    current_state="Failed",
                    resolved=False,
                    execution_unit_ref_list="",
                    start_time=datetime.now(UTC),
                    complete_time=datetime.now(UTC),
                    fault=m.FaultStruct(9028, "Unknown Deployment Unit"),
                )
            ],
            command_key="someone-elses",
        )
        await cpe.session(["11 DU STATE CHANGE COMPLETE"], before_empty=[stray])
        events = await ok(op, "GET", f"/devices/{dev}/events")
        (event,) = events["items"]
        assert event["kind"] == "DUStateChangeComplete"
        assert event["detail"]["commandKey"] == "someone-elses"
        assert event["detail"]["results"][0]["fault"] == {
            "code": 9028,
            "string": "Unknown Deployment Unit",
        }
        assert (await ok(op, "GET", f"/tasks/{job['id']}"))["status"] == "running"

        # no DUStateChangeComplete ever: the transfer timeout ends the job
        await expire_transfers(db_pool, 0)
        timed_out = await ok(op, "GET", f"/tasks/{job['id']}")
        assert timed_out["status"] == "fault"
        assert timed_out["fault"]["message"] == "timeout: no DUStateChangeComplete within 0 s"
        async with db_pool.acquire() as conn:
            assert (await tasks.get_task(conn, job["id"])).command_key == "du-1"
    finally:
        await cpe.close()
