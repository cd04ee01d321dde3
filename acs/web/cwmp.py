"""The CWMP endpoint: HTTP in, session machine and driver, HTTP out.

Rules that live here because they are about HTTP, not CWMP:
- a request joins a session only by proof: its cookie (signed: an HMAC of the
  session id, acs/web/session_cookie.py), else its TCP connection (CPEs that
  ignore cookies keep the connection alive; not behind a trusted proxy, whose
  connections carry many CPEs), else, for a CPE that sends no cookie and
  reconnects, valid credentials of the username that opened the session
  together with the CPE's address (the forwarded one behind a proxy), when
  exactly one live session there matches. With ACS_CPE_AUTH=none there are no
  credentials, and the address alone picks the single live session at it: any
  client at that address can then take it over. A new Inform always opens a
  new session;
- a CPE authenticates when it opens a session; later POSTs of that session
  are recognised by the session cookie/connection, else they authenticate;
- bad input gets a 4xx with a reason and a cwmp:Fault body, a busy device or
  database gets 8005/503 with Retry-After: never a 500;
- past ``max_sessions_per_worker`` sessions in flight a new Inform gets 503 with
  Retry-After before anything is read from or written to the database, so an
  overloaded process sheds new work instead of slowing every session down;
  likewise past ``max_sessions_per_address`` from one client address or
  ``max_sessions_per_credential`` under one CPE username (acs/core/admission.py);
- with several worker processes, a request for a session another worker owns
  is relayed there (acs/web/relay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import time
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from acs.config import Settings
from acs.core.admission import Admission, Limit, Ticket
from acs.core.session_log import Transcript
from acs.cwmp import messages as m
from acs.cwmp.bounds import InformOutOfBounds, check_inform
from acs.cwmp.session import (
    AcsSession,
    CpeRequestsDone,
    InformReceived,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    State,
    cwmp_version_of,
)
from acs.cwmp.soap import CwmpParseError, Envelope, parse_envelope, serialize_envelope
from acs.logs import log
from acs.metrics import (
    ABANDONED,
    COMPLETED,
    DB_UNAVAILABLE,
    LIMITED_ADDRESS,
    LIMITED_CREDENTIAL,
    OVERLOADED,
    REFUSED,
    REJECTED,
    Metrics,
)
from acs.services.session_driver import SUPERSEDED, LiveSession, SessionDriver, now, root_for
from acs.store import devices
from acs.store.db import UNAVAILABLE
from acs.store.ids import device_id as make_device_id
from acs.web.admission import claimed_username
from acs.web.cpe_auth import THROTTLED_TEXT, UNAUTHORIZED_TEXT, AuthResult, CpeAuthenticator
from acs.web.fota import FotaEndpoint
from acs.web.host_relay import HostRelay
from acs.web.proxy import client_address, client_scheme, via_proxy
from acs.web.relay import Relay, is_host_relayed, is_relayed, relayed_username, session_at
from acs.web.session_cookie import SessionCookies
from acs.web.tls import peer_subject

logger = logging.getLogger("acs.cwmp")

COOKIE = "acs_session"
XML = "text/xml; charset=utf-8"
RETRY_AFTER_S = "10"
# an overloaded worker tells each refused CPE a different time to come back, so
# that the refused do not all return in the same second
OVERLOAD_RETRY_AFTER_S = (10, 40)
DB_ERRORS = UNAVAILABLE
_FROM = {"address": "from this address", "credential": "with this credential"}


class CwmpEndpoint:
    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        authenticator: CpeAuthenticator,
        metrics: Metrics | None = None,
        relay: Relay | None = None,
        hosts: HostRelay | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.auth = authenticator
        self.metrics = metrics or Metrics()
        self.driver = SessionDriver(settings, pool, self.metrics)
        self.by_id: dict[str, LiveSession] = {}
        self.by_transport: dict[Any, str] = {}
        self.relay = relay  # None: the only worker, every session is ours
        self.hosts = hosts  # None: the only host (or hosts that do not relay)
        # workers (and hosts) share the secret, so a cookie one signed is good at all
        if hosts is not None:
            secret = hosts.shared_secret
        else:
            secret = relay.workers.secret if relay is not None else os.urandom(32)
        self.cookies = SessionCookies(secret)
        self._opening = 0  # Informs past the overload check, not yet in by_id
        assert settings.max_sessions_per_address and settings.max_sessions_per_credential
        self.admission = Admission(
            settings.max_sessions_per_address, settings.max_sessions_per_credential
        )
        self._tickets: dict[str, Ticket] = {}  # session id -> the slots it holds
        self._reaper: asyncio.Task[None] | None = None
        self.metrics.track_in_flight(lambda: len(self.by_id))

    # ------------------------------------------------------------ app wiring

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/", self.handle)
        # before the catch-all, which would take every POST for a CWMP message
        FotaEndpoint(self.settings, self.pool, self.auth).add_routes(app.router)
        app.router.add_post("/{tail:.*}", self.handle)
        app.on_startup.append(self._start_reaper)
        app.on_cleanup.append(self._stop)
        return app

    async def _start_reaper(self, _app: web.Application) -> None:
        self._reaper = asyncio.create_task(self._reap_forever())

    async def _stop(self, _app: web.Application) -> None:
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for live in list(self.by_id.values()):
            await self._drop(live, "ACS shutting down")

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.settings.session_timeout_s / 3))
            await self.reap()

    async def reap(self) -> None:
        """Abandon sessions idle past the session timeout (a CPE that went away)."""
        limit = time.monotonic() - self.settings.session_timeout_s
        for live in [s for s in self.by_id.values() if s.last_activity < limit and not s.busy]:
            try:
                await self._drop(live, "session timeout")
            except DB_ERRORS as exc:
                log(logger, logging.WARNING, "reap_failed", device=live.device_id, error=exc)

    # ------------------------------------------------------------ request handling

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received_at = now()
        remote = client_address(request)
        length = request.content_length
        too_large = "body exceeds the limit"
        if length is not None and length > self.settings.max_body_bytes:
            return self._reject(413, too_large, remote, self._find_session(request))
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject(413, too_large, remote, self._find_session(request))
        except (ConnectionError, asyncio.IncompleteReadError):
            return self._reject(400, "connection dropped while reading the body", remote)
        except RequestPayloadError as bad:  # a broken chunk or compression (acs/web/guard.py)
            # aiohttp's text is "400, message:\n  <reason>": the reason is the last line
            reason = str(bad).strip().splitlines()[-1].strip()
            if not reason.startswith("malformed body"):
                reason = f"malformed body: {reason}"
            return self._reject(400, reason, remote)

        if self.hosts is not None and not is_relayed(request) and not is_host_relayed(request):
            host = self.hosts.foreign_host(self._cookie_session(request))
            if host is not None:  # another host's session: its answer is ours
                answer = await self.hosts.forward(host, request, body, "cookie")
                if answer is not None:
                    return answer
        if self.relay is not None and not is_relayed(request):
            owner = self.relay.foreign_owner(self._cookie_session(request))
            if owner is not None:  # another worker's session: its answer is ours
                answer = await self.relay.forward(owner, request, body, "cookie")
                if answer is not None:
                    return answer
                # that worker is gone and its sessions with it: go on as if none

        try:
            envelope = parse_envelope(body)
        except CwmpParseError as bad:
            try:
                found = await self._locate(request, body)
            except DB_ERRORS:
                found = None  # the answer is a 400 either way
            if isinstance(found, web.StreamResponse):
                return found  # the owning worker dropped its session and answered
            live = found
            self._record_in(live, body, None, received_at)
            reply = self._fault_reply(
                400, bad.fault_code, bad.reason, bad.cwmp_ns, bad.cwmp_id, remote, live
            )
            if live is not None:
                # the answer is this 400 either way; with the database down the
                # session's lease simply expires and its job goes back to the queue
                with contextlib.suppress(*DB_ERRORS):
                    await self._drop(live, f"unparseable message: {bad.reason}")
            return reply

        is_inform = envelope is not None and isinstance(envelope.body, m.Inform)
        # An Inform always opens a new session; it ends the old one only when it
        # comes from the same client (cookie or connection), never a mere
        # neighbour behind the same address.
        live = self._find_session(request)
        try:
            if not is_inform and live is None:
                found = await self._locate(request, body)
                if isinstance(found, web.StreamResponse):
                    return found
                live = found
            if is_inform:
                assert envelope is not None
                return await self._inform(request, envelope, live, body, received_at)
            if live is None:
                return self._fault_reply(
                    400,
                    8003,
                    "no session: a CWMP session must start with Inform",
                    envelope.cwmp_ns if envelope else None,
                    envelope.cwmp_id if envelope else None,
                    remote,
                    None,
                )
            self._record_in(live, body, envelope, received_at)
            return await self._continue(live, envelope)
        except DB_ERRORS as exc:
            # An Inform has no session yet; the one found by its connection may be
            # another CPE's, sharing a pooled or proxied connection, and must live on.
            # Only a session's own request ends it here.
            owner = None if is_inform else live
            device = owner.device_id if owner else None
            if is_inform and envelope is not None and isinstance(envelope.body, m.Inform):
                ident = envelope.body.device_id
                device = make_device_id(ident.oui, ident.product_class, ident.serial_number)
            log(
                logger,
                logging.ERROR,
                "database_unavailable",
                remote=remote,
                error=repr(exc),
                device=device,
                session=owner.session_id if owner else None,  # a session cut mid-way
            )
            if owner is not None:
                self._forget(owner, DB_UNAVAILABLE)
            else:
                # an Inform's own attempt failed; a session found on its connection
                # is the same CPE's (already dropped) or another CPE's, which goes on
                self.metrics.session(DB_UNAVAILABLE)
            return web.Response(
                status=503,
                text="database unavailable, retry later\n",
                headers={"Retry-After": RETRY_AFTER_S},
            )

    async def _inform(
        self,
        request: web.Request,
        envelope: Envelope,
        previous: LiveSession | None,
        body: bytes,
        received_at: datetime,
    ) -> web.StreamResponse:
        inform = envelope.body
        assert isinstance(inform, m.Inform)
        remote = client_address(request)
        ident = inform.device_id
        try:
            # before the device id is even built: nothing of a bad Inform is stored
            check_inform(inform)
        except InformOutOfBounds as bad:
            return self._fault_reply(
                400, 8003, bad.reason, envelope.cwmp_ns, envelope.cwmp_id, remote, None
            )
        dev_id = make_device_id(ident.oui, ident.product_class, ident.serial_number)
        replacing = previous is not None and previous.device_id == dev_id
        # a CPE starting over takes its old session's place: no more load
        if not replacing:
            if self.in_flight() >= self.settings.max_sessions_per_worker:
                return self._overloaded(dev_id, remote)
            # the claimed username, unverified: verifying may need the database
            limit = self.admission.refusal(
                remote, claimed_username(request.headers.get("Authorization"))
            )
            if limit is not None:
                return self._limited(limit, dev_id, remote)
        if previous is not None and replacing:
            # the same CPE starting over (it rebooted, or gave up on the old one);
            # a proxy or pooled connection may carry other CPEs' sessions too,
            # and those go on untouched
            await self._drop(previous, "new Inform opened a new session")
        ticket = self.admission.enter(remote)
        self._opening += 1
        try:
            return await self._open(request, envelope, body, received_at, dev_id, ticket)
        finally:
            self._opening -= 1
            if not ticket.kept:  # refused, failed or faulted: its slots are free again
                self.admission.leave(ticket)

    async def _supersede(self, dev_id: str, username: str | None) -> bool:
        """An authenticated Inform of a device whose lease is held: end the holder if
        it is dead, and say whether the lease is worth trying again.

        TR-069 allows one session per device at a time, so a new Inform while the
        old session waits on the CPE (the ACS answered and works on none of its
        requests) proves the CPE restarted: power loss, a crash, a new connection
        without the cookie. The old one is ended at once instead of costing the
        CPE 8005 until it times out. The lease row names the holder; another
        worker's is asked through the relay (only the owner knows whether it is
        busy, and it must write its log and give back its job itself)."""
        holder = await self.driver.lease_holder(dev_id)
        if holder is None:
            return True  # it ended meanwhile: the lease is free
        if self.hosts is not None and (host := self.hosts.foreign_host(holder)) is not None:
            return await self.hosts.supersede(host, holder, dev_id, username)
        return await self.supersede_here(holder, dev_id, username)

    async def supersede_here(self, holder: str, dev_id: str, username: str | None) -> bool:
        """End a session of this host (this worker's, or a sibling's over the relay)."""
        owner = self.relay.foreign_owner(holder) if self.relay is not None else None
        if owner is not None:
            assert self.relay is not None
            return await self.relay.supersede(owner, holder, dev_id, username)
        return await self.end_superseded(holder, dev_id, username)

    async def end_superseded(self, session_id: str, dev_id: str, username: str | None) -> bool:
        """End our session ``session_id`` for a new Inform of its device, as ``username``
        authenticated it; True when it was ended. Refused (False) when the session
        is not ours, of another device, opened under another CPE username (only
        the credential that opened it may end it: with a shared one, any holder),
        or busy: a request of it is being handled right now, so the CPE is alive
        and the new Inform is genuinely concurrent (8005)."""
        live = self.by_id.get(session_id)
        if live is None or live.device_id != dev_id or live.username != username or live.busy:
            return False
        log(
            logger,
            logging.INFO,
            "session_superseded",
            device=dev_id,
            session=session_id,
            remote=live.remote,
            job=live.work.task.id if live.work is not None and live.work.task else None,
        )
        # unreachable first: a late request of the dead session must not run in it
        self._forget(live, ABANDONED)
        try:
            await self.driver.close(live, abandoned=True, reason=SUPERSEDED, superseded=True)
        except DB_ERRORS as exc:
            # its lease stays until it expires, and its job with it: as before
            log(logger, logging.WARNING, "supersede_failed", device=dev_id, error=repr(exc))
            return False
        return True

    def in_flight(self) -> int:
        """Sessions this worker holds, counting Informs being admitted right now: a
        burst of Informs must not all pass the limit before the first is registered."""
        return len(self.by_id) + self._opening

    def _overloaded(self, dev_id: str, remote: str | None) -> web.Response:
        log(
            logger,
            logging.WARNING,
            "session_refused",
            device=dev_id,
            remote=remote,
            reason="overloaded",
            in_flight=self.in_flight(),  # what the limit was checked against
            limit=self.settings.max_sessions_per_worker,
        )
        self.metrics.session(OVERLOADED)
        return web.Response(
            status=503,
            text="too many sessions in progress, retry later\n",
            headers={"Retry-After": str(random.randint(*OVERLOAD_RETRY_AFTER_S))},
        )

    def _limited(self, limit: Limit, dev_id: str, remote: str | None) -> web.Response:
        """A client past its fair share: told to come back later, like an overload."""
        log(
            logger,
            logging.WARNING,
            "session_refused",
            device=dev_id,
            remote=remote,
            reason=f"{limit} limit",
            limit=(
                self.admission.per_address if limit == "address" else self.admission.per_credential
            ),
        )
        self.metrics.session(LIMITED_ADDRESS if limit == "address" else LIMITED_CREDENTIAL)
        return web.Response(
            status=503,
            text=f"too many sessions in progress {_FROM[limit]}, retry later\n",
            headers={"Retry-After": str(random.randint(*OVERLOAD_RETRY_AFTER_S))},
        )

    async def _open(
        self,
        request: web.Request,
        envelope: Envelope,
        body: bytes,
        received_at: datetime,
        dev_id: str,
        ticket: Ticket,
    ) -> web.StreamResponse:
        inform = envelope.body
        assert isinstance(inform, m.Inform)
        remote = client_address(request)
        ident = inform.device_id
        verdict = await self._authenticate(request)
        if not verdict.ok:
            return self._unauthorized(verdict, dev_id, remote)
        if verdict.device_id is not None and verdict.device_id != dev_id:
            log(
                logger,
                logging.WARNING,
                "cpe_auth_failed",
                device=dev_id,
                remote=remote,
                username=verdict.username,
                reason=f"credential belongs to {verdict.device_id}",
            )
            return self._fault_reply(
                403,
                8001,
                "this credential belongs to another device",
                envelope.cwmp_ns,
                envelope.cwmp_id,
                remote,
                None,
            )
        # the verified username now: concurrent Informs claiming it may have
        # passed the first check together, only this one is exact
        if not self.admission.authenticate(ticket, verdict.username):
            return self._limited("credential", dev_id, remote)

        acs = AcsSession(id_prefix=secrets.token_hex(4))
        event = acs.receive(envelope)
        assert isinstance(event, InformReceived)
        session_id = secrets.token_urlsafe(18)
        if self.relay is not None:  # names its owner, for requests reaching another worker
            session_id = self.relay.new_session_id(session_id)
        if self.hosts is not None:  # and its host, for requests reaching another host
            session_id = self.hosts.new_session_id(session_id)
        events = [e.event_code for e in inform.events]
        record = devices.InformRecord(
            device_id=dev_id,
            manufacturer=ident.manufacturer,
            oui=ident.oui,
            product_class=ident.product_class,
            serial_number=ident.serial_number,
            events=events,
            remote_address=remote,
            cwmp_version=cwmp_version_of(envelope, acs.use_cwmp_version),
            parameters=inform.parameter_list,
            at=now(),
        )
        opened = await self.driver.open(record, session_id)
        if opened is None and await self._supersede(dev_id, verdict.username):
            opened = await self.driver.open(record, session_id)
        if opened is None:
            log(
                logger,
                logging.WARNING,
                "session_refused",
                device=dev_id,
                remote=remote,
                reason="another session of this device is in progress",
            )
            self.metrics.session(REFUSED)
            return self._reply(
                acs, m.Fault(8005, "Retry request: another session of this device is in progress")
            )
        may_have_tasks, in_campaign = opened.may_have_tasks, opened.in_campaign
        tree_unknown = opened.tree_unknown

        bootstrap = "0 BOOTSTRAP" in events
        live = LiveSession(
            session_id=session_id,
            device_id=dev_id,
            remote=remote,
            acs=acs,
            root=root_for(inform),
            needs_discovery=tree_unknown or (bootstrap and self.settings.discovery_on_bootstrap),
            may_have_tasks=may_have_tasks,
            in_campaign=in_campaign,
            campaign_member=in_campaign,
            events=events,
            username=verdict.username,
            # unknown, or a bootstrap whose policies never ran to their end
            first_contact=tree_unknown or opened.bootstrap_owed,
        )
        if self.settings.session_log_per_device > 0:
            live.transcript = Transcript(
                self.settings.session_log_max_bytes, events=events, started_at=received_at
            )
            self._record_in(live, body, envelope, received_at)
        self.by_id[session_id] = live
        ticket.kept = True
        self._tickets[session_id] = ticket
        if request.transport is not None and not via_proxy(request):
            self.by_transport[request.transport] = session_id
            live.transports.add(request.transport)
        live.cwmp_version = record.cwmp_version
        live.cert = peer_subject(request.transport)
        log(
            logger,
            logging.DEBUG,
            "inform",
            device=dev_id,
            session=session_id,
            remote=remote,
            events=",".join(events),
            cwmp=record.cwmp_version,
            retry=inform.retry_count or None,
            cert=live.cert,
        )
        self.metrics.informed(events)
        resp = self._reply(acs, m.InformResponse(max_envelopes=1), live)
        # over TLS (here or at the proxy) the cookie must never travel in clear
        # written as the header itself: aiohttp's set_cookie builds a Morsel (9 us an
        # Inform here) for what is always this one line; the value (a session id of
        # token_urlsafe characters, "~", a base64url MAC) never needs quoting
        secure = "; Secure" if client_scheme(request) == "https" else ""
        resp.headers.add(
            "Set-Cookie", f"{COOKIE}={self.cookies.value_for(session_id)}; HttpOnly; Path=/{secure}"
        )
        return resp

    async def _continue(self, live: LiveSession, envelope: Envelope | None) -> web.StreamResponse:
        # the session timeout counts the CPE's silence, not our own work: a
        # request that waits long for the database (a boot storm) is not reaped
        live.busy += 1
        try:
            return await self._continue_busy(live, envelope)
        finally:
            live.busy -= 1
            live.last_activity = time.monotonic()

    async def _continue_busy(
        self, live: LiveSession, envelope: Envelope | None
    ) -> web.StreamResponse:
        try:
            event = live.acs.receive(envelope)
        except ProtocolError as broken:
            reply = self._fault_reply(
                400,
                8003,
                broken.reason,
                live.acs.cwmp_ns,
                envelope.cwmp_id if envelope else None,
                live.remote,
                live,
            )
            await self._drop(live, broken.reason)
            return reply
        if not await self.driver.keep_lock(live):
            reply = self._reply(live.acs, None, live)
            await self._drop(live, "device lock lost (session timed out)")
            return reply

        if isinstance(event, RequestReceived):
            following = await self.driver.answer_cpe_request(live, event.request)
        elif isinstance(event, CpeRequestsDone):
            following = await self.driver.next_request(live, None)
        else:
            assert isinstance(event, ResponseReceived)
            following = await self.driver.next_request(live, event.response)
        if live.session_id not in self.by_id or live.acs.state in (State.CLOSED, State.ERROR):
            # dropped while we worked (the same CPE started over with a new
            # Inform, or the reaper abandoned it and is still closing it: a
            # loaded machine): this request belongs to a session that no longer exists
            return self._reply(live.acs, None, live)
        if isinstance(event, RequestReceived):  # our answer to the CPE's request
            return self._reply(live.acs, following, live)
        if following is None:
            live.acs.send(None)  # the empty response that ends the session
            reply = self._reply(live.acs, None, live)  # recorded before the log is written
            await self.driver.close(live, abandoned=False)
            self._forget(live, COMPLETED)
            return reply
        return self._reply(live.acs, following, live)

    # ------------------------------------------------------------ helpers

    async def _locate(
        self, request: web.Request, body: bytes
    ) -> LiveSession | web.StreamResponse | None:
        """A request's session when neither a cookie nor its connection names one.

        A cookie this ACS did not sign is refused. A request with no cookie
        proves who it is with credentials (a 401 challenge when it brought none)
        and joins the single live session at its address that the same username
        opened; with ACS_CPE_AUTH=none, the single live session at its address.
        With several workers that session may be any worker's, and only
        PostgreSQL sees them all; this is the miss path, so neither the query nor
        the handshake costs anything to CPEs that keep a cookie or a connection.
        Returns the session, a response (a refusal, or the owning worker's
        answer), or None."""
        found = self._find_session(request)
        if found is not None:
            return found
        remote = client_address(request)
        sent = request.cookies.get(COOKIE)
        if sent is not None:
            if self._cookie_session(request) is not None:
                return None  # ours, of a session that is over: no session
            log(logger, logging.WARNING, "session_cookie_refused", remote=remote)
            self.metrics.session(REJECTED)
            return web.Response(
                status=403, text=f"cookie {COOKIE}: not a session cookie this ACS issued\n"
            )
        relayed = is_relayed(request)
        username: str | None = None
        bound: str | None = None  # the device a per-device credential speaks for
        if self.auth.mode != "none":
            if relayed or is_host_relayed(request):
                # the worker that took the request checked its credentials
                username = relayed_username(request)
                if username is None:
                    return None
            else:
                verdict = await self._authenticate(request)
                if not verdict.ok:
                    return self._unauthorized(verdict, None, remote)
                username, bound = verdict.username, verdict.device_id
        if (self.relay is None and self.hosts is None) or relayed:
            # one process sees every session; a relayed request was already found
            # to be unique at its address over all workers
            return self._at_address(remote, username)
        sid = await session_at(self.pool, remote, bound)
        if sid is None:
            return None
        if sid in self.by_id:
            return self._at_address(remote, username)
        if self.hosts is not None and (host := self.hosts.foreign_host(sid)) is not None:
            if is_host_relayed(request):
                return None  # the other host thought it ours: it is not, no ping-pong
            return await self.hosts.forward(host, request, body, "address", username=username)
        if self.relay is None or (owner := self.relay.foreign_owner(sid)) is None:
            return None  # ours by its name, but over (or from this worker's last life)
        return await self.relay.forward(owner, request, body, "address", username=username)

    def _at_address(self, remote: str | None, username: str | None) -> LiveSession | None:
        """The one live session at this address opened by this username (None: by
        nobody, authentication being off); None when there are none or several."""
        same = [s for s in self.by_id.values() if s.remote == remote and s.username == username]
        return same[0] if len(same) == 1 else None

    def _cookie_session(self, request: web.Request) -> str | None:
        """The session id the request's cookie was signed for; None without a good one."""
        value = request.cookies.get(COOKIE)
        return self.cookies.session_of(value) if value else None

    def _find_session(self, request: web.Request) -> LiveSession | None:
        """The session a request's cookie or connection proves it belongs to."""
        # a proxy's connection carries many CPEs' requests: it identifies none of them
        own_connection = request.transport is not None and not via_proxy(request)
        sid = self._cookie_session(request)
        if sid and sid in self.by_id:
            if own_connection:  # follow the session onto this connection
                self.by_transport[request.transport] = sid
                self.by_id[sid].transports.add(request.transport)
            return self.by_id[sid]
        sid = self.by_transport.get(request.transport) if own_connection else None
        if sid and sid in self.by_id:
            return self.by_id[sid]
        return None

    async def _authenticate(self, request: web.Request) -> AuthResult:
        return await self.auth.check(
            request.method,
            request.headers.get("Authorization"),
            request.raw_path,
            client_address(request),
        )

    def _unauthorized(
        self, verdict: AuthResult, dev_id: str | None, remote: str | None
    ) -> web.Response:
        """401 with the challenge (the same body whatever failed), or 503 while the
        username or address is refused after failed passwords."""
        if not verdict.first_leg:
            log(
                logger,
                logging.WARNING,
                "cpe_auth_failed",
                device=dev_id,
                remote=remote,
                username=verdict.username,
                reason=verdict.reason,
            )
            # the first 401 is the handshake's challenge; only a failed answer is an outcome
            self.metrics.session(REJECTED)
        if verdict.retry_after is not None:
            return web.Response(
                status=503, text=THROTTLED_TEXT, headers={"Retry-After": str(verdict.retry_after)}
            )
        resp = web.Response(status=401, text=UNAUTHORIZED_TEXT)
        for challenge in verdict.challenge:
            resp.headers.add("WWW-Authenticate", challenge)
        return resp

    def _forget(self, live: LiveSession, outcome: str) -> None:
        """The session is over: stop finding it, and count how it ended (once)."""
        if self.by_id.pop(live.session_id, None) is not None:
            self.metrics.session(outcome, time.monotonic() - live.started)
        ticket = self._tickets.pop(live.session_id, None)
        if ticket is not None:
            self.admission.leave(ticket)
        # only the connections this session used: scanning every connection of
        # every session was quadratic in a boot storm
        for transport in live.transports:
            if self.by_transport.get(transport) == live.session_id:
                del self.by_transport[transport]
        live.transports.clear()

    async def _drop(self, live: LiveSession, reason: str) -> None:
        try:
            await self.driver.close(live, abandoned=True, reason=reason)
        finally:
            self._forget(live, ABANDONED)

    @staticmethod
    def _record_in(
        live: LiveSession | None, body: bytes, envelope: Envelope | None, at: datetime
    ) -> None:
        if live is not None and live.transcript is not None:
            parsed = envelope.body if envelope is not None else None
            rpc = parsed.element_name if parsed is not None else None
            live.transcript.add("in", body, rpc=rpc, at=at, message=parsed)

    @staticmethod
    def _record_out(
        live: LiveSession | None, status: int, body: bytes, message: m.Message | None
    ) -> None:
        if live is not None and live.transcript is not None:
            rpc = message.element_name if message is not None else None
            live.transcript.add("out", body, status=status, rpc=rpc)

    def _reply(
        self, acs: AcsSession, message: m.Message | None, live: LiveSession | None = None
    ) -> web.Response:
        """The ACS's message in an HTTP response; None is the empty 204 that ends a session."""
        if message is None:
            self._record_out(live, 204, b"", None)
            return web.Response(status=204)
        envelope = acs.send(message)
        assert envelope is not None
        body = serialize_envelope(envelope)
        self._record_out(live, 200, body, message)
        return web.Response(body=body, content_type="text/xml", charset="utf-8")

    def _fault_reply(
        self,
        status: int,
        code: int,
        reason: str,
        ns: str | None,
        cwmp_id: str | None,
        remote: str | None,
        live: LiveSession | None,
    ) -> web.Response:
        log(
            logger,
            logging.WARNING,
            "cwmp_rejected",
            device=live.device_id if live else None,
            remote=remote,
            status=status,
            fault=code,
            reason=reason,
        )
        if live is None:  # a session that breaks is counted as abandoned when it is dropped
            self.metrics.session(REJECTED)
        fault = m.Fault(code, reason)
        envelope = Envelope(body=fault, cwmp_id=cwmp_id)
        if ns:
            envelope.cwmp_ns = ns
        body = serialize_envelope(envelope)
        self._record_out(live, status, body, fault)
        return web.Response(status=status, body=body, content_type="text/xml", charset="utf-8")

    def _reject(
        self, status: int, reason: str, remote: str | None, live: LiveSession | None = None
    ) -> web.Response:
        """A request refused before its body was read (or while reading it)."""
        log(
            logger,
            logging.WARNING,
            "cwmp_rejected",
            device=live.device_id if live else None,
            remote=remote,
            status=status,
            reason=reason,
        )
        self.metrics.session(REJECTED)
        if live is not None and live.transcript is not None:
            live.transcript.add("in", b"", note=f"body not read: {reason}")
        text = reason + "\n"
        self._record_out(live, status, text.encode(), None)
        return web.Response(status=status, text=text)
