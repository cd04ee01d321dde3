"""XMPP connection requests (TR-069 Annex K): the ACS's one XMPP connection.

The ACS logs in to the operator's XMPP server as ACS_XMPP_JID and keeps that
one connection (slixmpp) for the whole process. A knock sends the device's
ConnReqJabberID the connectionRequest IQ (acs.connreq.xmpp builds it and
reads the answer) and waits for the answer inside its share of the timeout.

An IQ "result" counts as accepted, as HTTP's 200/204 does: it is the CPE's
word, after checking the credentials, that it will open a session; the job
waiter behind the knock then waits for that session as it does after an HTTP
knock. If no answer comes in time but the device has opened its session with
"6 CONNECTION REQUEST" meanwhile (the answer lost on the way), that counts too.

When the server is down or refuses our login, a supervisor task retries with
back-off (0.5 s doubling to 30 s); a knock meanwhile fails at once with the
reason, instead of waiting for its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

from acs.connreq import xmpp
from acs.connreq.http import ConnectionRequestResult
from acs.metrics import Metrics

logger = logging.getLogger("acs.connreq.xmpp")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
LOGIN_WAIT_S = 10.0

Arrived = Callable[[float], Awaitable[bool]]  # as acs.connreq.udp_sender's


_UNTRUSTED = "the XMPP server's certificate is not trusted (ACS_XMPP_CA_FILE)"


class _Client(slixmpp.ClientXMPP):
    def __init__(
        self, jid: str, password: str, *, require_tls: bool = True, ca_file: Path | None = None
    ) -> None:
        super().__init__(jid, password)
        self.enable_direct_tls = False  # STARTTLS on the c2s port (RFC 6120 5)
        if ca_file is not None:
            self.ca_certs = ca_file  # else the system's CAs; the name checked is the JID's domain
        self.enable_plaintext = not require_tls
        # SCRAM needs no TLS to keep the password secret; without TLS the rest is in clear
        self.plugin["feature_mechanisms"].unencrypted_scram = not require_tls
        self.outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.add_event_handler("session_start", self._started)
        self.require_tls = require_tls
        self.add_event_handler("failed_all_auth", self._no_login)
        self.add_event_handler("ssl_invalid_chain", self._untrusted)
        self.add_event_handler("connection_failed", lambda e: self._ended(f"cannot connect: {e}"))
        self.add_event_handler("disconnected", self._disconnected)
        self.gone: asyncio.Event = asyncio.Event()

    def _no_login(self, _event: object) -> None:
        if self.require_tls and not _secure(self):
            # SASL over a plain stream is off with TLS required: no mechanism was left
            self._ended("the XMPP server offered no STARTTLS (ACS_XMPP_REQUIRE_TLS=true)")
        else:
            self._ended("login refused (ACS_XMPP_JID/ACS_XMPP_PASSWORD)")

    def _untrusted(self, err: object) -> None:
        # handling the event replaces slixmpp's own disconnect: we end it, with the reason
        self._ended(f"disconnected: {_UNTRUSTED} ({err})")
        self.abort()

    def _disconnected(self, err: object) -> None:
        # a failed handshake closes the transport before start_tls returns: this comes first
        if isinstance(err, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(err):
            self._ended(f"disconnected: {_UNTRUSTED} ({err})")
        self._ended(f"disconnected: {err}")

    async def _started(self, _event: object) -> None:
        self.send_presence()  # available, so servers route IQs to this resource
        if not self.outcome.done():
            self.outcome.set_result(None)

    def _ended(self, why: str) -> None:
        if not self.outcome.done():
            self.outcome.set_result(why)
        if why.startswith("disconnected"):
            self.gone.set()


class XmppConnectionRequester:
    def __init__(
        self,
        server: str,
        jid: str,
        password: str,
        *,
        require_tls: bool = True,
        ca_file: Path | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.host, self.port = xmpp.split_server(server)
        self.jid, self._password = jid, password
        self.require_tls, self.ca_file = require_tls, ca_file
        self.metrics = metrics or Metrics()
        self.client: _Client | None = None  # logged in now; None while down
        self.last_error = "not connected yet"
        self.connects = 0  # successful logins, reconnections included
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.ready = asyncio.Event()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def status(self) -> dict[str, object]:
        """For operators: where, as whom, whether logged in now, and if not why."""
        up = self.client is not None
        return {
            "server": self.where,
            "jid": self.jid,
            "connected": up,
            "tls": self.client is not None and _secure(self.client),
            "reason": None if up else self.last_error,
            "logins": self.connects,
        }

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(wait=0.5), 2)
            client.abort()

    async def _supervise(self) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._closing:
            client = _Client(
                self.jid, self._password, require_tls=self.require_tls, ca_file=self.ca_file
            )
            try:
                client.connect(self.host, self.port)
                try:
                    why = await asyncio.wait_for(asyncio.shield(client.outcome), LOGIN_WAIT_S)
                except TimeoutError:
                    why = f"no login within {LOGIN_WAIT_S:g} s"
                if why is None and self.require_tls and not _secure(client):
                    why = "the XMPP server offered no TLS (ACS_XMPP_REQUIRE_TLS)"
                if why is None:
                    self.client = client
                    self.connects += 1
                    self.ready.set()
                    backoff = FIRST_BACKOFF_S
                    logger.info("xmpp_connected server=%s jid=%s", self.where, client.boundjid)
                    await client.gone.wait()
                    why = "connection lost"
                self.client = None
                self.ready.clear()
                self.last_error = why
                logger.warning("xmpp_down server=%s reason=%s", self.where, why)
            finally:
                client.cancel_connection_attempt()
                client.abort()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def send(
        self,
        jid: str,
        username: str,
        password: str,
        arrived: Arrived,
        timeout_s: float,
    ) -> ConnectionRequestResult:
        result = await self._send(jid, username, password, arrived, timeout_s)
        self.metrics.connection_request(result.outcome)
        return result

    async def _send(
        self, jid: str, username: str, password: str, arrived: Arrived, timeout_s: float
    ) -> ConnectionRequestResult:
        start = time.monotonic()

        def result(ok: bool, reason: str, outcome: str) -> ConnectionRequestResult:
            return ConnectionRequestResult(
                ok, None, reason, round(time.monotonic() - start, 3), outcome
            )

        client = self.client
        if client is None:
            return result(
                False,
                f"not connected to the XMPP server {self.where} ({self.last_error})",
                "unreachable",
            )
        if not xmpp.is_full_jid(jid):
            return result(False, f"ConnReqJabberID {jid!r} is not a full JID", "invalid_url")
        iq = client.make_iq_get(ito=jid)
        iq.append(xmpp.connection_request(username, password))
        try:
            answer = await iq.send(timeout=max(timeout_s, 0.05))
        except IqError as err:
            a = xmpp.answer("error", err.iq.xml.find("{jabber:client}error"))
        except IqTimeout:
            if await arrived(0):  # what the ACS's watcher has seen meanwhile
                return result(True, "session opened (no IQ answer in time)", "accepted")
            return result(False, f"timeout after {timeout_s:.1f} s: no IQ answer", "timeout")
        else:
            a = xmpp.answer(answer["type"])
        return result(a.ok, a.reason, a.outcome)


def _secure(client: _Client) -> bool:
    transport = client.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None
