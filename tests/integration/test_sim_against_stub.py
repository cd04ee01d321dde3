"""Simulated CPEs against a small scripted ACS stub over real HTTP on 127.0.0.1.

The stub speaks CWMP through ``acs.cwmp.soap`` and nothing else of the ACS, so
these tests pin the simulator's own behaviour (sessions, events, reboots,
transfers, connection requests, fault profiles) without PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from acs.cwmp import messages as m
from acs.cwmp.soap import Envelope, parse_envelope, serialize_envelope
from cpe_simulator.auth import DigestChecker
from cpe_simulator.cpe import SimulatedCpe
from cpe_simulator.firmware import make_image
from cpe_simulator.fleet import Fleet, FleetConfig
from cpe_simulator.profiles import Timing

FAST = Timing(slow_s=0.2, reboot_s=0.1, retry_min_wait_s=0.1, retry_multiplier=2.0)
_prefixes = itertools.count(1)

SV = "Device.DeviceInfo.SoftwareVersion"


@dataclass
class Seen:
    """What the stub received in one session of one device."""

    inform: m.Inform
    messages: list[m.Message] = field(default_factory=list)  # after the Inform
    at: float = field(default_factory=time.monotonic)

    @property
    def events(self) -> list[str]:
        return [e.event_code for e in self.inform.events]

    def command_key(self, code: str) -> str:
        return next(e.command_key for e in self.inform.events if e.event_code == code)

    def param(self, name: str) -> str:
        return next(p.value for p in self.inform.parameter_list if p.name == name)


class StubAcs:
    """A scripted ACS: InformResponse, TransferCompleteResponse, then the queued
    requests of that device one by one, then 204. Sessions are told apart by a
    cookie, as a real ACS does."""

    def __init__(self) -> None:
        self.queues: dict[str, list[m.Message]] = {}
        self.sessions: dict[str, list[Seen]] = {}
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, bytes] = {}
        self.range_requests: list[str] = []
        self.cut_next_download = False
        # serial -> how many more Informs to answer with HTTP 500 / garbage
        self.fail_informs: dict[str, int] = {}
        self.garble_informs: dict[str, int] = {}
        self.digest: DigestChecker | None = None
        self.inform_delay = 0.0
        self.file_auth: str | None = None  # "basic" or "digest": files need user "fu"/"fp"
        self.file_digest = DigestChecker(realm="files")
        self.closing_requests = 0  # POSTs asking to close the TCP connection afterwards
        self.unauthorized = 0
        self._by_cookie: dict[str, Seen] = {}
        self._ids = itertools.count(1)
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/cwmp", self.cwmp)
        app.router.add_get("/files/{name}", self.get_file)
        app.router.add_put("/uploads/{name}", self.put_file)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def queue(self, serial: str, *requests: m.Message) -> None:
        self.queues.setdefault(serial, []).extend(requests)

    def of(self, serial: str) -> list[Seen]:
        return self.sessions.get(serial, [])

    def answers(self, serial: str) -> list[m.Message]:
        return [msg for s in self.of(serial) for msg in s.messages]

    @staticmethod
    def _xml(message: m.Message, cwmp_id: str | None) -> web.Response:
        body = serialize_envelope(Envelope(message, cwmp_id=cwmp_id))
        return web.Response(body=body, content_type="text/xml")

    async def cwmp(self, request: web.Request) -> web.StreamResponse:
        if self.digest is not None and not self.digest.check(
            "POST", request.headers.get("Authorization"), "cpe", "cpe-pw"
        ):
            self.unauthorized += 1
            return web.Response(status=401, headers={"WWW-Authenticate": self.digest.challenge()})
        data = await request.read()
        if not request.keep_alive:
            self.closing_requests += 1
        env = parse_envelope(data) if data.strip() else None
        if env is not None and isinstance(env.body, m.Inform):
            serial = env.body.device_id.serial_number
            await asyncio.sleep(self.inform_delay)
            if self.fail_informs.get(serial, 0) > 0:
                self.fail_informs[serial] -= 1
                self.sessions.setdefault(serial, []).append(Seen(env.body))
                return web.Response(status=500, text="stub: internal error")
            if self.garble_informs.get(serial, 0) > 0:
                self.garble_informs[serial] -= 1
                self.sessions.setdefault(serial, []).append(Seen(env.body))
                return web.Response(body=b"<soap:Envelope><broken", content_type="text/xml")
            seen = Seen(env.body)
            self.sessions.setdefault(serial, []).append(seen)
            sid = f"s{next(self._ids)}"
            self._by_cookie[sid] = seen
            resp = self._xml(m.InformResponse(1), env.cwmp_id)
            resp.set_cookie("sid", sid)
            return resp
        current = self._by_cookie.get(request.cookies.get("sid", ""))
        if current is None:
            return web.Response(status=400, text="stub: no session")
        seen = current
        if env is not None:
            seen.messages.append(env.body)
            if isinstance(env.body, m.TransferComplete):
                return self._xml(m.TransferCompleteResponse(), env.cwmp_id)
        queue = self.queues.get(seen.inform.device_id.serial_number)
        if queue:
            return self._xml(queue.pop(0), f"acs-{next(self._ids)}")
        return web.Response(status=204)

    def _file_auth_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        if self.file_auth == "digest":
            return self.file_digest.check(request.method, header, "fu", "fp")
        if self.file_auth == "basic":
            return header == aiohttp.encode_basic_auth("fu", "fp")
        return True

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        if not self._file_auth_ok(request):
            challenge = (
                self.file_digest.challenge() if self.file_auth == "digest" else 'Basic realm="f"'
            )
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        data = self.files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        start = 0
        rng = request.headers.get("Range")
        if rng:
            self.range_requests.append(rng)
            start = int(rng.removeprefix("bytes=").split("-")[0])
        if self.cut_next_download:
            # the connection dies half-way through, after announcing the full length
            self.cut_next_download = False
            resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.close()
            return resp
        if start:
            return web.Response(
                status=206,
                body=data[start:],
                headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
            )
        return web.Response(body=data)

    async def put_file(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["name"]] = await request.read()
        return web.Response(status=201)


@pytest.fixture
async def stub() -> AsyncIterator[StubAcs]:
    acs = StubAcs()
    await acs.start()
    yield acs
    await acs.stop()


@pytest.fixture
async def make_fleet(stub: StubAcs) -> AsyncIterator[Callable[..., Any]]:
    fleets: list[Fleet] = []

    async def make(n: int = 1, **kw: Any) -> Fleet:
        kw.setdefault("timing", FAST)
        kw.setdefault("acs_url", f"{stub.base}/cwmp")
        fleet = Fleet(
            FleetConfig(
                devices=n,
                serial_prefix=f"STUB{next(_prefixes)}X",
                **kw,
            )
        )
        fleets.append(fleet)
        await fleet.start()
        return fleet

    yield make
    for fleet in fleets:
        await fleet.stop()


def only(fleet: Fleet) -> tuple[str, SimulatedCpe]:
    (serial, cpe), *_ = fleet.devices.items()
    return serial, cpe


async def sessions(stub: StubAcs, fleet: Fleet, serial: str, n: int, within: float = 10) -> None:
    """Wait until the stub has seen ``n`` Informs of the device and it is idle again."""
    cpe = fleet.devices[serial]
    await fleet.wait_for(lambda: len(stub.of(serial)) >= n and not cpe.in_session, within)


# ------------------------------------------------------------------ sessions and RPCs


async def test_first_contact_is_a_bootstrap_inform_with_the_device_identity(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet(2)
    for serial in fleet.devices:
        await sessions(stub, fleet, serial, 1)
        first = stub.of(serial)[0]
        assert first.events == ["0 BOOTSTRAP", "1 BOOT"]
        assert first.inform.retry_count == 0
        assert first.inform.device_id.serial_number == serial
        assert first.inform.device_id.oui == fleet.config.oui
        assert first.param(SV) == "1.0.0"
        cr_url = first.param("Device.ManagementServer.ConnectionRequestURL")
        assert cr_url == f"http://127.0.0.1:{fleet.cr_server.port}/cr/{serial}"
        assert fleet.devices[serial].bootstrapped
    assert fleet.summary()["sessions_ok"] == 2
    assert fleet.summary()["sessions_failed"] == 0


async def test_acs_requests_are_answered_and_applied(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(
        serial,
        m.GetParameterValues(["Device.DeviceInfo.SerialNumber"]),
        m.SetParameterValues(
            [m.ParameterValueStruct("Device.WiFi.SSID.1.SSID", "stub-net")], "key-1"
        ),
        m.AddObject("Device.NAT.PortMapping.", "key-2"),
        m.GetParameterValues(["Device.WiFi.SSID.1.SSID", "Device.ManagementServer.ParameterKey"]),
        m.GetParameterValues(["Device.No.Such.Thing"]),
        m.GetRPCMethods(),
        # an ACS method: no CPE implements it (the simulator answers ScheduleDownload now)
        m.RequestDownload("1 Firmware Upgrade Image"),
    )
    await fleet.trigger(serial)
    session = stub.of(serial)[-1]
    assert session.events == ["6 CONNECTION REQUEST"]
    gpv, spv, add, gpv2, bad, rpcs, unsupported = session.messages
    assert isinstance(gpv, m.GetParameterValuesResponse)
    assert [(p.name, p.value) for p in gpv.parameter_list] == [
        ("Device.DeviceInfo.SerialNumber", serial)
    ]
    assert isinstance(spv, m.SetParameterValuesResponse) and spv.status in (0, 1)
    assert isinstance(add, m.AddObjectResponse) and add.instance_number >= 1
    assert isinstance(gpv2, m.GetParameterValuesResponse)
    assert {p.name: p.value for p in gpv2.parameter_list} == {
        "Device.WiFi.SSID.1.SSID": "stub-net",
        "Device.ManagementServer.ParameterKey": "key-2",
    }
    assert isinstance(bad, m.Fault) and bad.fault_code == 9005
    assert isinstance(rpcs, m.GetRPCMethodsResponse) and "Download" in rpcs.method_list
    # a method this CPE does not implement is refused with 9000, and the session goes on
    assert isinstance(unsupported, m.Fault) and unsupported.fault_code == 9000
    assert cpe.tree.parameter_key == "key-2"
    assert cpe.last_session is not None and cpe.last_session.ok


async def test_set_parameter_values_fault_lists_each_bad_parameter(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, _cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(
        serial,
        m.SetParameterValues(
            [
                m.ParameterValueStruct("Device.DeviceInfo.SerialNumber", "nope"),
                m.ParameterValueStruct("Device.WiFi.SSID.1.SSID", "fine"),
            ]
        ),
    )
    await fleet.trigger(serial)
    (fault,) = stub.of(serial)[-1].messages
    assert isinstance(fault, m.Fault) and fault.fault_code == 9003
    assert [(f.parameter_name, f.fault_code) for f in fault.set_parameter_values_faults] == [
        ("Device.DeviceInfo.SerialNumber", 9008)
    ]


async def test_reboot_comes_back_with_boot_and_m_reboot(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(serial, m.Reboot("reboot-42"))
    await fleet.trigger(serial)
    assert isinstance(stub.of(serial)[-1].messages[0], m.RebootResponse)
    await sessions(stub, fleet, serial, 3)
    after = stub.of(serial)[2]
    assert after.events == ["1 BOOT", "M Reboot"]
    assert after.command_key("M Reboot") == "reboot-42"
    assert cpe.state == "up"


async def test_factory_reset_bootstraps_again(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(
        serial,
        m.SetParameterValues([m.ParameterValueStruct("Device.WiFi.SSID.1.SSID", "changed")]),
        m.FactoryReset(),
    )
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 3)
    assert stub.of(serial)[2].events == ["0 BOOTSTRAP", "1 BOOT"]
    ssid = cpe.tree.get_parameter_values(["Device.WiFi.SSID.1.SSID"])[0].value
    assert ssid != "changed"


async def test_schedule_inform_opens_a_scheduled_session(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, _cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(serial, m.ScheduleInform(1, "sched-7"))
    await fleet.trigger(serial)
    asked = time.monotonic()
    await sessions(stub, fleet, serial, 3)
    scheduled = stub.of(serial)[2]
    assert scheduled.events == ["3 SCHEDULED", "M ScheduleInform"]
    assert scheduled.command_key("M ScheduleInform") == "sched-7"
    assert scheduled.at - asked >= 0.9


async def test_periodic_informs_follow_the_interval(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet(periodic_interval=1)
    serial, cpe = only(fleet)
    await sessions(stub, fleet, serial, 3, within=15)
    seen = stub.of(serial)
    assert seen[1].events == ["2 PERIODIC"] and seen[2].events == ["2 PERIODIC"]
    gap = seen[2].at - seen[1].at
    assert 0.8 <= gap <= 2.5  # 1 s +-10 % jitter, plus the session itself (slack for load)
    assert cpe.tree.periodic_inform_interval == 1


# ------------------------------------------------------------------ transfers


async def test_firmware_download_installs_the_new_version_and_reports_it(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    image = make_image("2.0.0", 4096)
    stub.files["fw.bin"] = image
    await sessions(stub, fleet, serial, 1)
    stub.queue(
        serial,
        m.Download(
            "fw-1", "1 Firmware Upgrade Image", f"{stub.base}/files/fw.bin", file_size=len(image)
        ),
    )
    await fleet.trigger(serial)
    (accepted,) = stub.of(serial)[-1].messages
    assert isinstance(accepted, m.DownloadResponse) and accepted.status == 1
    await sessions(stub, fleet, serial, 3)
    after = stub.of(serial)[2]
    # SoftwareVersion has forced active notification (TR-181), hence 4 VALUE CHANGE too
    assert set(after.events) == {"1 BOOT", "7 TRANSFER COMPLETE", "M Download", "4 VALUE CHANGE"}
    assert after.command_key("M Download") == "fw-1"
    assert after.param(SV) == "2.0.0"
    (tc,) = after.messages
    assert isinstance(tc, m.TransferComplete)
    assert tc.command_key == "fw-1" and tc.fault.fault_code == 0
    assert tc.start_time is not None and tc.complete_time is not None
    assert tc.start_time <= tc.complete_time
    assert cpe.tree.software_version == "2.0.0"
    assert not cpe.transfers and not cpe.transfer_results


async def test_interrupted_download_resumes_with_range(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    image = make_image("3.1.0", 64 * 1024)
    stub.files["fw.bin"] = image
    stub.cut_next_download = True
    await sessions(stub, fleet, serial, 1)
    stub.queue(
        serial,
        m.Download(
            "fw-r", "1 Firmware Upgrade Image", f"{stub.base}/files/fw.bin", file_size=len(image)
        ),
    )
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 3)
    assert stub.range_requests and stub.range_requests[0].startswith("bytes=")
    assert int(stub.range_requests[0][6:].rstrip("-")) > 0
    tc = stub.of(serial)[2].messages[0]
    assert isinstance(tc, m.TransferComplete) and tc.fault.fault_code == 0
    assert cpe.tree.software_version == "3.1.0"


async def test_missing_file_is_reported_without_reboot(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(
        serial, m.Download("fw-404", "1 Firmware Upgrade Image", f"{stub.base}/files/nope.bin")
    )
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 3)
    after = stub.of(serial)[2]
    assert after.events == ["7 TRANSFER COMPLETE", "M Download"]
    tc = after.messages[0]
    assert isinstance(tc, m.TransferComplete) and tc.fault.fault_code == 9016
    assert cpe.tree.software_version == "1.0.0"


async def test_vendor_configuration_file_is_applied(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    stub.files["cfg.txt"] = b"Device.WiFi.SSID.1.SSID=from-config\n"
    await sessions(stub, fleet, serial, 1)
    stub.queue(
        serial,
        m.Download("cfg-1", "3 Vendor Configuration File", f"{stub.base}/files/cfg.txt"),
    )
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 3)
    tc = stub.of(serial)[2].messages[0]
    assert isinstance(tc, m.TransferComplete) and tc.fault.fault_code == 0
    assert cpe.tree.get_parameter_values(["Device.WiFi.SSID.1.SSID"])[0].value == "from-config"


@pytest.mark.parametrize("scheme", ["basic", "digest"])
async def test_download_answers_the_file_servers_challenge(
    stub: StubAcs, make_fleet: Callable[..., Any], scheme: str
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    stub.file_auth = scheme
    stub.files["fw.bin"] = make_image("5.0.0", 4096)
    await sessions(stub, fleet, serial, 1)
    url = f"{stub.base}/files/fw.bin"
    stub.queue(serial, m.Download("bad", "1 Firmware Upgrade Image", url, "fu", "nope"))
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 3)
    refused = stub.of(serial)[2].messages[0]
    assert isinstance(refused, m.TransferComplete) and refused.fault.fault_code == 9012
    stub.queue(serial, m.Download("good", "1 Firmware Upgrade Image", url, "fu", "fp"))
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 5)
    done = stub.of(serial)[4].messages[0]
    assert isinstance(done, m.TransferComplete)
    assert (done.command_key, done.fault.fault_code) == ("good", 0)
    assert cpe.tree.software_version == "5.0.0"


async def test_upload_puts_a_configuration_file(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, _cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(
        serial, m.Upload("up-1", "1 Vendor Configuration File", f"{stub.base}/uploads/{serial}")
    )
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 3)
    after = stub.of(serial)[2]
    assert "M Upload" in after.events and after.command_key("M Upload") == "up-1"
    tc = after.messages[0]
    assert isinstance(tc, m.TransferComplete) and tc.fault.fault_code == 0
    assert f"Device.ManagementServer.URL={stub.base}/cwmp" in stub.uploads[serial].decode()


async def test_queued_transfers_can_be_listed_and_cancelled(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    url = f"{stub.base}/files/later.bin"
    stub.queue(
        serial,
        m.Download("later", "1 Firmware Upgrade Image", url, delay_seconds=3600),
        m.GetQueuedTransfers(),
        m.GetAllQueuedTransfers(),
        m.CancelTransfer("later"),
        m.CancelTransfer("never-queued"),
        m.GetQueuedTransfers(),
    )
    await fleet.trigger(serial)
    _dl, queued, all_queued, cancelled, unknown, after = stub.of(serial)[-1].messages
    assert isinstance(queued, m.GetQueuedTransfersResponse)
    assert [(t.command_key, t.state) for t in queued.transfer_list] == [("later", 1)]
    assert isinstance(all_queued, m.GetAllQueuedTransfersResponse)
    (entry,) = all_queued.transfer_list
    assert entry.is_download and entry.file_type == "1 Firmware Upgrade Image"
    assert isinstance(cancelled, m.CancelTransferResponse)
    assert isinstance(unknown, m.Fault) and unknown.fault_code == 9003
    assert isinstance(after, m.GetQueuedTransfersResponse) and after.transfer_list == []
    assert cpe.transfers == []


# ------------------------------------------------------------------ connection requests


async def test_connection_request_needs_digest_and_starts_a_session(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, _cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    url = f"http://127.0.0.1:{fleet.cr_server.port}/cr/{serial}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401
            challenge = resp.headers["WWW-Authenticate"]
            assert challenge.startswith("Digest ") and 'qop="auth"' in challenge
        wrong = aiohttp.DigestAuthMiddleware("cr", "wrong")
        async with http.get(url, middlewares=(wrong,)) as resp:
            assert resp.status == 401
        async with http.get(f"http://127.0.0.1:{fleet.cr_server.port}/cr/NOSUCH") as resp:
            assert resp.status == 404
        assert len(stub.of(serial)) == 1  # nothing above may start a session
        right = aiohttp.DigestAuthMiddleware("cr", "cr-secret")
        async with http.get(url, middlewares=(right,)) as resp:
            assert resp.status in (200, 204)
    await sessions(stub, fleet, serial, 2)
    assert stub.of(serial)[1].events == ["6 CONNECTION REQUEST"]


async def test_connection_requests_are_rate_limited(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, _cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    url = f"http://127.0.0.1:{fleet.cr_server.port}/cr/{serial}"
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(fleet.cr_server.burst + 2):
            auth = aiohttp.DigestAuthMiddleware("cr", "cr-secret")
            async with http.get(url, middlewares=(auth,)) as resp:
                statuses.append(resp.status)
    burst = fleet.cr_server.burst
    assert statuses[:burst] == [200] * burst
    assert statuses[burst:] == [503, 503]
    # the accepted knocks that arrived while a session ran fold into one more session
    await fleet.wait_for(lambda: not fleet.devices[serial].in_session, 10)
    await asyncio.sleep(0.3)
    assert 2 <= len(stub.of(serial)) <= 1 + burst
    assert all(s.events == ["6 CONNECTION REQUEST"] for s in stub.of(serial)[1:])


# ------------------------------------------------------------------ failures and retries


async def test_failed_sessions_keep_their_events_and_back_off(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial = f"{fleet.config.serial_prefix}{1:08d}"
    # the fleet starts its first session right away; fail it before it gets here
    stub.fail_informs[serial] = 2
    stub.garble_informs[serial] = 1
    await sessions(stub, fleet, serial, 4)
    tries = stub.of(serial)
    assert [s.inform.retry_count for s in tries] == [0, 1, 2, 3]
    assert all(s.events == ["0 BOOTSTRAP", "1 BOOT"] for s in tries)
    # TR-069 3.2.1.1: the n-th retry waits m*k^(n-1) .. m*k^n (m=0.1 s, k=2 here)
    for n in (1, 2, 3):
        gap = tries[n].at - tries[n - 1].at
        assert gap >= 0.1 * 2 ** (n - 1) * 0.95, (n, gap)
    cpe = fleet.devices[serial]
    assert cpe.sessions_failed == 3 and cpe.sessions_ok == 1 and cpe.retry_count == 0
    assert cpe.bootstrapped
    faults = fleet.summary()["faults"]
    assert any(k.startswith("session_failed:HTTP 500") for k in faults)
    assert any(k.startswith("acs_bad_xml") for k in faults)


async def test_acs_that_is_down_is_retried_and_the_fleet_survives(
    make_fleet: Callable[..., Any],
) -> None:
    fleet = await make_fleet(2, acs_url="http://127.0.0.1:9/cwmp")  # nothing listens there
    await fleet.wait_for(lambda: all(c.sessions_failed >= 2 for c in fleet.devices.values()), 10)
    s = fleet.summary()
    assert s["sessions_ok"] == 0 and s["online"] == 2
    assert all(c.events for c in fleet.devices.values())  # still pending: never acknowledged
    assert all(c.retry_count >= 2 for c in fleet.devices.values())


# ------------------------------------------------------------------ fault profiles and quirks


async def test_drop_profile_breaks_sessions_mid_way_and_retries(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet(4, faults="drop:1.0")
    for serial in fleet.devices:
        stub.queue(serial, *[m.GetParameterValues([SV]) for _ in range(6)])
    await fleet.wait_for(lambda: all(c.sessions_ok >= 1 for c in fleet.devices.values()), 20)
    dropped = sum(c.sessions_failed for c in fleet.devices.values())
    assert dropped >= 1, "a fleet that always drops must break some sessions"
    for serial, cpe in fleet.devices.items():
        tries = stub.of(serial)
        assert len(tries) == cpe.sessions_ok + cpe.sessions_failed
        counts = [s.inform.retry_count for s in tries]
        # RetryCount grows by one per failed session in a row and resets after a success
        assert counts[0] == 0
        assert all(b in (0, a + 1) for a, b in itertools.pairwise(counts)), counts
        assert tries[0].events == ["0 BOOTSTRAP", "1 BOOT"]
    assert any(s.inform.retry_count >= 1 for serial in fleet.devices for s in stub.of(serial))
    assert any(k.startswith("session_failed:drop") for k in fleet.summary()["faults"])
    # each dropped session closed its TCP connection instead of going quiet
    assert stub.closing_requests == dropped


async def test_corrupt_download_reports_9018_and_keeps_the_old_version(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet(faults="corrupt-download:1.0")
    serial, cpe = only(fleet)
    stub.files["fw.bin"] = make_image("2.0.0", 4096)
    await sessions(stub, fleet, serial, 1)
    stub.queue(serial, m.Download("c", "1 Firmware Upgrade Image", f"{stub.base}/files/fw.bin"))
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 3)
    after = stub.of(serial)[2]
    assert after.events == ["7 TRANSFER COMPLETE", "M Download"]  # no reboot happened
    tc = after.messages[0]
    assert isinstance(tc, m.TransferComplete) and tc.fault.fault_code == 9018
    assert after.param(SV) == "1.0.0" and cpe.tree.software_version == "1.0.0"


async def test_truncated_download_reports_9017(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet(faults="truncated-download:1.0")
    serial, cpe = only(fleet)
    stub.files["fw.bin"] = make_image("2.0.0", 4096)
    await sessions(stub, fleet, serial, 1)
    stub.queue(serial, m.Download("t", "1 Firmware Upgrade Image", f"{stub.base}/files/fw.bin"))
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 3)
    tc = stub.of(serial)[2].messages[0]
    assert isinstance(tc, m.TransferComplete) and tc.fault.fault_code == 9017
    assert cpe.tree.software_version == "1.0.0"


async def test_power_loss_during_flash_boots_the_old_image_without_transfer_complete(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet(faults="power-loss:1.0")
    serial, cpe = only(fleet)
    stub.files["fw.bin"] = make_image("2.0.0", 4096)
    await sessions(stub, fleet, serial, 1)
    stub.queue(serial, m.Download("p", "1 Firmware Upgrade Image", f"{stub.base}/files/fw.bin"))
    await fleet.trigger(serial)
    await sessions(stub, fleet, serial, 3)
    await asyncio.sleep(0.3)  # time for a TransferComplete session, were one coming
    after = stub.of(serial)[2:]
    assert after[0].events == ["1 BOOT"]
    assert after[0].param(SV) == "1.0.0"
    assert not any(isinstance(x, m.TransferComplete) for s in after for x in s.messages)
    assert ("power_loss", "flash") in fleet.counters


async def test_brick_never_comes_back(stub: StubAcs, make_fleet: Callable[..., Any]) -> None:
    fleet = await make_fleet(faults="brick:1.0")
    serial, cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(serial, m.Reboot("r"))
    await fleet.trigger(serial)
    await asyncio.sleep(FAST.reboot_s * 5)
    assert len(stub.of(serial)) == 2
    assert cpe.state == "bricked"
    assert fleet.summary()["online"] == 0
    async with aiohttp.ClientSession() as http:  # a dead box answers no knock
        url = f"http://127.0.0.1:{fleet.cr_server.port}/cr/{serial}"
        async with http.get(url) as resp:
            assert resp.status == 404


async def test_reboot_loop_keeps_booting(stub: StubAcs, make_fleet: Callable[..., Any]) -> None:
    fleet = await make_fleet(faults="reboot-loop:1.0")
    serial, _cpe = only(fleet)
    await sessions(stub, fleet, serial, 3)
    assert all("1 BOOT" in s.events for s in stub.of(serial)[:3])


async def test_quirks_no_bootstrap_root_gpn_and_tc_without_event(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet(faults="no-bootstrap:1.0,reject-root-gpn:1.0,tc-without-event:1.0")
    serial, _cpe = only(fleet)
    stub.files["fw.bin"] = make_image("2.0.0", 2048)
    await sessions(stub, fleet, serial, 1)
    assert stub.of(serial)[0].events == ["1 BOOT"]
    stub.queue(
        serial,
        m.GetParameterNames("", False),
        m.GetParameterNames("Device.", True),
        m.GetParameterNames("Device.WiFi.", True),
        m.Download("q", "1 Firmware Upgrade Image", f"{stub.base}/files/fw.bin"),
    )
    await fleet.trigger(serial)
    empty, root, wifi, _dl = stub.of(serial)[1].messages
    assert isinstance(empty, m.Fault) and empty.fault_code == 9005
    assert isinstance(root, m.Fault) and root.fault_code == 9005
    assert isinstance(wifi, m.GetParameterNamesResponse) and wifi.parameter_list
    await sessions(stub, fleet, serial, 3)
    after = stub.of(serial)[2]
    assert set(after.events) == {"1 BOOT", "M Download", "4 VALUE CHANGE"}  # no 7 TRANSFER COMPLETE
    assert isinstance(after.messages[0], m.TransferComplete)


async def test_odd_prefixes_still_parse_as_cwmp(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet(faults="odd-prefixes:1.0")
    serial, _cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(serial, m.GetParameterValues([SV]))
    await fleet.trigger(serial)
    (gpv,) = stub.of(serial)[1].messages
    assert isinstance(gpv, m.GetParameterValuesResponse)
    assert gpv.parameter_list[0].value == "1.0.0"


async def test_slow_profile_delays_each_message(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet(faults="slow:1.0")
    serial, _cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.queue(serial, m.GetParameterValues([SV]), m.GetParameterValues([SV]))
    started = time.monotonic()
    await fleet.trigger(serial)
    # Inform, empty POST, two answers: each waits slow_s first
    assert time.monotonic() - started >= 4 * FAST.slow_s * 0.95


async def test_digest_auth_towards_the_acs(stub: StubAcs, make_fleet: Callable[..., Any]) -> None:
    stub.digest = DigestChecker(realm="stub-acs")
    fleet = await make_fleet(username="cpe", password="cpe-pw")
    serial, _cpe = only(fleet)
    stub.queue(serial, m.GetParameterValues([SV]))
    await sessions(stub, fleet, serial, 1)
    assert fleet.devices[serial].sessions_ok == 1
    assert isinstance(stub.of(serial)[0].messages[0], m.GetParameterValuesResponse)
    assert stub.unauthorized >= 1


async def test_wrong_acs_password_fails_and_retries(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    stub.digest = DigestChecker(realm="stub-acs")
    fleet = await make_fleet(username="cpe", password="not-it")
    serial, cpe = only(fleet)
    await fleet.wait_for(lambda: cpe.sessions_failed >= 2, 10)
    assert cpe.sessions_ok == 0 and stub.of(serial) == []
    assert any(k.startswith("session_failed:HTTP 401") for k in fleet.summary()["faults"])


async def test_connection_request_during_the_inform_is_not_lost(
    stub: StubAcs, make_fleet: Callable[..., Any]
) -> None:
    fleet = await make_fleet()
    serial, cpe = only(fleet)
    await sessions(stub, fleet, serial, 1)
    stub.inform_delay = 0.5
    cpe.add_event("2 PERIODIC")
    fleet.wake(cpe)
    await fleet.wait_for(lambda: cpe.in_session, 5)
    url = f"http://127.0.0.1:{fleet.cr_server.port}/cr/{serial}"
    async with aiohttp.ClientSession() as http:
        auth = aiohttp.DigestAuthMiddleware("cr", "cr-secret")
        async with http.get(url, middlewares=(auth,)) as resp:
            assert resp.status == 200  # answered at once, though a session is running
    stub.inform_delay = 0.0
    await sessions(stub, fleet, serial, 3)
    assert stub.of(serial)[1].events == ["2 PERIODIC"]
    assert stub.of(serial)[2].events == ["6 CONNECTION REQUEST"]


async def test_cpe_sim_command_runs_a_fleet_and_prints_a_tally(stub: StubAcs) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpe_simulator",
        "--acs-url", f"{stub.base}/cwmp", "--devices", "3", "--serial-prefix", "CLI",
        "--cr-port", "0", "--duration", "1.5", "--summary-every", "0.5", "--json-summary",
        "--faults", "slow:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    lines = out.decode().splitlines()
    assert any("online 3/3" in line for line in lines), lines
    tally = json.loads(lines[-1])
    assert tally["devices"] == 3 and tally["sessions_ok"] >= 3 and tally["sessions_failed"] == 0
    assert tally["rss_mb"] > 0
    assert {s for s in stub.sessions if s.startswith("CLI")} == {f"CLI{i:08d}" for i in (1, 2, 3)}
