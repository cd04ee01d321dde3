"""UDP connection requests over a lossy network and a forgetful NAT (simulator profiles).

``udp-loss:50``: half the CPE's incoming connection requests are lost (evenly,
the first one lost); the ACS's retransmissions (same id, so the CPE acts once)
still get its session started. ``nat-drop:SECONDS``: the NAT forgets the
binding after that long without traffic; a knock to the old binding is lost
and the 504 names each channel and why it failed, until the next STUN
keep-alive opens a new binding (a new public port, announced with
BINDING-CHANGE) and the UDP knock works again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from acs.store import nat
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_nat_loopback import CR, natted_device, wait_until

pytestmark = pytest.mark.db


async def test_with_half_the_datagrams_lost_the_retransmissions_start_the_session(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(connection_request_timeout_s=5.0, **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, dev = await natted_device(
        acs, db_pool, client, unique_serial("LOSS"), faults="udp-loss:50"
    )
    try:
        cpe = next(iter(fleet.devices.values()))
        for knock in (1, 2):
            status, body = await client.call("POST", f"/devices/{dev}/connection-request")
            assert status == 200 and body["ok"] is True and body["channel"] == "udp", body
            sent = int(body["reason"].split("after ")[1].split(" ")[0])
            assert sent >= 2, body["reason"]  # the first one was lost on the way
            assert fleet.counters[("udp_connection_request", "accepted")] == knock
            assert fleet.counters[("udp_connection_request", "lost")] >= knock
            await fleet.wait_for(lambda: not cpe.in_session, 10)
    finally:
        await fleet.stop()
        await client.close()


async def test_a_dropped_nat_binding_fails_the_knock_until_the_next_keepalive(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(connection_request_timeout_s=2.0, **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    # keep-alives far apart (600 s), the NAT forgetting after 3 s without traffic
    fleet, dev = await natted_device(
        acs, db_pool, client, unique_serial("DROP"), keepalive_s=600, faults="nat-drop:3"
    )
    try:
        serial = next(iter(fleet.devices))
        agent = fleet.stun[serial]
        await fleet.wait_for(lambda: not fleet.devices[serial].in_session, 10)
        async with db_pool.acquire() as conn:
            old = await nat.binding(conn, dev)
        assert old is not None

        async def forgotten() -> bool:
            await asyncio.sleep(0)
            return agent.binding_dropped()

        await wait_until(forgotten, 10, "the NAT forgetting the idle binding")
        # the ACS still holds the old binding (fresh for it): the datagrams are lost
        status, body = await client.call(
            "POST",
            f"/devices/{dev}/tasks",
            params={"connection_request": "true", "timeout": "10"},
            json={"name": "reboot"},
        )
        assert status == 504 and body["status"] == "pending", body
        cr = body["connectionRequest"]
        reason = cr["reason"]
        assert cr["channels"]["udp"]["outcome"] == "timeout", cr
        assert "udp: timeout after" in reason and "s: no session after" in reason, reason
        assert f"to {old.address}:{old.port}" in reason
        assert cr["channels"]["http"]["tried"] is True and cr["channels"]["http"]["ok"] is False
        assert "http: " in reason and "xmpp: XMPP not configured" in reason, reason
        assert fleet.counters[("udp_connection_request", "nat_dropped")] >= 1
        assert fleet.counters[("udp_connection_request", "accepted")] == 0

        # the next keep-alive goes out through a new binding, which the ACS learns
        await agent.keepalive()

        async def moved() -> Any:
            async with db_pool.acquire() as conn:
                b = await nat.binding(conn, dev)
            return b if b is not None and b.port != old.port else None

        new = await wait_until(moved, 10, "the new binding after the keep-alive")
        assert fleet.counters[("stun", "nat_dropped_binding")] >= 1
        status, body = await client.call("POST", f"/devices/{dev}/connection-request")
        assert status == 200 and body["ok"] is True and body["channel"] == "udp", body
        assert body["reason"].startswith("session opened after"), body
        assert fleet.counters[("udp_connection_request", "accepted")] == 1
        assert new.port != old.port
    finally:
        await fleet.stop()
        await client.close()
