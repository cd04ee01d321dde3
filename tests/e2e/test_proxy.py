"""Behind a reverse proxy: X-Forwarded-For/-Proto believed only from ACS_TRUSTED_PROXIES.

The test client connects from 127.0.0.1, so an ACS that trusts 127.0.0.1 sees
it as a proxy, and one that does not sees it as a CPE spoofing the headers.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.cwmp.soap import Envelope, serialize_envelope
from acs.web.server import Running
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble, Reply
from tests.e2e.test_api import Client, dev_id_of, token

pytestmark = pytest.mark.db


async def inform_with(cpe: CpeDouble, headers: dict[str, str]) -> Reply:
    envelope = Envelope(body=cpe.inform_message(["1 BOOT"]), cwmp_id="1", cwmp_ns=cpe.cwmp_ns)
    return await cpe.post_raw(serialize_envelope(envelope), headers)


async def remote_address_after(
    acs: Running, pool: asyncpg.Pool, unique_serial: Any, headers: dict[str, str]
) -> tuple[str | None, Reply]:
    """The address the ACS stored for a CPE whose Inform carried ``headers``."""
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    viewer = Client(acs, await token(pool, "viewer", unique_serial))
    try:
        reply = await inform_with(cpe, headers)
        assert reply.status == 200, reply.body
        status, device = await viewer.call("GET", f"/devices/{dev_id_of(cpe)}")
        assert status == 200, device
        return device["remoteAddress"], reply
    finally:
        await viewer.close()
        await cpe.close()


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs()  # no trusted proxies
    spoofed = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    address, reply = await remote_address_after(acs, db_pool, unique_serial, spoofed)
    assert address == "127.0.0.1"
    assert "Secure" not in reply.headers["Set-Cookie"]


async def test_a_trusted_proxy_names_the_client(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(trusted_proxies="127.0.0.1")
    address, reply = await remote_address_after(
        acs,
        db_pool,
        unique_serial,
        {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
    )
    assert address == "203.0.113.7"
    # the CPE spoke https to the proxy: its session cookie must never go out in clear
    assert "Secure" in reply.headers["Set-Cookie"]
    # a client that put its own X-Forwarded-For in front: only what the proxy appended counts
    address, _ = await remote_address_after(
        acs, db_pool, unique_serial, {"X-Forwarded-For": "10.9.9.9, 198.51.100.20"}
    )
    assert address == "198.51.100.20"
    # garbage where an address should be: the proxy's own address, not the garbage
    address, _ = await remote_address_after(
        acs, db_pool, unique_serial, {"X-Forwarded-For": "<script>"}
    )
    assert address == "127.0.0.1"


async def test_a_chain_of_trusted_proxies_is_walked_back_to_the_client(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(trusted_proxies="127.0.0.1, 10.0.0.0/8")
    # client -> edge proxy 10.1.2.3 -> our 127.0.0.1 hop
    address, _ = await remote_address_after(
        acs, db_pool, unique_serial, {"X-Forwarded-For": "198.51.100.9, 10.1.2.3"}
    )
    assert address == "198.51.100.9"
    # IPv6 clients, as proxies write them
    address, _ = await remote_address_after(
        acs, db_pool, unique_serial, {"X-Forwarded-For": "[2001:db8::5]:51000"}
    )
    assert address == "2001:db8::5"


async def test_sessions_of_clients_behind_one_proxy_stay_apart(
    start_acs: StartAcs, unique_serial
) -> None:
    """The ACS finds a cookie-less POST's session by the client's address when there
    is exactly one session from it; behind a proxy that must be the client's address,
    not the proxy's, or two CPEs behind it would take each other's sessions."""
    acs = await start_acs(trusted_proxies="127.0.0.1")
    one = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        opened = await inform_with(one, {"X-Forwarded-For": "198.51.100.1"})
        assert opened.status == 200
        # another CPE, another address, without a cookie: not one's session
        other = CpeDouble(cwmp_url(acs), unique_serial())
        try:
            reply = await other.post_raw(b"", {"X-Forwarded-For": "198.51.100.2"})
            assert reply.status == 400
            assert isinstance(reply.message, m.Fault) and reply.message.fault_code == 8003
        finally:
            await other.close()
        # one's session went on untouched: its own empty POST (by cookie) gets the
        # discovery of its still unknown tree
        mine = await one.post(None)
        assert mine.status == 200 and isinstance(mine.message, m.GetParameterNames)
    finally:
        await one.close()


async def test_cookieless_cpes_sharing_the_proxys_connection_keep_their_own_sessions(
    start_acs: StartAcs, unique_serial
) -> None:
    """A proxy reuses one upstream connection for many CPEs: the connection must not
    pick the session; the forwarded address does, for CPEs that ignore cookies."""
    acs = await start_acs(trusted_proxies="127.0.0.1")
    known, fresh = (CpeDouble(cwmp_url(acs), unique_serial()) for _ in range(2))
    # one upstream connection, no cookies: what the ACS sees of two such CPEs behind nginx
    upstream = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), cookie_jar=aiohttp.DummyCookieJar()
    )
    try:
        await known.session(["0 BOOTSTRAP", "1 BOOT"])  # its tree is learnt: nothing left to do
        for cpe in (known, fresh):
            await cpe.http.close()
            cpe.http = upstream
        assert (await inform_with(known, {"X-Forwarded-For": "198.51.100.1"})).status == 200
        assert (await inform_with(fresh, {"X-Forwarded-For": "198.51.100.2"})).status == 200
        # known's empty POST arrives on the connection fresh's Inform used last: it
        # must end known's session, not ask for fresh's discovery
        done = await known.post_raw(b"", {"X-Forwarded-For": "198.51.100.1"})
        assert done.status == 204, done.body[:200]
        discovery = await fresh.post_raw(b"", {"X-Forwarded-For": "198.51.100.2"})
        assert discovery.status == 200
        assert isinstance(discovery.message, m.GetParameterNames)
    finally:
        await upstream.close()
