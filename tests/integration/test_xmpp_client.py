"""The ACS's XMPP connection (acs.connreq.xmpp_client) against a real prosody on loopback:
what a knock reports when the CPE's JID stays silent, is not logged in, or is malformed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from acs.connreq import xmpp
from acs.connreq.xmpp_client import XmppConnectionRequester
from tests.e2e import prosody

pytestmark = pytest.mark.skipif(not prosody.installed(), reason=prosody.SKIP_REASON)


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[prosody.Prosody]:
    p = prosody.Prosody(tmp_path)
    p.register("acs", "acs-pw")
    p.register("silent", "cpe-pw")
    try:
        p.start()
        yield p
    finally:
        p.stop()


async def _silent_cpe(p: prosody.Prosody, seen: list[xmpp.ConnReq]) -> slixmpp.ClientXMPP:
    """A CPE that reads the request and never answers it."""
    c = slixmpp.ClientXMPP(f"silent@{p.domain}/cwmp", "cpe-pw")
    c.enable_plaintext, c.enable_direct_tls = True, False
    c.plugin["feature_mechanisms"].unencrypted_scram = True
    up = asyncio.Event()

    async def started(_e: object) -> None:
        c.send_presence()
        up.set()

    c.add_event_handler("session_start", started)
    c.register_handler(
        Callback(
            "cr",
            MatchXPath(f"{{jabber:client}}iq/{{{xmpp.NS}}}connectionRequest"),
            lambda iq: seen.append(xmpp.parse_connection_request(iq.xml.find(xmpp.TAG))),
        )
    )
    c.connect("127.0.0.1", p.port)
    await asyncio.wait_for(up.wait(), 10)
    return c


async def test_silence_is_a_timeout_unless_the_session_came(server: prosody.Prosody) -> None:
    acs = XmppConnectionRequester(
        server.address, f"acs@{server.domain}", "acs-pw", require_tls=False
    )
    acs.start()
    seen: list[xmpp.ConnReq] = []
    cpe = await _silent_cpe(server, seen)
    try:
        await asyncio.wait_for(acs.ready.wait(), 10)
        target = f"silent@{server.domain}/cwmp"

        # the knock's arrival check, as the watcher gives it (a wait of up to so long)
        async def no_session(_wait_s: float) -> bool:
            return False

        async def session_came(_wait_s: float) -> bool:
            return True

        r = await acs.send(target, "cr", "pw", no_session, 0.5)
        assert (r.ok, r.outcome) == (False, "timeout") and "no IQ answer" in r.reason
        assert 0.45 <= r.elapsed_s < 1.5
        assert seen == [xmpp.ConnReq("cr", "pw")]  # it did arrive, with the credentials
        r = await acs.send(target, "cr", "pw", session_came, 0.5)
        assert (r.ok, r.outcome) == (True, "accepted") and "session opened" in r.reason

        # nobody logged in under that resource: the server answers for it, at once
        r = await acs.send(f"silent@{server.domain}/elsewhere", "cr", "pw", no_session, 3)
        assert (r.ok, r.outcome) == (False, "refused") and r.elapsed_s < 1.0
        assert r.reason.startswith("IQ error service-unavailable")
        # a bare JID is not what Annex K sends to
        r = await acs.send(f"silent@{server.domain}", "cr", "pw", no_session, 3)
        assert (r.ok, r.outcome) == (False, "invalid_url") and "not a full JID" in r.reason
    finally:
        cpe.abort()
        await acs.close()


async def test_a_wrong_acs_password_is_named(server: prosody.Prosody) -> None:
    acs = XmppConnectionRequester(
        server.address, f"acs@{server.domain}", "wrong", require_tls=False
    )
    acs.start()
    try:
        for _ in range(100):
            if acs.last_error != "not connected yet":
                break
            await asyncio.sleep(0.05)
        assert acs.last_error.startswith("login refused"), acs.last_error
        assert acs.status()["connected"] is False and acs.connects == 0

        async def never(_wait_s: float) -> bool:
            raise AssertionError("a knock without a connection must not wait for a session")

        r = await acs.send(f"silent@{server.domain}/cwmp", "cr", "pw", never, 3)
        assert (r.ok, r.outcome) == (False, "unreachable") and r.elapsed_s < 0.1
        assert "login refused" in r.reason
    finally:
        await acs.close()
