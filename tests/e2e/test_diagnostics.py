"""TR-143 diagnostics end to end: a job through the API, the simulator running the
test for real on loopback, the results read in the 8 DIAGNOSTICS COMPLETE session.

Every job here goes: POST the job, a session sets the test going (one
SetParameterValues with DiagnosticsState=Requested), the simulated CPE runs it
after that session and opens its own with 8 DIAGNOSTICS COMPLETE, the ACS reads
the object and closes the job. The tests wait for the job to close (a deadline
on the wait, not on the measurement) and check what the CPE really measured.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from acs.store import session_logs
from acs.web.server import Running
from cpe_simulator.fleet import Fleet
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.xsd import validate_envelope

pytestmark = pytest.mark.db

FINAL = ("done", "fault", "expired", "cancelled")


@pytest.fixture
async def diag_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest", cpe_username="cpe", cpe_password="cpe-pw", session_timeout_s=5.0
    )


@pytest.fixture
async def admin(diag_acs: Running, db_pool: asyncpg.Pool, unique_serial) -> AsyncIterator[Client]:
    client = Client(diag_acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


async def booted(acs: Running, serial: str, **kw: Any) -> tuple[Fleet, str]:
    fleet = await fleet_of(acs, serial, **kw)
    serial = next(iter(fleet.devices))
    await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1)
    return fleet, serial


async def queue(client: Client, fleet: Fleet, serial: str, **args: Any) -> int:
    status, body = await client.call(
        "POST", f"/devices/{dev_id(fleet, serial)}/tasks", json={"name": "diagnostics", **args}
    )
    assert status == 201, body
    return int(body["id"])


async def closed(client: Client, job: int, within_s: float = 60.0) -> dict[str, Any]:
    """The job once it is final (the CPE's second session comes on its own)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        status, body = await client.call("GET", f"/tasks/{job}")
        assert status == 200, body
        if body["status"] in FINAL:
            return body
        assert loop.time() < deadline, f"job {job} still {body['status']}: {body}"
        await asyncio.sleep(0.1)


async def run(client: Client, fleet: Fleet, serial: str, **args: Any) -> dict[str, Any]:
    job = await queue(client, fleet, serial, **args)
    await fleet.trigger(serial)
    return await closed(client, job)


async def sessions_of(
    pool: asyncpg.Pool, device: str
) -> list[tuple[list[str], list[tuple[str, bytes]]]]:
    """The device's stored sessions, oldest first: their events and the ACS's requests."""
    out = []
    async with pool.acquire() as conn:
        for summary in reversed(await session_logs.list_sessions(conn, device)):
            got = await session_logs.get_session(conn, device, summary.id)
            assert got is not None
            bodies = [
                (msg["rpc"], msg["body"].encode())
                for msg in got[1]
                if msg["direction"] == "out" and msg["rpc"] and msg["body"]
            ]
            out.append((summary.events, bodies))
    return out


async def acs_messages(pool: asyncpg.Pool, device: str, rpc: str) -> list[bytes]:
    """The bodies of the ACS's ``rpc`` requests in the device's stored sessions."""
    found = []
    async with pool.acquire() as conn:
        for summary in await session_logs.list_sessions(conn, device):
            got = await session_logs.get_session(conn, device, summary.id)
            assert got is not None
            for msg in got[1]:
                if msg["direction"] == "out" and msg["rpc"] == rpc and msg["body"]:
                    found.append(msg["body"].encode())
    return found


async def test_ping_and_traceroute_on_a_tr181_device_one_test_at_a_time(
    diag_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet, serial = await booted(diag_acs, unique_serial("DP"))
    try:
        ping = await queue(admin, fleet, serial, test="ping", host="127.0.0.1", count=4)
        trace = await queue(
            admin, fleet, serial, test="traceroute", host="localhost", count=3, maxHopCount=8
        )
        await fleet.trigger(serial)
        pinged = await closed(admin, ping)
        traced = await closed(admin, trace)

        assert pinged["status"] == "done", pinged
        result = pinged["result"]
        assert result["test"] == "ping"
        assert result["object"] == "Device.IP.Diagnostics.IPPing."
        assert result["diagnosticsState"] == "Complete"
        assert result["requested"]["Host"] == "127.0.0.1"
        p = result["ping"]
        assert (p["successCount"], p["failureCount"]) == (4, 0)
        # real round trips: microseconds measured, ordered as minimum, average, maximum
        lo, mid, hi = (p[f"{k}ResponseTimeDetailed"] for k in ("minimum", "average", "maximum"))
        assert 0 < lo <= mid <= hi
        assert p["minimumResponseTime"] <= p["averageResponseTime"] <= p["maximumResponseTime"]

        assert traced["status"] == "done", traced
        t = traced["result"]["traceroute"]
        assert [(h["hop"], h["host"], h["address"], h["errorCode"]) for h in t["hops"]] == [
            (1, "localhost", "127.0.0.1", 0)
        ]
        assert len(t["hops"][0]["rtTimes"]) == 3
        assert t["responseTime"] is not None

        # what the ACS sent, session by session: the ping's SetParameterValues alone
        # (the traceroute held back while the ping ran), then in the ping's
        # 8 DIAGNOSTICS COMPLETE session its GetParameterValues and only then the
        # traceroute's SetParameterValues; then the traceroute's read. All valid CWMP.
        sent = []
        for events, bodies in await sessions_of(db_pool, dev_id(fleet, serial)):
            for rpc, body in bodies:
                # a SetParameterValues of a test, or the read of a test's whole object
                # (not the discovery's batches, which list diagnostics parameters too)
                read = re.search(rb">Device\.IP\.Diagnostics\.(IPPing|TraceRoute)\.<", body)
                if rpc == "SetParameterValues" or read:
                    validate_envelope(body)
                    what = b"TraceRoute" if b"TraceRoute" in body else b"IPPing"
                    assert rpc != "SetParameterValues" or b">Requested<" in body
                    sent.append((rpc, what.decode(), "8 DIAGNOSTICS COMPLETE" in events))
        assert sent == [
            ("SetParameterValues", "IPPing", False),
            ("GetParameterValues", "IPPing", True),
            ("SetParameterValues", "TraceRoute", True),
            ("GetParameterValues", "TraceRoute", True),
        ]
    finally:
        await fleet.stop()


async def test_ping_on_a_tr098_device(
    diag_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet, serial = await booted(diag_acs, unique_serial("DQ"), model="tr098-gateway")
    try:
        job = await run(
            admin, fleet, serial, test="ping", host="127.0.0.1", count=2, timeout=2000, dscp=0
        )
        assert job["status"] == "done", job
        assert job["result"]["object"] == "InternetGatewayDevice.IPPingDiagnostics."
        p = job["result"]["ping"]
        assert (p["successCount"], p["failureCount"]) == (2, 0)
        assert p["averageResponseTimeDetailed"] is None  # TR-098 has milliseconds only
        for body in await acs_messages(db_pool, dev_id(fleet, serial), "SetParameterValues"):
            validate_envelope(body)

        # TR-098 has no UDP echo test: the job faults saying so, nothing is sent
        job = await run(admin, fleet, serial, test="udpEcho", host="127.0.0.1", port=7)
        assert job["status"] == "fault"
        assert "has no udpEcho diagnostics" in job["fault"]["message"]
    finally:
        await fleet.stop()


async def test_download_diagnostics_measure_throughput_from_the_file_server(
    diag_acs: Running, admin: Client, db_pool: asyncpg.Pool, unique_serial
) -> None:
    name = f"speedtest-{unique_serial()}.bin"
    size = 2_000_000
    status, body = await admin.call("PUT", f"/files/{name}", data=bytes(size))
    assert status == 201, body
    url = f"http://127.0.0.1:{diag_acs.ports['files']}/{name}"
    for model in ("tr181-gateway", "tr098-gateway"):
        fleet, serial = await booted(diag_acs, unique_serial("DD"), model=model)
        try:
            job = await run(admin, fleet, serial, test="download", url=url)
            assert job["status"] == "done", job
            d = job["result"]["download"]
            assert d["testBytes"] == size
            assert d["totalBytesReceived"] > size  # the HTTP head came too
            times = [
                datetime.fromisoformat(d[k])
                for k in ("tcpOpenRequestTime", "tcpOpenResponseTime", "romTime", "bomTime")
            ]
            assert times == sorted(times)
            assert datetime.fromisoformat(d["eomTime"]) > times[-1]
            assert d["seconds"] > 0
            assert d["throughputBps"] == pytest.approx(size * 8 / d["seconds"], rel=1e-3)
            for body in await acs_messages(db_pool, dev_id(fleet, serial), "SetParameterValues"):
                validate_envelope(body)
        finally:
            await fleet.stop()


async def test_upload_diagnostics_put_the_test_file(
    diag_acs: Running, admin: Client, unique_serial
) -> None:
    received: list[int] = []

    async def accept(request: web.Request) -> web.Response:
        received.append(len(await request.read()))
        return web.Response(status=201)

    app = web.Application(client_max_size=10_000_000)
    app.router.add_put("/up/{name}", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fleet, serial = await booted(diag_acs, unique_serial("DU"))
    try:
        job = await run(
            admin,
            fleet,
            serial,
            test="upload",
            url=f"http://127.0.0.1:{port}/up/test.bin",
            testFileLength=1_500_000,
        )
        assert job["status"] == "done", job
        u = job["result"]["upload"]
        assert received == [1_500_000]
        assert u["testBytes"] == 1_500_000 and u["totalBytesSent"] > 1_500_000
        assert u["throughputBps"] > 0
    finally:
        await fleet.stop()
        await runner.cleanup()


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def test_udp_echo_and_server_selection_on_a_tr181_device(
    diag_acs: Running, admin: Client, unique_serial
) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        _Echo, local_addr=("127.0.0.1", 0), family=socket.AF_INET
    )
    port = transport.get_extra_info("sockname")[1]
    fleet, serial = await booted(diag_acs, unique_serial("DE"))
    try:
        job = await run(
            admin,
            fleet,
            serial,
            test="udpEcho",
            host="127.0.0.1",
            port=port,
            count=3,
            interTransmissionTime=10,
        )
        assert job["status"] == "done", job
        e = job["result"]["udpEcho"]
        assert (e["successCount"], e["failureCount"]) == (3, 0)

        job = await run(
            admin, fleet, serial, test="serverSelection", hosts=["127.0.0.1", "localhost"]
        )
        assert job["status"] == "done", job
        s = job["result"]["serverSelection"]
        assert s["fastestHost"] in ("127.0.0.1", "localhost")
        assert 0 < s["minimumResponseTime"] <= s["averageResponseTime"] <= s["maximumResponseTime"]
    finally:
        await fleet.stop()
        transport.close()


async def test_a_test_whose_results_never_come_times_out(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        session_timeout_s=5.0,
        diagnostics_timeout_s=1.0,
    )
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, serial = await booted(acs, unique_serial("DT"), faults="diagnostics-hang")
    try:
        job = await run(client, fleet, serial, test="ping", host="127.0.0.1")
        assert job["status"] == "fault"
        assert job["fault"] == {
            "code": None,
            "message": "timeout: no 8 DIAGNOSTICS COMPLETE within 1 s",
            "cause": "timeout: no 8 DIAGNOSTICS COMPLETE within 1 s",
        }
        assert job["result"]["requested"]["DiagnosticsState"] == "Requested"
        assert "awaitingDiagnosticsComplete" not in job["result"]
        # a late (or unasked-for) 8 DIAGNOSTICS COMPLETE finds no test waiting: the
        # session goes through and the timed-out job stays as it ended
        cpe = fleet.devices[serial]
        await fleet.trigger(serial, "8 DIAGNOSTICS COMPLETE")
        assert cpe.last_session is not None and cpe.last_session.ok
        _, again = await client.call("GET", f"/tasks/{job['id']}")
        assert (again["status"], again["fault"]) == ("fault", job["fault"])
        # the device is free for the next test: it is sent, not held back
        nxt = await queue(client, fleet, serial, test="ping", host="127.0.0.1")
        await fleet.trigger(serial)
        _, body = await client.call("GET", f"/tasks/{nxt}")
        assert body["status"] == "running"
    finally:
        await fleet.stop()
        await client.close()


async def test_an_unresolvable_host_fails_the_job_with_the_cpes_state(
    diag_acs: Running, admin: Client, unique_serial
) -> None:
    fleet, serial = await booted(diag_acs, unique_serial("DX"), faults="diagnostics-unresolvable")
    try:
        job = await run(admin, fleet, serial, test="traceroute", host="acs.example.net")
        assert job["status"] == "fault"
        assert job["fault"] == {
            "code": None,
            "message": "traceroute diagnostics failed: Error_CannotResolveHostName",
            "cause": "traceroute diagnostics failed: Error_CannotResolveHostName",
        }
        assert job["result"]["diagnosticsState"] == "Error_CannotResolveHostName"
    finally:
        await fleet.stop()


BAD = [
    ({"test": "ping"}, "a ping test needs host"),
    ({"test": "ping", "host": "h", "maxHopCount": 3}, "not arguments of a ping test: maxHopCount"),
    ({"test": "download", "url": "file:///etc/passwd"}, "url must be http:// or ftp://"),
    ({"test": "upload", "url": "http://h/x"}, "needs testFileLength"),
    ({"test": "ping", "host": "h", "count": 0}, "greater than or equal to 1"),
    ({"test": "ping", "host": "two words"}, "should match pattern"),
    ({"test": "serverSelection", "hosts": ["a,b"]}, "is not a host name"),
    ({"test": "nslookup", "host": "h"}, "Input should be"),
    ({"host": "h"}, "Field required"),
]


async def test_bad_diagnostics_jobs_are_refused_with_the_reason(
    diag_acs: Running, admin: Client, unique_serial
) -> None:
    fleet, serial = await booted(diag_acs, unique_serial("DB"))
    try:
        device = dev_id(fleet, serial)
        for args, says in BAD:
            status, body = await admin.call(
                "POST", f"/devices/{device}/tasks", json={"name": "diagnostics", **args}
            )
            assert status == 400, (args, body)
            assert says in str(body), (args, body)
        _, jobs = await admin.call("GET", f"/devices/{device}/tasks")
        assert jobs["items"] == []
    finally:
        await fleet.stop()
