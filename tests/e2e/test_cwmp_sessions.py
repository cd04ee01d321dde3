"""Whole CWMP sessions over real HTTP against real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.cwmp.soap import CWMP_NS_1_0, CWMP_NS_1_2, parse_envelope
from acs.store import devices, session_logs, tasks
from acs.store.ids import device_id
from acs.web.server import Running
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.samples import INFORM_1_0, INFORM_1_4
from tests.xsd import validate_envelope

pytestmark = pytest.mark.db

VOLATILE = ("UpTime", "CurrentLocalTime")


def stable(values: dict[str, str | None]) -> dict[str, str | None]:
    """Parameter values without the clock-driven ones, which move between two reads."""
    return {k: v for k, v in values.items() if not k.endswith(VOLATILE)}


async def post(acs: Running, body: bytes, cookies: dict[str, str] | None = None):
    import aiohttp

    async with aiohttp.ClientSession(cookies=cookies) as http:
        async with http.post(cwmp_url(acs), data=body) as resp:
            return resp.status, await resp.read(), resp.cookies


async def test_cwmp_1_0_inform_gets_valid_response_and_device_is_stored(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    serial = unique_serial()
    status, body, _ = await post(acs, INFORM_1_0.format(serial=serial).encode())
    assert status == 200
    validate_envelope(body)
    env = parse_envelope(body)
    assert env is not None and isinstance(env.body, m.InformResponse)
    assert env.cwmp_id == "4711" and env.cwmp_ns == CWMP_NS_1_0
    async with db_pool.acquire() as conn:
        dev = await devices.get_device(conn, device_id("00259E", "HG8245H", serial))
        assert dev is not None
        assert dev.software_version == "V3R017C10S115"
        assert dev.hardware_version == "10C7.A"
        assert dev.provisioning_code == "ISP1"
        assert dev.connection_request_url == "http://10.0.0.7:7547/cr"
        assert dev.last_events == ["1 BOOT", "2 PERIODIC"]
        assert dev.last_boot is not None and dev.cwmp_version == "1.0"
        params = await devices.get_parameters(conn, dev.id)
    interval = params["InternetGatewayDevice.ManagementServer.PeriodicInformInterval"]
    assert interval.value == "3600" and interval.xsd_type == "xsd:unsignedInt"


async def test_cwmp_1_4_inform_negotiates_version(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    serial = unique_serial()
    status, body, _ = await post(acs, INFORM_1_4.format(serial=serial).encode())
    assert status == 200
    validate_envelope(body)
    env = parse_envelope(body)
    assert env is not None and isinstance(env.body, m.InformResponse)
    assert env.cwmp_ns == CWMP_NS_1_2 and env.use_cwmp_version == "1.4" and env.cwmp_id == "a-1"
    async with db_pool.acquire() as conn:
        dev = await devices.get_device(conn, device_id("ACDE48", "5G-CPE", serial))
        assert dev is not None and dev.cwmp_version == "1.4"
        assert dev.software_version == "2.4.1-rc2"
        params = await devices.get_parameters(conn, dev.id, "Device.ManagementServer.")
    assert params["Device.ManagementServer.PeriodicInformEnable"].xsd_type == "xsd:boolean"


async def test_bootstrap_discovers_the_whole_tree(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        requests = await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
    finally:
        await cpe.close()
    # the names once, then the whole tree's values in one partial-path read
    assert isinstance(requests[0], m.GetParameterNames) and not requests[0].next_level
    assert requests[1] == m.GetParameterValues(parameter_names=["Device."])
    dev_id = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    expected = {p.name: p.value for p in cpe.tree.get_parameter_values(["Device."])}
    async with db_pool.acquire() as conn:
        stored = await devices.get_parameters(conn, dev_id)
        dev = await devices.get_device(conn, dev_id)
    values = {k: v.value for k, v in stored.items() if not v.object}
    assert stable(values) == stable(expected)
    assert dev is not None and dev.parameter_count >= len(expected)
    ssid = stored["Device.WiFi.SSID.1.SSID"]
    assert ssid.writable is True and ssid.xsd_type == "xsd:string"


@pytest.mark.parametrize("refuse_next_level", [False, True], ids=["full-gpn", "any-gpn"])
async def test_discovery_falls_back_to_object_by_object(
    acs: Running, db_pool: asyncpg.Pool, unique_serial, refuse_next_level: bool
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial(), model="tr098-gateway")
    root = "InternetGatewayDevice."

    def picky(request: m.Message) -> m.Message:
        # like CPEs that cannot list their whole tree at once (or refuse the root at all)
        if (
            isinstance(request, m.GetParameterNames)
            and request.parameter_path in ("", root)
            and (refuse_next_level or not request.next_level)
        ):
            return m.Fault(9005, "Invalid parameter name")
        return cpe.answer(request)

    try:
        requests = await cpe.session(["0 BOOTSTRAP"], answer=picky)
    finally:
        await cpe.close()
    gpn_paths = [r.parameter_path for r in requests if isinstance(r, m.GetParameterNames)]
    assert f"{root}DeviceInfo." in gpn_paths
    expected = {p.name: p.value for p in cpe.tree.get_parameter_values([root])}
    # even the parameters directly under the root, which only the refused root
    # could list: the partial-path read of the root took every value at once
    dev_id = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    async with db_pool.acquire() as conn:
        stored = await devices.get_parameters(conn, dev_id)
    assert stable({k: v.value for k, v in stored.items() if not v.object}) == stable(expected)


async def test_queued_jobs_run_in_order_and_results_are_kept(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev_id = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            get = await tasks.enqueue(
                conn,
                dev_id,
                "getParameterValues",
                {"parameterNames": ["Device.DeviceInfo.SoftwareVersion"]},
            )
            put = await tasks.enqueue(
                conn,
                dev_id,
                "setParameterValues",
                {
                    "parameterValues": [
                        ["Device.ManagementServer.PeriodicInformInterval", 600],
                        ["Device.WiFi.SSID.1.SSID", "lab-net", "xsd:string"],
                    ]
                },
            )
            add = await tasks.enqueue(
                conn,
                dev_id,
                "addObject",
                {
                    "objectName": "Device.NAT.PortMapping.",
                    "parameterValues": [["ExternalPort", 8080], ["Description", "web"]],
                },
            )
            bad = await tasks.enqueue(
                conn,
                dev_id,
                "setParameterValues",
                {"parameterValues": [["Device.DeviceInfo.SoftwareVersion", "9.9"]]},
            )
            boot = await tasks.enqueue(conn, dev_id, "reboot", {})
        requests = await cpe.session(["2 PERIODIC"])
        async with db_pool.acquire() as conn:
            done = {t.id: t for t in await tasks.list_tasks(conn, dev_id)}
            stored = await devices.get_parameters(conn, dev_id)
    finally:
        await cpe.close()
    names = [r.rpc for r in requests]
    assert names[0] == "GetParameterValues" and names[-1] == "Reboot"
    assert done[get.id].status == "done"
    assert done[get.id].result == {
        "values": [["Device.DeviceInfo.SoftwareVersion", "1.0.0", "xsd:string"]]
    }
    assert done[put.id].status == "done" and done[put.id].result == {"status": 0}
    assert cpe.tree.periodic_inform_interval == 600
    assert stored["Device.ManagementServer.PeriodicInformInterval"].value == "600"
    assert stored["Device.ManagementServer.PeriodicInformInterval"].xsd_type == "xsd:unsignedInt"
    assert stored["Device.WiFi.SSID.1.SSID"].value == "lab-net"
    assert done[add.id].status == "done", (
        done[add.id].fault_code,
        done[add.id].fault_string,
        done[add.id].result,
    )
    instance = done[add.id].result["instanceNumber"]
    assert done[add.id].status == "done"
    assert stored[f"Device.NAT.PortMapping.{instance}.ExternalPort"].value == "8080"
    assert stored[f"Device.NAT.PortMapping.{instance}.Description"].value == "web"
    assert done[bad.id].status == "fault" and done[bad.id].fault_code == 9003
    spv_faults = done[bad.id].result["setParameterValuesFaults"]
    assert spv_faults[0]["parameterName"] == "Device.DeviceInfo.SoftwareVersion"
    assert spv_faults[0]["faultCode"] == 9008
    assert stored["Device.DeviceInfo.SoftwareVersion"].value == "1.0.0"
    assert done[boot.id].status == "done"
    assert done[boot.id].result == {"commandKey": f"task-{boot.id}"}


async def test_delete_object_and_refresh_update_the_tree(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev_id = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            add = await tasks.enqueue(
                conn, dev_id, "addObject", {"objectName": "Device.NAT.PortMapping."}
            )
        await cpe.session(["2 PERIODIC"])
        async with db_pool.acquire() as conn:
            instance = (await tasks.get_task(conn, add.id)).result["instanceNumber"]
            mapping = f"Device.NAT.PortMapping.{instance}."
            assert f"{mapping}ExternalPort" in await devices.get_parameters(conn, dev_id, mapping)
            delete = await tasks.enqueue(conn, dev_id, "deleteObject", {"objectName": mapping})
            refused = await tasks.enqueue(
                conn, dev_id, "deleteObject", {"objectName": "Device.Hosts.Host.2."}
            )
        await cpe.session(["2 PERIODIC"])
        # the device changes behind the ACS's back; refreshObject catches up
        cpe.tree.set_value_internal("Device.WiFi.SSID.2.SSID", "changed-locally")
        async with db_pool.acquire() as conn:
            await tasks.enqueue(conn, dev_id, "refreshObject", {"objectName": "Device.WiFi."})
        await cpe.session(["2 PERIODIC"])
        async with db_pool.acquire() as conn:
            stored = await devices.get_parameters(conn, dev_id)
    finally:
        await cpe.close()
    assert not any(k.startswith(mapping) for k in stored)
    # a read-only table refuses DeleteObject: the job faults, the tree keeps the host
    async with db_pool.acquire() as conn:
        assert (await tasks.get_task(conn, delete.id)).status == "done"
        assert (await tasks.get_task(conn, refused.id)).fault_code == 9003
    assert "Device.Hosts.Host.2.HostName" in stored
    assert stored["Device.WiFi.SSID.2.SSID"].value == "changed-locally"


async def test_transfer_complete_closes_the_download_job(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev_id = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)

    def accept_download(request: m.Message) -> m.Message:
        if isinstance(request, m.Download):
            return m.DownloadResponse(status=1)
        return cpe.answer(request)

    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(
                conn, dev_id, "download", {"url": "http://127.0.0.1:7567/fw.bin", "fileSize": 1234}
            )
        requests = await cpe.session(["2 PERIODIC"], answer=accept_download)
        download = requests[0]
        assert isinstance(download, m.Download) and download.command_key == f"task-{job.id}"
        tc = m.TransferComplete(download.command_key, m.FaultStruct(), None, None)
        await cpe.session(["7 TRANSFER COMPLETE", "M Download", "1 BOOT"], before_empty=[tc])
        async with db_pool.acquire() as conn:
            finished = await tasks.get_task(conn, job.id)
    finally:
        await cpe.close()
    assert finished is not None and finished.status == "done"
    assert finished.result["status"] == 1
    assert finished.result["transferComplete"]["faultCode"] == 0


async def test_second_concurrent_session_is_refused_with_8005(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    """Concurrent: the ACS is in the middle of a request of the first session. (An
    Inform while the first one waits on its CPE proves that CPE restarted and ends
    it instead: tests/e2e/test_session_restarts.py.)"""
    serial = unique_serial()
    first = CpeDouble(cwmp_url(acs), serial)
    twin = CpeDouble(cwmp_url(acs), serial)  # same device id, its own connection and cookies
    dev_id = device_id(first.identity.oui, first.identity.product_class, serial)
    try:
        await first.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(
                conn, dev_id, "getParameterValues", {"parameterNames": ["Device.DeviceInfo.UpTime"]}
            )
        reply = await first.post(first.inform_message(["2 PERIODIC"]))
        assert isinstance(reply.message, m.InformResponse)
        request = (await first.post(None)).message
        assert isinstance(request, m.GetParameterValues)
        [old] = [s.session_id for s in acs.cwmp.by_id.values() if s.device_id == dev_id]
        # the job's row held: recording the first CPE's answer, the ACS waits mid-request
        async with db_pool.acquire() as lock, lock.transaction():
            await lock.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", job.id)
            answering = asyncio.ensure_future(first.post(first.answer(request)))
            for _ in range(100):
                # not on ``lock``: in a transaction, pg_stat_activity is one snapshot
                waiting = await db_pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE tasks%'"
                )
                if waiting and acs.cwmp.by_id[old].busy:
                    break
                await asyncio.sleep(0.05)
            else:
                answering.cancel()
                raise AssertionError("the ACS never got to the job's row")
            refused = await twin.post(twin.inform_message(["2 PERIODIC"]))
            assert refused.status == 200
            assert isinstance(refused.message, m.Fault) and refused.message.fault_code == 8005
            validate_envelope(refused.body)
            assert old in acs.cwmp.by_id
            # the lock is let go here (the transaction, having changed nothing, commits)
        # the first session is untouched and finishes its job
        end = await answering
        assert end.status == 204
        async with db_pool.acquire() as conn:
            finished = await tasks.get_task(conn, job.id)
            logs = await session_logs.list_sessions(conn, dev_id)
        assert finished.status == "done" and finished.attempts == 1 and finished.restarts == 0
        assert [(s.outcome, s.reason) for s in logs if s.session_key == old] == [
            ("completed", None)
        ]
        # and once it ended the twin may come in
        assert await twin.session(["2 PERIODIC"]) == []
    finally:
        await first.close()
        await twin.close()


async def test_new_inform_starts_a_new_session_and_requeues_the_job_in_flight(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev_id = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(
                conn, dev_id, "getParameterValues", {"parameterNames": ["Device.DeviceInfo.UpTime"]}
            )
        await cpe.post(cpe.inform_message(["2 PERIODIC"]))
        assert isinstance((await cpe.post(None)).message, m.GetParameterValues)
        async with db_pool.acquire() as conn:
            assert (await tasks.get_task(conn, job.id)).status == "running"
        # the CPE restarts (same cookie jar) without answering: a fresh session
        requests = await cpe.session(["1 BOOT"])
        assert [r.rpc for r in requests] == ["GetParameterValues"]
        async with db_pool.acquire() as conn:
            finished = await tasks.get_task(conn, job.id)
        assert finished.status == "done" and finished.attempts == 2
    finally:
        await cpe.close()


async def test_cpe_that_vanishes_is_timed_out_and_loses_no_job(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(session_timeout_s=0.6)
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev_id = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(conn, dev_id, "reboot", {})
        await cpe.post(cpe.inform_message(["2 PERIODIC"]))
        assert isinstance((await cpe.post(None)).message, m.Reboot)
        await cpe.http.close()  # drops the connection mid-session
        for _ in range(50):
            await asyncio.sleep(0.1)
            if not acs.cwmp.by_id:
                break
        assert not acs.cwmp.by_id, "the idle session was not reaped"
        async with db_pool.acquire() as conn:
            assert (await tasks.get_task(conn, job.id)).status == "pending"
            dev = await devices.get_device(conn, dev_id)
            assert dev is not None and dev.session_id is None
        again = CpeDouble(cwmp_url(acs), cpe.identity.serial_number)
        try:
            assert [r.rpc for r in await again.session(["2 PERIODIC"])] == ["Reboot"]
        finally:
            await again.close()
    finally:
        await cpe.close()
