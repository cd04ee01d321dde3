"""The shipped STUN policy (stun-behind-nat): created disabled, and once an
operator enables it, devices that report a NAT end up with a STUN binding at
the ACS and are reached by a UDP knock; a device that reports none is left alone.

Real parts: PostgreSQL, the ACS on 127.0.0.1 with its STUN server, the
simulator with ``nat=True`` (``cpe-sim --nat``: no connection-request HTTP
server, NATDetected reported) for TR-181 and TR-098 gateways.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import asyncpg
import pytest

from acs.services import provisioning, sealing_key
from acs.services.provisioning import NAT_DETECTED, STUN_POLICY_NAME, stun_policy
from acs.store import nat
from acs.store import policies as policy_store
from acs.store.db import create_pool, drop_database, ensure_database, migrate
from acs.store.ids import device_id
from acs.web.server import Running
from cpe_simulator.fleet import Fleet, FleetConfig
from tests.e2e.conftest import StartAcs, cwmp_url, make_settings
from tests.e2e.test_api import Client, token
from tests.e2e.test_nat_loopback import CR, FAST

pytestmark = pytest.mark.db


async def test_the_stun_policy_is_shipped_disabled_with_the_acs_stun_server(
    pg_admin_url: str,
) -> None:
    name = f"acs_stun_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    try:
        pool = await create_pool(url)
        conn = await pool.acquire()
        try:
            await migrate(conn)
            # an installation from before the STUN policy: the other defaults only
            assert await provisioning.install_defaults(conn) == [
                "periodic-inform",
                "connection-request-credentials",
            ]
            assert await policy_store.get_by_name(conn, STUN_POLICY_NAME) is None
            settings = make_settings(public_host="acs.example.net", stun_port=3479)
            assert await provisioning.install_defaults(conn, settings) == [STUN_POLICY_NAME]
            row = await policy_store.get_by_name(conn, STUN_POLICY_NAME)
            assert row is not None and row.enabled is False
            assert row.precondition == NAT_DETECTED
            values = {p["path"]: p["value"] for p in row.spec["parameters"]}
            assert values == {
                "ManagementServer.STUNEnable": "true",
                "ManagementServer.STUNServerAddress": "acs.example.net",
                "ManagementServer.STUNServerPort": "3479",
                "ManagementServer.STUNUsername": "{DeviceID.ID}",
                "ManagementServer.STUNPassword": "{secret:stun}",
            }
            assert row.spec["attributes"] == [
                {"path": "ManagementServer.UDPConnectionRequestAddress", "notification": 2}
            ]
            # once: an operator who deletes it does not get it back at the next start
            await policy_store.delete(conn, row.id)
            assert await provisioning.install_defaults(conn, settings) == []
            assert await policy_store.get_by_name(conn, STUN_POLICY_NAME) is None
        finally:
            await pool.release(conn)
            await pool.close()
    finally:
        await drop_database(pg_admin_url, name)


async def wait_until(check: Any, within_s: float, what: str) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {within_s} s")


def fleet(acs: Running, prefix: str, *, natted: bool, model: str = "tr181-gateway") -> Fleet:
    return Fleet(
        FleetConfig(
            acs_url=cwmp_url(acs),
            serial_prefix=prefix,
            # after its first session only a knock brings the device in quickly
            periodic_interval=3600,
            nat=natted,
            cr_host="127.0.0.1",
            timing=FAST,
            model=model,
        )
    )


async def test_enabled_it_gives_natted_devices_a_stun_binding_and_a_udp_knock_reaches_them(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(connection_request_timeout_s=5.0, **CR)
    client = Client(acs, await token(db_pool, "admin", unique_serial))
    group = unique_serial("STP")
    shipped = stun_policy(acs.settings.model_copy(update={"stun_port": acs.ports["stun"]}))
    assert shipped["enabled"] is False
    # the operator enables it; scoped to this test's devices (the database is shared)
    policy = shipped | {
        "enabled": True,
        "precondition": f'({shipped["precondition"]}) AND DeviceID.SerialNumber LIKE "{group}%"',
    }
    spec = policy.pop("spec")
    status, made = await client.call("POST", "/policies", json=policy | spec)
    assert status == 201, made
    fleets = {
        "tr181": fleet(acs, group + "A", natted=True),
        "tr098": fleet(acs, group + "B", natted=True, model="tr098-gateway"),
        "open": fleet(acs, group + "C", natted=False),
    }
    try:
        for f in fleets.values():
            await f.start()
        devs = {
            k: (
                serial := next(iter(f.devices)),
                device_id(f.config.oui, f.config.product_class, serial),
            )
            for k, f in fleets.items()
        }
        for k in ("tr181", "tr098"):
            serial, dev = devs[k]

            async def bound(dev: str = dev) -> Any:
                async with db_pool.acquire() as conn:
                    return await nat.binding(conn, dev)

            binding = await wait_until(bound, 20, f"a STUN binding of the {k} device")
            agent = fleets[k].stun[serial]
            assert agent.transport is not None
            assert binding.port == agent.transport.get_extra_info("sockname")[1]
            tree = fleets[k].devices[serial].tree
            ms = tree.root + "ManagementServer."
            assert tree.value(ms + "STUNUsername") == dev
            assert tree.value(ms + "STUNServerPort") == str(acs.ports["stun"])
            assert tree.notification(ms + "UDPConnectionRequestAddress") == 2
            password = tree.value(ms + "STUNPassword")
            assert len(password) >= 16  # derived, the device's own
            async with db_pool.acquire() as conn:
                peer = await nat.stun_peer(conn, dev, sealing_key.sealer(acs.settings))
            # the ACS kept what it set, and knows the device by its STUN username
            assert peer is not None and (peer.device_id, peer.password) == (dev, password)

            # the HTTP URL leads nowhere behind the NAT: the UDP knock brings it in
            before = fleets[k].counters[("udp_connection_request", "accepted")]
            started = time.monotonic()
            status, body = await client.call(
                "POST",
                f"/devices/{dev}/tasks",
                params={"connection_request": "true", "timeout": "10"},
                json={
                    "name": "getParameterValues",
                    "parameterNames": [tree.root + "DeviceInfo.SoftwareVersion"],
                },
            )
            assert status == 200 and body["status"] == "done", body
            assert time.monotonic() - started < 5.0
            assert fleets[k].counters[("udp_connection_request", "accepted")] == before + 1

        # the other STUN password is another device's own
        a = fleets["tr181"].devices[devs["tr181"][0]].tree
        b = fleets["tr098"].devices[devs["tr098"][0]].tree
        assert a.value(a.root + "ManagementServer.STUNPassword") != b.value(
            b.root + "ManagementServer.STUNPassword"
        )

        # the device that reports no NAT: its sessions ran, the policy left it alone
        serial, dev = devs["open"]
        open_fleet = fleets["open"]
        await wait_until(
            lambda: asyncio.sleep(0, all(c.sessions_ok for c in open_fleet.devices.values())),
            15,
            "the open device's first session",
        )
        tree = open_fleet.devices[serial].tree
        assert tree.value(tree.root + "ManagementServer.STUNEnable").lower() in ("false", "0")
        async with db_pool.acquire() as conn:
            assert await nat.binding(conn, dev) is None
    finally:
        for f in fleets.values():
            await f.stop()
        await client.close()
