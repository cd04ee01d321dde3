"""STUN and UDP connection requests on loopback, no root needed (TR-111 Part 2).

The ACS runs its STUN server on an ephemeral port; the simulator's devices run
with ``nat=True`` (no connection-request HTTP server: an HTTP knock cannot
work), are given a STUN credential by a SetParameterValues job as an operator
would, keep their binding open, and are knocked on over UDP. Bad and
unauthenticated STUN datagrams are sent from plain sockets and must get no
data back.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import asyncpg
import pytest

from acs.connreq import stun
from acs.services import sealing_key
from acs.store import nat
from acs.store.ids import device_id
from acs.web.server import Running
from cpe_simulator.fleet import Fleet, FleetConfig
from cpe_simulator.profiles import Timing
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.test_api import Client, token

pytestmark = pytest.mark.db

FAST = Timing(slow_s=0.3, reboot_s=0.2, retry_min_wait_s=0.2, retry_multiplier=1.5)
STUN_PASSWORD = "stun-secret-1"
# the simulator's connection-request credential; the CPE reads its password back as ""
CR = {"connection_request_username": "cr", "connection_request_password": "cr-secret"}


def stun_setup(
    host: str, port: int, username: str, keepalive_s: int = 1, root: str = "Device."
) -> list[list[str]]:
    ms = root + "ManagementServer."
    return [
        [ms + "STUNEnable", "true" if root == "Device." else "1", "xsd:boolean"],
        [ms + "STUNServerAddress", host, "xsd:string"],
        [ms + "STUNServerPort", str(port), "xsd:unsignedInt"],
        [ms + "STUNUsername", username, "xsd:string"],
        [ms + "STUNPassword", STUN_PASSWORD, "xsd:string"],
        [ms + "STUNMinimumKeepAlivePeriod", str(keepalive_s), "xsd:unsignedInt"],
        # from now on only a knock brings the device in quickly
        [ms + "PeriodicInformInterval", "3600", "xsd:unsignedInt"],
    ]


async def wait_until(check: Any, within_s: float, what: str) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {within_s} s")


async def natted_device(
    acs: Running, pool: asyncpg.Pool, client: Client, prefix: str, keepalive_s: int = 1, **kw: Any
) -> tuple[Fleet, str]:
    """One simulated CPE behind a (simulated) NAT, with STUN set up by a job."""
    fleet = Fleet(
        FleetConfig(
            acs_url=cwmp_url(acs),
            serial_prefix=prefix,
            periodic_interval=1,
            nat=True,
            cr_host="127.0.0.1",
            timing=FAST,
            **kw,
        )
    )
    await fleet.start()
    serial = next(iter(fleet.devices))
    dev = device_id(fleet.config.oui, fleet.config.product_class, serial)

    async def known() -> bool:
        async with pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT 1 FROM devices WHERE id = $1", dev))

    await wait_until(known, 15, "the device's first Inform")
    status, _body = await client.call(
        "POST",
        f"/devices/{dev}/tasks",
        json={
            "name": "setParameterValues",
            "parameterValues": stun_setup(
                "127.0.0.1",
                acs.ports["stun"],
                serial,
                keepalive_s,
                root=fleet.devices[serial].tree.root,
            ),
        },
    )
    assert status == 201

    async def bound() -> Any:
        async with pool.acquire() as conn:
            return await nat.binding(conn, dev)

    await wait_until(bound, 15, "a STUN binding of the device")
    return fleet, dev


def stun_count(acs: Running, outcome: str) -> float:
    return (
        acs.metrics.registry.get_sample_value("acs_stun_requests_total", {"outcome": outcome})
        or 0.0
    )


async def test_a_natted_cpe_is_reached_over_udp_through_its_stun_binding(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(connection_request_timeout_s=5.0, **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, dev = await natted_device(acs, db_pool, client, unique_serial("NAT"))
    try:
        serial = next(iter(fleet.devices))
        async with db_pool.acquire() as conn:
            stored = await conn.fetchrow(
                "SELECT username, password FROM stun_credentials WHERE device_id = $1", dev
            )
            binding = await nat.binding_details(conn, dev)
            peer = await nat.stun_peer(conn, serial, sealing_key.sealer(acs.settings))
        # the ACS kept the credential it set (the CPE reads STUNPassword back as ""),
        # the password sealed
        assert stored["username"] == serial and STUN_PASSWORD not in stored["password"]
        assert peer is not None and (peer.device_id, peer.password) == (dev, STUN_PASSWORD)
        assert binding is not None and binding["address"] == "127.0.0.1"
        agent = fleet.stun[serial]
        assert agent.transport is not None
        assert binding["port"] == agent.transport.get_extra_info("sockname")[1]
        assert agent.signed  # the server's 401 made the CPE sign its requests
        assert stun_count(acs, "challenged") >= 1 and stun_count(acs, "answered") >= 1
        # the STUN password is shown nowhere in clear: not in the job, not in the tree
        status, jobs = await client.call("GET", f"/devices/{dev}/tasks")
        assert status == 200
        setup = next(j for j in jobs["items"] if j["name"] == "setParameterValues")
        shown = {pv[0].rsplit(".", 1)[1]: pv[1] for pv in setup["args"]["parameterValues"]}
        assert shown["STUNPassword"] == "********" and shown["STUNUsername"] == serial
        status, device = await client.call("GET", f"/devices/{dev}")
        assert status == 200 and STUN_PASSWORD not in str(device) and serial in str(device)
        assert STUN_PASSWORD not in str(jobs)

        # a job "now": the HTTP URL leads nowhere, the UDP knock brings the device
        started = time.monotonic()
        status, body = await client.call(
            "POST",
            f"/devices/{dev}/tasks",
            params={"connection_request": "true", "timeout": "10"},
            json={
                "name": "getParameterValues",
                "parameterNames": ["Device.DeviceInfo.SoftwareVersion"],
            },
        )
        took = time.monotonic() - started
        assert status == 200, (body, fleet.counters)
        assert body["status"] == "done", body
        assert took < 4.0, f"the job took {took:.2f} s"
        assert fleet.counters[("udp_connection_request", "accepted")] == 1

        status, view = await client.call("GET", f"/devices/{dev}/connection-request")
        assert status == 200
        assert view["stunBinding"]["port"] == binding["port"]
        assert view["last"]["udp"]["ok"] is True and view["last"]["udp"]["outcome"] == "accepted"
        if "http" in view["last"]:  # tried first while the ACS did not yet know of the NAT
            assert view["last"]["http"]["ok"] is False

        status, body = await client.call("POST", f"/devices/{dev}/connection-request")
        assert status == 200 and body["ok"] is True and body["channel"] == "udp", body
        assert fleet.counters[("udp_connection_request", "accepted")] == 2
        # retransmissions of one request carry its id: a CPE acts on each request once
        assert fleet.counters[("udp_connection_request", "bad_signature")] == 0
    finally:
        await fleet.stop()
        await client.close()


async def test_a_tr098_gateway_behind_a_nat_is_reached_too(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(connection_request_timeout_s=5.0, **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, dev = await natted_device(
        acs, db_pool, client, unique_serial("IGD"), model="tr098-gateway"
    )
    try:
        serial = next(iter(fleet.devices))
        tree = fleet.devices[serial].tree
        assert tree.root == "InternetGatewayDevice."
        agent = fleet.stun[serial]
        assert agent.transport is not None
        port = agent.transport.get_extra_info("sockname")[1]
        # what the CPE reports, in TR-098's own spelling of booleans
        ms = "InternetGatewayDevice.ManagementServer."
        assert tree.value(ms + "UDPConnectionRequestAddress") == f"127.0.0.1:{port}"
        assert tree.value(ms + "NATDetected") == "1"
        status, body = await client.call("POST", f"/devices/{dev}/connection-request")
        assert status == 200 and body["ok"] is True and body["channel"] == "udp", body
    finally:
        await fleet.stop()
        await client.close()


async def test_a_device_with_no_usable_channel_gets_a_504_naming_each(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(connection_request_timeout_s=1.0, **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet = Fleet(
        FleetConfig(
            acs_url=cwmp_url(acs), serial_prefix=unique_serial("NOCH"), nat=True, timing=FAST
        )
    )
    await fleet.start()
    serial = next(iter(fleet.devices))
    dev = device_id(fleet.config.oui, fleet.config.product_class, serial)
    try:
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1, 15)
        status, body = await client.call(
            "POST",
            f"/devices/{dev}/tasks",
            params={"connection_request": "true", "timeout": "3"},
            json={"name": "reboot"},
        )
        assert status == 504 and body["status"] == "pending"
        reason = body["connectionRequest"]["reason"]
        assert reason.startswith("http: connection refused; udp: no STUN binding and no UDP")
        status, view = await client.call("GET", f"/devices/{dev}/connection-request")
        assert status == 200 and view["order"] == ["http"]
        assert view["last"]["http"]["outcome"] == "unreachable"
        status, _ = await client.call("GET", "/devices/no-such-device/connection-request")
        assert status == 404
    finally:
        await fleet.stop()
        await client.close()


async def test_a_binding_change_is_followed(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(connection_request_timeout_s=5.0, **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, dev = await natted_device(
        acs, db_pool, client, unique_serial("REB"), faults="nat-rebind"
    )
    try:
        async with db_pool.acquire() as conn:
            first = await nat.binding_details(conn, dev)
        assert first is not None

        async def moved() -> Any:
            async with db_pool.acquire() as conn:
                now = await nat.binding_details(conn, dev)
            return now if now and now["port"] != first["port"] else None

        second = await wait_until(moved, 15, "the binding's new port")
        assert second["changes"] >= 1 and second["since"] > first["since"]

        async def change_answered() -> bool:
            # the CPE counts its binding-change request once the ACS has answered
            # it: after the ACS stored the new port, so it may come a moment later
            return fleet.counters[("stun", "binding_change_sent")] >= 1

        await wait_until(change_answered, 5, "the CPE's binding-change request answered")
        assert stun_count(acs, "binding_changed") >= 1
        status, body = await client.call("POST", f"/devices/{dev}/connection-request")
        assert status == 200 and body["ok"] is True and body["channel"] == "udp", body
    finally:
        await fleet.stop()
        await client.close()


async def test_bad_and_unauthenticated_stun_datagrams_get_no_data(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(stun_rate_per_source=50.0, **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, dev = await natted_device(acs, db_pool, client, unique_serial("BAD"))
    serial = next(iter(fleet.devices))
    await fleet.stop()  # its keep-alives would share the source address with the flood
    server = ("127.0.0.1", acs.ports["stun"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.3)

    def answer_to(data: bytes) -> bytes | None:
        sock.sendto(data, server)
        try:
            return sock.recv(2048)
        except TimeoutError:
            return None

    try:
        before = {k: stun_count(acs, k) for k in ("malformed", "unknown_user", "bad_integrity")}
        loop = asyncio.get_running_loop()
        # a header with the magic cookie, and a length the datagram does not have
        broken = b"\x00\x01\x00\x40\x21\x12\xa4\x42" + b"t" * 12 + b"garbage"
        assert await loop.run_in_executor(None, answer_to, broken) is None
        _t, unknown = stun.binding_request("nobody", "pw")
        assert await loop.run_in_executor(None, answer_to, unknown) is None
        _t, forged = stun.binding_request(serial, "not-the-password")
        assert await loop.run_in_executor(None, answer_to, forged) is None
        _t, anonymous = stun.binding_request(None, None)
        assert await loop.run_in_executor(None, answer_to, anonymous) is None
        # known USERNAME, no integrity: a 401 and no address
        _t, unsigned = stun.binding_request(serial, None)
        challenge = await loop.run_in_executor(None, answer_to, unsigned)
        assert challenge is not None
        reply = stun.parse_binding_answer(challenge, None)
        assert reply.error_code == 401 and reply.mapped is None
        # signed right: the address this socket is seen at
        _t, good = stun.binding_request(serial, STUN_PASSWORD)
        answer = await loop.run_in_executor(None, answer_to, good)
        assert answer is not None
        assert stun.parse_binding_answer(answer, STUN_PASSWORD).mapped == sock.getsockname()
        assert stun_count(acs, "malformed") == before["malformed"] + 1
        assert stun_count(acs, "unknown_user") == before["unknown_user"] + 1
        assert stun_count(acs, "bad_integrity") == before["bad_integrity"] + 1
        assert stun_count(acs, "unauthenticated") >= 1

        # a flood from one address: past the bucket (2 x 50) requests are dropped unread
        limited = stun_count(acs, "rate_limited")
        sock.setblocking(False)
        flood_start = time.monotonic()
        for _ in range(400):
            sock.sendto(good, server)
        await asyncio.sleep(0.5)
        # what the bucket can let through in that time: the burst, then the rate
        allowed = 100 + 50 * (time.monotonic() - flood_start)
        answers = 0
        while True:
            try:
                sock.recv(2048)
                answers += 1
            except BlockingIOError:
                break
        dropped = stun_count(acs, "rate_limited") - limited
        # the kernel may drop some of the flood before the server reads it, so the
        # drops are bounded below by what arrived beyond the bucket, not by 400
        assert answers <= allowed + 1, (answers, allowed)
        assert dropped >= 100 and answers + dropped <= 400, (answers, dropped)
        async with db_pool.acquire() as conn:
            # the signed requests moved the binding to this socket: it is the device's now
            port = await conn.fetchval("SELECT port FROM udp_bindings WHERE device_id = $1", dev)
        assert port == sock.getsockname()[1]
    finally:
        sock.close()
        await client.close()
