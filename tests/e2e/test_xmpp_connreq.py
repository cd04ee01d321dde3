"""XMPP connection requests (TR-069 Annex K) through a real XMPP server on loopback.

Debian's prosody runs with a throwaway config on a free port of 127.0.0.1
(tests/e2e/prosody.py), with accounts for the ACS and each simulated CPE made
by ``prosodyctl register``. The CPEs run behind the simulator's NAT (no HTTP
connection-request server: an HTTP knock is refused) with no STUN, so XMPP is
the only channel that can reach them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from acs.connreq.xmpp_client import XmppConnectionRequester
from acs.services.provisioning import stun_policy
from acs.store import nat
from acs.store.ids import device_id
from acs.web.server import Running
from cpe_simulator.fleet import Fleet, FleetConfig
from cpe_simulator.profiles import Timing
from tests.certs import TestCa
from tests.e2e import prosody
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.test_api import Client, token

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(not prosody.installed(), reason=prosody.SKIP_REASON),
]

FAST = Timing(slow_s=0.3, reboot_s=0.2, retry_min_wait_s=0.2, retry_multiplier=1.5)
ACS_PASSWORD = "acs-xmpp-secret"
CPE_PASSWORD = "cpe-xmpp-secret"
# the simulator's connection-request credential; the CPE reads its password back as ""
CR = {"connection_request_username": "cr", "connection_request_password": "cr-secret"}


@pytest.fixture
def xmpp_server(tmp_path: Path) -> Iterator[prosody.Prosody]:
    folder = tmp_path / "prosody"
    folder.mkdir()
    server = prosody.Prosody(folder)
    server.register("acs", ACS_PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def xmpp_settings(server: prosody.Prosody) -> dict[str, Any]:
    return {
        "xmpp_server": server.address,
        "xmpp_jid": f"acs@{server.domain}",
        "xmpp_password": ACS_PASSWORD,
        "xmpp_require_tls": False,  # the test server has no certificate
        "connection_request_timeout_s": 5.0,
        # STUN stays on (the default): the UDP channel is there, the device just has no binding
    }


async def wait_until(check: Any, within_s: float, what: str) -> Any:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {within_s} s")


async def xmpp_device(
    acs: Running,
    pool: asyncpg.Pool,
    client: Client,
    server: prosody.Prosody,
    prefix: str,
    **kw: Any,
) -> tuple[Fleet, str]:
    """One simulated CPE behind a NAT, logged in to the XMPP server, known to the ACS
    with its ConnReqJabberID; the ACS logged in too."""
    serial = f"{prefix}00000001"
    jid = server.register(serial.lower(), CPE_PASSWORD)
    fleet = Fleet(
        FleetConfig(
            acs_url=cwmp_url(acs),
            serial_prefix=prefix,
            periodic_interval=3600,  # only a knock brings the device in quickly
            nat=True,
            cr_host="127.0.0.1",
            timing=FAST,
            xmpp_server=server.address,
            xmpp_domain=server.domain,
            xmpp_password=CPE_PASSWORD,
            **kw,
        )
    )
    await fleet.start()
    dev = device_id(fleet.config.oui, fleet.config.product_class, serial)

    async def learnt() -> str | None:
        async with pool.acquire() as conn:
            reach = await nat.reach(conn, dev)
        return None if reach is None else reach.jabber_id

    assert await wait_until(learnt, 20, "the device's ConnReqJabberID in the ACS") == jid + "/cwmp"
    await asyncio.wait_for(fleet.xmpp[serial].online.wait(), 10)
    await fleet.wait_for(lambda: not fleet.devices[serial].in_session, 15)

    async def logged_in() -> bool:
        status, view = await client.call("GET", f"/devices/{dev}/connection-request")
        assert status == 200
        return bool(view["xmppServer"]["connected"])

    await wait_until(logged_in, 15, "the ACS's XMPP login")
    return fleet, dev


async def test_a_natted_cpe_without_stun_is_reached_over_xmpp(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial, xmpp_server: prosody.Prosody
) -> None:
    acs = await start_acs(**xmpp_settings(xmpp_server), **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, dev = await xmpp_device(acs, db_pool, client, xmpp_server, unique_serial("XMP"))
    try:
        serial = next(iter(fleet.devices))
        status, view = await client.call("GET", f"/devices/{dev}/connection-request")
        assert status == 200
        assert view["order"] == ["http", "xmpp"], view
        assert view["unusable"]["udp"].startswith("no STUN binding")
        assert view["connReqJabberId"] == f"{serial.lower()}@{xmpp_server.domain}/cwmp"
        assert view["xmppServer"]["jid"] == f"acs@{xmpp_server.domain}"

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
        cr = body["connectionRequest"]
        assert cr["channel"] == "xmpp" and cr["ok"] is True, cr
        assert cr["channels"]["http"]["ok"] is False  # refused: nothing listens behind the NAT
        assert cr["channels"]["udp"]["tried"] is False
        assert took < 3.0, f"the job took {took:.2f} s from the API call to done"
        print(f"xmpp knock to job done: {took:.3f} s (knock {cr['elapsedS']} s)")
        assert fleet.counters[("xmpp_connection_request", "accepted")] == 1
        assert "6 CONNECTION REQUEST" in (
            await db_pool.fetchval("SELECT last_events FROM devices WHERE id = $1", dev)
        )

        status, view = await client.call("GET", f"/devices/{dev}/connection-request")
        assert status == 200
        last = view["last"]["xmpp"]
        assert last["ok"] is True and last["outcome"] == "accepted"
        assert "IQ result" in last["reason"]
    finally:
        await fleet.stop()
        await client.close()


async def test_a_wrong_password_gets_the_error_iq_and_the_reason_says_so(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial, xmpp_server: prosody.Prosody
) -> None:
    acs = await start_acs(
        **xmpp_settings(xmpp_server),
        connection_request_username="cr",
        connection_request_password="not-the-password",
    )
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, dev = await xmpp_device(acs, db_pool, client, xmpp_server, unique_serial("XBAD"))
    try:
        started = time.monotonic()
        status, body = await client.call(
            "POST",
            f"/devices/{dev}/tasks",
            params={"connection_request": "true", "timeout": "10"},
            json={"name": "reboot"},
        )
        took = time.monotonic() - started
        assert status == 504 and body["status"] == "pending", body
        cr = body["connectionRequest"]
        assert cr["ok"] is False and cr["channel"] == "xmpp", cr
        assert cr["channels"]["xmpp"]["outcome"] == "auth_failed"
        assert "xmpp: IQ error not-authorized" in cr["reason"], cr["reason"]
        assert took < 2.0, f"an error IQ is an answer: {took:.2f} s"
        assert fleet.counters[("xmpp_connection_request", "not_authorized")] == 1
        assert fleet.counters[("xmpp_connection_request", "accepted")] == 0
        status, view = await client.call("GET", f"/devices/{dev}/connection-request")
        assert view["last"]["xmpp"]["outcome"] == "auth_failed"
        assert "not-authorized" in view["last"]["xmpp"]["reason"]
    finally:
        await fleet.stop()
        await client.close()


async def test_the_server_down_fails_fast_and_the_acs_logs_in_again(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial, xmpp_server: prosody.Prosody
) -> None:
    acs = await start_acs(**xmpp_settings(xmpp_server), **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, dev = await xmpp_device(acs, db_pool, client, xmpp_server, unique_serial("XDN"))
    try:
        serial = next(iter(fleet.devices))
        status, view = await client.call("GET", f"/devices/{dev}/connection-request")
        logins = view["xmppServer"]["logins"]
        assert logins == 1
        xmpp_server.stop()

        async def noticed() -> bool:
            _s, v = await client.call("GET", f"/devices/{dev}/connection-request")
            return not v["xmppServer"]["connected"]

        await wait_until(noticed, 10, "the ACS noticing the XMPP server is gone")
        started = time.monotonic()
        status, body = await client.call("POST", f"/devices/{dev}/connection-request")
        took = time.monotonic() - started
        assert status == 200 and body["ok"] is False, body
        assert body["channels"]["xmpp"]["outcome"] == "unreachable"
        reason = body["channels"]["xmpp"]["reason"]
        assert reason.startswith(f"not connected to the XMPP server {xmpp_server.address}"), reason
        assert took < 1.0, f"the knock took {took:.2f} s with the XMPP server down"

        xmpp_server.start()

        async def back() -> Any:
            _s, v = await client.call("GET", f"/devices/{dev}/connection-request")
            return v["xmppServer"] if v["xmppServer"]["connected"] else None

        again = await wait_until(back, 20, "the ACS's new XMPP login")
        assert again["logins"] == 2 and again["reason"] is None
        await asyncio.wait_for(fleet.xmpp[serial].online.wait(), 10)
        status, body = await client.call("POST", f"/devices/{dev}/connection-request")
        assert status == 200 and body["ok"] is True and body["channel"] == "xmpp", body
        await fleet.wait_for(
            lambda: fleet.counters[("xmpp_connection_request", "accepted")] == 1, 5
        )
    finally:
        await fleet.stop()
        await client.close()


async def test_a_cpe_answers_service_unavailable_to_a_jid_it_does_not_allow(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial, xmpp_server: prosody.Prosody
) -> None:
    acs = await start_acs(**xmpp_settings(xmpp_server), **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet, dev = await xmpp_device(acs, db_pool, client, xmpp_server, unique_serial("XAL"))
    try:
        serial = next(iter(fleet.devices))
        ms = "Device.ManagementServer."
        fleet.devices[serial].tree.set_value_internal(
            ms + "ConnReqAllowedJabberIDs", f"other-acs@{xmpp_server.domain}"
        )
        status, body = await client.call("POST", f"/devices/{dev}/connection-request")
        assert status == 200 and body["ok"] is False, body
        assert body["channels"]["xmpp"]["outcome"] == "refused"
        assert "xmpp: IQ error service-unavailable" in body["reason"], body["reason"]
        assert fleet.counters[("xmpp_connection_request", "not_allowed")] == 1
        # the ACS's own bare JID in the list: accepted
        fleet.devices[serial].tree.set_value_internal(
            ms + "ConnReqAllowedJabberIDs",
            f"other-acs@{xmpp_server.domain},acs@{xmpp_server.domain}",
        )
        status, body = await client.call("POST", f"/devices/{dev}/connection-request")
        assert status == 200 and body["ok"] is True and body["channel"] == "xmpp", body
    finally:
        await fleet.stop()
        await client.close()


async def test_with_tls_required_a_plain_server_is_refused_with_the_reason(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial, xmpp_server: prosody.Prosody
) -> None:
    acs = await start_acs(**{**xmpp_settings(xmpp_server), "xmpp_require_tls": True}, **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet = Fleet(
        FleetConfig(
            acs_url=cwmp_url(acs), serial_prefix=unique_serial("XTLS"), nat=True, timing=FAST
        )
    )
    await fleet.start()
    serial = next(iter(fleet.devices))
    dev = device_id(fleet.config.oui, fleet.config.product_class, serial)
    try:
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1, 15)

        async def refused() -> Any:
            _s, v = await client.call("GET", f"/devices/{dev}/connection-request")
            return v["xmppServer"] if v["xmppServer"]["reason"] != "not connected yet" else None

        state = await wait_until(refused, 10, "the ACS's first XMPP login attempt")
        assert state["connected"] is False and state["logins"] == 0
        assert "offered no STARTTLS" in state["reason"], state
        _s, view = await client.call("GET", f"/devices/{dev}/connection-request")
        # this CPE reports no ConnReqJabberID: the channel is left out, with that reason
        assert view["unusable"]["xmpp"].startswith("no ConnReqJabberID"), view
    finally:
        await fleet.stop()
        await client.close()


@pytest.fixture
def xmpp_tls_server(tmp_path: Path) -> Iterator[tuple[prosody.Prosody, TestCa]]:
    """Prosody that insists on STARTTLS, with a certificate for its domain from a
    throwaway CA (neither the system's nor anyone else's trusts it)."""
    ca = TestCa(tmp_path / "pki", "XMPP test CA")
    folder = tmp_path / "prosody-tls"
    folder.mkdir()
    cert = ca.server("xmpp", names=("xmpp.test",))
    server = prosody.Prosody(folder, tls=cert, require_tls=True)
    server.register("acs", ACS_PASSWORD)
    try:
        server.start()
        yield server, ca
    finally:
        server.stop()


async def test_starttls_to_the_xmpp_server_with_its_ca_and_a_knock_through_it(
    start_acs: StartAcs,
    db_pool: asyncpg.Pool,
    unique_serial,
    xmpp_tls_server: tuple[prosody.Prosody, TestCa],
) -> None:
    server, ca = xmpp_tls_server
    acs = await start_acs(
        **{**xmpp_settings(server), "xmpp_require_tls": True, "xmpp_ca_file": ca.cert_file},
        **CR,
    )
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    # the CPEs trust the same CA (the server refuses them too without STARTTLS)
    fleet, dev = await xmpp_device(
        acs, db_pool, client, server, unique_serial("XTS"), ca_file=str(ca.cert_file)
    )
    try:
        status, view = await client.call("GET", f"/devices/{dev}/connection-request")
        assert status == 200 and view["xmppServer"]["tls"] is True, view["xmppServer"]
        status, body = await client.call("POST", f"/devices/{dev}/connection-request")
        assert status == 200 and body["ok"] is True and body["channel"] == "xmpp", body
        await fleet.wait_for(
            lambda: fleet.counters[("xmpp_connection_request", "accepted")] == 1, 5
        )
    finally:
        await fleet.stop()
        await client.close()


async def test_an_xmpp_certificate_from_an_unknown_ca_is_refused_with_the_reason(
    start_acs: StartAcs,
    db_pool: asyncpg.Pool,
    unique_serial,
    xmpp_tls_server: tuple[prosody.Prosody, TestCa],
) -> None:
    server, _ca = xmpp_tls_server
    # TLS required, no ACS_XMPP_CA_FILE: the system's CAs, which never signed this one
    acs = await start_acs(**{**xmpp_settings(server), "xmpp_require_tls": True}, **CR)
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    fleet = Fleet(
        FleetConfig(
            acs_url=cwmp_url(acs), serial_prefix=unique_serial("XCA"), nat=True, timing=FAST
        )
    )
    await fleet.start()
    serial = next(iter(fleet.devices))
    dev = device_id(fleet.config.oui, fleet.config.product_class, serial)
    try:
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1, 15)

        async def refused() -> Any:
            _s, v = await client.call("GET", f"/devices/{dev}/connection-request")
            return v["xmppServer"] if v["xmppServer"]["reason"] != "not connected yet" else None

        state = await wait_until(refused, 10, "the ACS's first XMPP login attempt")
        assert state["connected"] is False and state["tls"] is False and state["logins"] == 0
        assert "certificate is not trusted" in state["reason"], state
        assert "ACS_XMPP_CA_FILE" in state["reason"]
    finally:
        await fleet.stop()
        await client.close()


async def test_the_stun_policy_lets_only_the_acs_jid_knock_over_xmpp(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial, xmpp_server: prosody.Prosody
) -> None:
    """With XMPP configured the shipped policy also sets ConnReqAllowedJabberIDs to the
    ACS's JID; the CPE then takes connectionRequest IQs from that JID only (K.2.2.2)."""
    acs = await start_acs(**xmpp_settings(xmpp_server), **CR)
    admin = Client(acs, await token(db_pool, "admin", unique_serial))
    prefix = unique_serial("XPOL")
    shipped = stun_policy(acs.settings.model_copy(update={"stun_port": acs.ports["stun"]}))
    values = {p["path"]: p["value"] for p in shipped["spec"]["parameters"]}
    assert values["ManagementServer.ConnReqAllowedJabberIDs"] == f"acs@{xmpp_server.domain}"
    without = acs.settings.model_copy(update={"xmpp_server": None})
    assert "ManagementServer.ConnReqAllowedJabberIDs" not in {
        p["path"] for p in stun_policy(without)["spec"]["parameters"]
    }
    policy = shipped | {
        "name": unique_serial("stun-xmpp-"),  # the database is shared: the shipped one may exist
        "enabled": True,
        "precondition": f'({shipped["precondition"]}) AND DeviceID.SerialNumber LIKE "{prefix}%"',
    }
    spec = policy.pop("spec")
    status, made = await admin.call("POST", "/policies", json=policy | spec)
    assert status == 201, made
    fleet, dev = await xmpp_device(acs, db_pool, admin, xmpp_server, prefix)
    requesters: list[XmppConnectionRequester] = []
    try:
        serial = next(iter(fleet.devices))
        cpe = fleet.devices[serial]
        ms = "Device.ManagementServer."
        await fleet.wait_for(
            lambda: cpe.tree.value(ms + "ConnReqAllowedJabberIDs") == f"acs@{xmpp_server.domain}",
            15,
        )
        await fleet.wait_for(lambda: not cpe.in_session, 15)
        xmpp_server.register("intruder", "intruder-secret")

        async def never(_wait_s: float) -> bool:
            return False

        async def knock_as(user: str, password: str) -> Any:
            r = XmppConnectionRequester(
                xmpp_server.address, f"{user}@{xmpp_server.domain}", password, require_tls=False
            )
            requesters.append(r)
            r.start()
            await asyncio.wait_for(r.ready.wait(), 10)
            jid = fleet.xmpp[serial].client.boundjid.full  # type: ignore[union-attr]
            return await r.send(jid, "cr", "cr-secret", never, 5.0)

        # the right credentials from a JID the CPE does not allow: refused
        other = await knock_as("intruder", "intruder-secret")
        assert other.ok is False and other.outcome == "refused", other
        assert "service-unavailable" in other.reason
        assert fleet.counters[("xmpp_connection_request", "not_allowed")] == 1
        # the ACS's JID (another resource of it): accepted
        ours = await knock_as("acs", ACS_PASSWORD)
        assert ours.ok is True and ours.outcome == "accepted", ours
        assert fleet.counters[("xmpp_connection_request", "accepted")] == 1
    finally:
        for r in requesters:
            await r.close()
        await fleet.stop()
        await admin.close()
