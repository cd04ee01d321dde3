"""A CPE behind a real NAT (network namespaces, nftables masquerade): TR-111 Part 2.

The ACS runs here, in the root namespace; the simulator runs as a subprocess
in the "home" namespace behind the "router" one (tests/e2e/netns.py). Its HTTP
connection-request server listens on its private address, which the router
does not let in; its STUN keep-alives open a binding in the router's
conntrack table, and a UDP knock through that binding brings it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from acs.connreq.http import ConnectionRequester
from acs.services import sealing_key
from acs.store import nat
from acs.store.ids import device_id
from tests.e2e import prosody
from tests.e2e.conftest import StartAcs
from tests.e2e.netns import Nat, NetnsUnavailable, make_nat
from tests.e2e.test_api import Client, token
from tests.e2e.test_nat_loopback import CR, STUN_PASSWORD, stun_setup, wait_until

pytestmark = pytest.mark.db

CPE_SIM = str(Path(sys.executable).with_name("cpe-sim"))


@pytest.fixture
def home_nat() -> Iterator[Nat]:
    try:
        built = make_nat()
    except NetnsUnavailable as why:
        pytest.skip(str(why))
    try:
        yield built
    finally:
        built.close()


async def test_a_cpe_behind_a_real_nat_is_knocked_over_udp_within_two_seconds(
    home_nat: Nat, start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial, tmp_path: Path
) -> None:
    acs = await start_acs(
        host=home_nat.acs_ip,
        public_host=home_nat.acs_ip,
        connection_request_timeout_s=5.0,
        **CR,
    )
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    client.base = acs.url("api", "/api/v1")
    prefix = unique_serial("RNAT")
    serial = f"{prefix}00000001"
    dev = device_id("ACDE48", "HGW", serial)
    log = tmp_path / "cpe-sim.log"
    out = await asyncio.to_thread(log.open, "wb")
    sim = await asyncio.create_subprocess_exec(
        *home_nat.exec_prefix(),
        CPE_SIM,
        "--acs-url",
        acs.url("cwmp"),
        "--serial-prefix",
        prefix,
        "--cr-host",
        home_nat.home_ip,
        "--cr-port",
        "0",
        "--periodic-interval",
        "1",
        "--faults",
        "nat-rebind",
        "--retry-min-wait",
        "0.5",
        "--duration",
        "120",  # bounded even if the finally below never ran
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()  # the child has its own copy
    try:

        async def known() -> Any:
            async with db_pool.acquire() as conn:
                return await conn.fetchval(
                    "SELECT connection_request_url FROM devices WHERE id = $1", dev
                )

        cr_url = await wait_until(known, 20, "the CPE's first Inform through the NAT")
        assert home_nat.home_ip in cr_url  # its private address: useless from here
        async with db_pool.acquire() as conn:
            seen_from = await conn.fetchval("SELECT remote_address FROM devices WHERE id = $1", dev)
        assert seen_from == home_nat.public_ip  # the masquerade is real

        # an HTTP knock cannot pass the NAT
        requester = ConnectionRequester(timeout_s=1.0)
        try:
            http = await requester.send(cr_url, "cr", "cr-secret")
        finally:
            await requester.close()
        assert not http.ok and http.outcome == "timeout", http

        status, _ = await client.call(
            "POST",
            f"/devices/{dev}/tasks",
            json={
                "name": "setParameterValues",
                "parameterValues": stun_setup(home_nat.acs_ip, acs.ports["stun"], serial),
            },
        )
        assert status == 201

        async def binding() -> Any:
            async with db_pool.acquire() as conn:
                return await nat.binding_details(conn, dev)

        first = await wait_until(binding, 20, "a STUN binding through the NAT")
        assert first["address"] == home_nat.public_ip and first["nat_detected"] is True
        async with db_pool.acquire() as conn:
            kept = await conn.fetchval(
                "SELECT password FROM stun_credentials WHERE device_id = $1", dev
            )
            peer = await nat.stun_peer(conn, serial, sealing_key.sealer(acs.settings))
        # kept sealed; it opens to the password the ACS set
        assert kept and STUN_PASSWORD not in kept
        assert peer is not None and peer.password == STUN_PASSWORD

        async def job_now() -> tuple[float, dict[str, Any]]:
            started = time.monotonic()
            status, body = await client.call(
                "POST",
                f"/devices/{dev}/tasks",
                params={"connection_request": "true", "timeout": "5"},
                json={
                    "name": "getParameterValues",
                    "parameterNames": ["Device.DeviceInfo.SoftwareVersion"],
                },
            )
            assert status == 200 and body["status"] == "done", body
            return time.monotonic() - started, body

        took, _ = await job_now()
        print(f"job through the NAT: {took:.3f} s from the API call")
        assert took < 2.0, f"the job ran {took:.2f} s after the API call"
        status, view = await client.call("GET", f"/devices/{dev}/connection-request")
        assert status == 200 and view["order"][0] == "udp", view
        assert view["last"]["udp"]["ok"] is True, view

        # the NAT hands the CPE a new public port: the ACS follows it
        async def moved() -> Any:
            now = await binding()
            return now if now and now["port"] != first["port"] else None

        second = await wait_until(moved, 20, "a new public port after the binding changed")
        assert second["changes"] >= 1
        took, _ = await job_now()
        print(f"after the binding change ({first['port']} -> {second['port']}): {took:.3f} s")
        assert took < 2.0, f"after the binding change the job ran {took:.2f} s after the call"
    finally:
        if sim.returncode is None:
            sim.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sim.wait(), 10)
        if sim.returncode is None:
            sim.kill()
            await sim.wait()
        await client.close()


async def test_a_cpe_behind_a_real_nat_without_stun_is_knocked_over_xmpp(
    home_nat: Nat, start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial, tmp_path: Path
) -> None:
    """The CPE joins the XMPP server (outside, where the ACS is) through the masquerade;
    no STUN, the HTTP knock cannot pass the NAT, the XMPP knock brings it in."""
    if not prosody.installed():
        pytest.skip(prosody.SKIP_REASON)
    folder = tmp_path / "prosody"
    folder.mkdir()
    server = prosody.Prosody(folder, host=home_nat.acs_ip)
    server.register("acs", "acs-xmpp-secret")
    prefix = unique_serial("XNAT")
    serial = f"{prefix}00000001"
    jid = server.register(serial.lower(), "cpe-xmpp-secret") + "/cwmp"
    dev = device_id("ACDE48", "HGW", serial)
    server.start()
    sim: asyncio.subprocess.Process | None = None
    client: Client | None = None
    try:
        acs = await start_acs(
            host=home_nat.acs_ip,
            public_host=home_nat.acs_ip,
            connection_request_timeout_s=5.0,
            stun_enable=False,  # XMPP is the only way in
            xmpp_server=server.address,
            xmpp_jid=f"acs@{server.domain}",
            xmpp_password="acs-xmpp-secret",
            xmpp_require_tls=False,  # this server has no certificate (STARTTLS: test_xmpp_connreq)
            **CR,
        )
        client = Client(acs, await token(db_pool, "operator", unique_serial))
        client.base = acs.url("api", "/api/v1")
        log = tmp_path / "cpe-sim.log"
        out = await asyncio.to_thread(log.open, "wb")
        sim = await asyncio.create_subprocess_exec(
            *home_nat.exec_prefix(),
            CPE_SIM,
            "--acs-url",
            acs.url("cwmp"),
            "--serial-prefix",
            prefix,
            "--cr-host",
            home_nat.home_ip,
            "--cr-port",
            "0",
            "--periodic-interval",
            "3600",  # only a knock brings it in again
            "--xmpp-server",
            server.address,
            "--xmpp-domain",
            server.domain,
            "--xmpp-password",
            "cpe-xmpp-secret",
            "--duration",
            "120",
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()

        async def view() -> Any:
            status, v = await client.call("GET", f"/devices/{dev}/connection-request")
            return v if status == 200 and v["connReqJabberId"] == jid else None

        async def ready() -> Any:
            v = await view()
            return v if v and v["xmppServer"]["connected"] else None

        state = await wait_until(ready, 30, "the CPE's JID through the NAT and the ACS's login")
        assert home_nat.home_ip in state["connectionRequestUrl"]
        assert "udp" in state["unusable"], state
        async with db_pool.acquire() as conn:
            seen_from = await conn.fetchval("SELECT remote_address FROM devices WHERE id = $1", dev)
        assert seen_from == home_nat.public_ip
        status, body = await client.call(
            "POST",
            f"/devices/{dev}/tasks",
            params={"connection_request": "true", "timeout": "10"},
            json={
                "name": "getParameterValues",
                "parameterNames": ["Device.DeviceInfo.SoftwareVersion"],
            },
        )
        assert status == 200 and body["status"] == "done", body
        cr = body["connectionRequest"]
        assert cr["channel"] == "xmpp" and cr["ok"] is True, cr
        assert cr["channels"]["http"]["ok"] is False, cr  # the NAT lets no SYN in
        assert cr["channels"]["udp"]["tried"] is False, cr
        async with db_pool.acquire() as conn:
            events = await conn.fetchval("SELECT last_events FROM devices WHERE id = $1", dev)
        assert "6 CONNECTION REQUEST" in events
    finally:
        if sim is not None and sim.returncode is None:
            sim.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sim.wait(), 10)
            if sim.returncode is None:
                sim.kill()
                await sim.wait()
        if client is not None:
            await client.close()
        server.stop()
