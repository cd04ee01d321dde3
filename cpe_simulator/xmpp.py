"""A CPE's XMPP side (TR-069 Annex K): logged in, answering connection requests.

With ``--xmpp-server host:port --xmpp-domain d`` each simulated CPE logs in
as ``<serial>@d/cwmp`` (password ``--xmpp-password``; the accounts exist on
the server), reports that full JID as ManagementServer.ConnReqJabberID, and
answers the ACS's connectionRequest IQ as K.2.2.2 asks: wrong
ConnectionRequestUsername/Password -> IQ error not-authorized; a sender not in
ConnReqAllowedJabberIDs (when that list is set) or past the CPE's rate limit
-> service-unavailable; otherwise an IQ result, then a session with
"6 CONNECTION REQUEST". A lost connection is retried with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from acs.connreq import xmpp

if TYPE_CHECKING:
    from cpe_simulator.cpe import SimulatedCpe
    from cpe_simulator.fleet import Fleet

RESOURCE = "cwmp"
FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 4.0


class XmppAgent:
    """One device's XMPP client."""

    def __init__(
        self, fleet: Fleet, cpe: SimulatedCpe, server: tuple[str, int], domain: str, password: str
    ) -> None:
        self.fleet, self.cpe = fleet, cpe
        self.server, self.password = server, password
        self.jid = f"{cpe.serial.lower()}@{domain}/{RESOURCE}"
        self.client: slixmpp.ClientXMPP | None = None
        self.online = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _param(self, name: str) -> str:
        return self.cpe.tree.value(f"{self.cpe.tree.root}ManagementServer.{name}")

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self.fleet.closing:
            if await self._connection():
                backoff = FIRST_BACKOFF_S
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _connection(self) -> bool:
        """One login and the connection's life; whether it got online."""
        client = slixmpp.ClientXMPP(self.jid, self.password)
        client.enable_direct_tls = False
        client.enable_plaintext = True  # STARTTLS when offered; SCRAM in any case
        client.plugin["feature_mechanisms"].unencrypted_scram = True
        if self.fleet.config.ca_file:  # one trust store, as a CPE has: the ACS's and XMPP's
            client.ca_certs = Path(self.fleet.config.ca_file)
        ended: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        gone = asyncio.Event()

        async def started(_e: object) -> None:
            client.send_presence()
            bound = str(client.boundjid)
            if self._param("ConnReqJabberID") != bound:
                root = f"{self.cpe.tree.root}ManagementServer."
                self.fleet.change_value(self.cpe.serial, root + "ConnReqJabberID", bound)
            if not ended.done():
                ended.set_result(True)

        def failed(_e: object) -> None:
            if not ended.done():
                ended.set_result(False)
            gone.set()

        client.add_event_handler("session_start", started)
        for event in ("failed_all_auth", "connection_failed", "disconnected"):
            client.add_event_handler(event, failed)
        client.register_handler(
            Callback(
                "connectionRequest",
                MatchXPath(f"{{jabber:client}}iq/{{{xmpp.NS}}}connectionRequest"),
                self._request,
            )
        )
        try:
            client.connect(*self.server)
            try:
                ok = await asyncio.wait_for(ended, 10)
            except TimeoutError:
                ok = False
            if ok:
                self.client = client
                self.online.set()
                self.fleet.count("xmpp", "online")
                await gone.wait()
            self.fleet.count("xmpp", "offline")
            return ok
        finally:
            self.client = None
            self.online.clear()
            client.cancel_connection_attempt()
            client.abort()

    def _request(self, iq: slixmpp.Iq) -> None:
        cpe, tree = self.cpe, self.cpe.tree
        if iq["type"] != "get":
            return
        try:
            req = xmpp.parse_connection_request(iq.xml.find(xmpp.TAG))
        except xmpp.XmppRequestError as err:
            self._refuse(iq, "bad-request", str(err), "malformed")
            return
        if not xmpp.credentials_match(
            req, tree.connection_request_username, tree.connection_request_password
        ):
            self._refuse(iq, "not-authorized", None, "not_authorized")
            return
        allowed = [
            j.strip() for j in self._param("ConnReqAllowedJabberIDs").split(",") if j.strip()
        ]
        if allowed and iq["from"].bare not in allowed:
            self._refuse(iq, "service-unavailable", None, "not_allowed")
            return
        if cpe.state != "up" or not self.fleet.cr_server.admit(cpe.serial):
            self._refuse(iq, "service-unavailable", None, "rate_limited")
            return
        iq.reply(clear=True).send()
        self.fleet.count("xmpp_connection_request", "accepted")
        cpe.add_event("6 CONNECTION REQUEST")
        if not cpe.in_session:
            self.fleet.wake(cpe)

    def _refuse(self, iq: slixmpp.Iq, condition: str, text: str | None, counted: str) -> None:
        reply = iq.reply(clear=True)
        reply["error"]["type"] = "cancel" if condition != "bad-request" else "modify"
        reply["error"]["condition"] = condition
        if text:
            reply["error"]["text"] = text
        reply.send()
        self.fleet.count("xmpp_connection_request", counted)
