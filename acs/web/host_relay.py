"""Hosts of a cluster handing CWMP requests to the host that owns the session, over TCP.

The same idea as the worker relay (acs/web/relay.py), one level up: behind a
load balancer without affinity, a POST of a session may reach another host
than the one whose Inform opened it, and that session's live state is in the
owner's memory. So:

- a session id starts with its host's id (``<host id>~<worker id>``); the
  device lock row in PostgreSQL holds it, so the owner of any live session is
  known; ``cluster_hosts`` says where each host's relay listener is
  (``ACS_RELAY_URL``);
- a host getting a request whose cookie, or whose address (a CPE without a
  cookie), names another host's session forwards it there and returns the
  owner's answer as its own;
- the relay listener (``ACS_RELAY_LISTEN``) takes only requests signed with the
  cluster's secret (acs/core/relay_auth.py: HMAC over the whole request, a
  timestamp and a nonce never accepted twice); anything else is refused with
  403 and logged. Its answers are signed too, and a relaying host refuses an
  unsigned or badly signed answer.

A host that is gone took its sessions with it: the forward fails to connect,
the request goes on as if no session had been found (the CPE's next Inform
opens a new session on a living host once the dead session's lease has run
out, ``ACS_SESSION_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote, unquote

import aiohttp
import asyncpg
from aiohttp import web
from multidict import CIMultiDict

from acs.core import relay_auth
from acs.logs import log
from acs.metrics import Metrics
from acs.store import cluster
from acs.store.db import UNAVAILABLE
from acs.web.proxy import CLIENT, Client, client_address, client_scheme
from acs.web.relay import (
    _NOT_FORWARDED,
    CLIENT_HEADER,
    HOST_RELAYED,
    RETRY_AFTER_S,
    SCHEME_HEADER,
    USER_HEADER,
    supersede_handler,
)

logger = logging.getLogger("acs.host_relay")

SEP = "~"
SUPERSEDE_PATH = "/_host/supersede"
DATE_HEADER = "X-ACS-Cluster-Date"
NONCE_HEADER = "X-ACS-Cluster-Nonce"
SIGNATURE_HEADER = "X-ACS-Cluster-Signature"
_SIGNED = frozenset(h.lower() for h in (DATE_HEADER, NONCE_HEADER, SIGNATURE_HEADER))
_URL_CACHE_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (session id, device id, verified CPE username) -> whether the owner ended it
Supersede = Callable[[str, str, str | None], Awaitable[bool]]


def shared_secret(cluster_secret: str) -> bytes:
    """What the workers of one host share (relay.Workers.secret), the same on every host."""
    return hashlib.sha256(b"acs cluster shared secret\n" + cluster_secret.encode()).digest()


def host_id_of(host_name: str) -> str:
    """A short id for session ids and cookies, whatever characters the host name has."""
    return hashlib.sha256(host_name.encode()).hexdigest()[:10]


def _carried(client: str, scheme: str, user: str | None) -> tuple[str, ...]:
    return (client, scheme, "" if user is None else user)


class HostRelay:
    def __init__(
        self,
        host_name: str,
        cluster_secret: str,
        relay_url: str | None,
        pool: asyncpg.Pool,
        metrics: Metrics,
    ) -> None:
        self.host_name = host_name
        self.host_id = host_id_of(host_name)
        self.key = relay_auth.key_of(cluster_secret)
        self.relay_url = relay_url
        self.pool = pool
        self.metrics = metrics
        self._urls: dict[str, tuple[float, str | None]] = {}
        self._client: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        # cookies and Digest nonces must verify on every host: keyed from the cluster secret
        self.shared_secret = shared_secret(cluster_secret)

    # ------------------------------------------------------------ session ids

    def new_session_id(self, session_id: str) -> str:
        return f"{self.host_id}{SEP}{session_id}"

    def foreign_host(self, session_id: str | None) -> str | None:
        """The other host owning this session, if its id names one."""
        if not session_id or SEP not in session_id:
            return None
        host = session_id.partition(SEP)[0]
        return host if host and host != self.host_id else None

    async def register(self) -> None:
        async with self.pool.acquire() as conn:
            await cluster.register_host(conn, self.host_id, self.host_name, self.relay_url)

    async def _url_of(self, host_id: str) -> str | None:
        cached = self._urls.get(host_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < _URL_CACHE_S:
            return cached[1]
        async with self.pool.acquire() as conn:
            url = await cluster.relay_url_of(conn, host_id)
        self._urls[host_id] = (now, url)
        return url

    # ------------------------------------------------------------ out: forwarding

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60, connect=5),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._client

    def signed_headers(
        self, method: str, path: str, body: bytes, client: str, scheme: str, user: str | None
    ) -> dict[str, str]:
        timestamp, nonce = int(time.time()), relay_auth.new_nonce()
        signature = relay_auth.sign_request(
            self.key, method, path, body, timestamp, nonce, _carried(client, scheme, user)
        )
        headers = {
            CLIENT_HEADER: client,
            SCHEME_HEADER: scheme,
            DATE_HEADER: str(timestamp),
            NONCE_HEADER: nonce,
            SIGNATURE_HEADER: signature,
        }
        if user is not None:
            headers[USER_HEADER] = quote(user, safe="")
        return headers

    async def forward(
        self,
        host_id: str,
        request: web.Request,
        body: bytes,
        reason: str,
        *,
        username: str | None = None,
    ) -> web.Response | None:
        """The owning host's answer; None when that host is not there (or unknown)."""
        try:
            base = await self._url_of(host_id)
        except UNAVAILABLE:
            base = None
        if base is None:
            log(logger, logging.WARNING, "host_relay_owner_unknown", owner=host_id)
            return None
        headers = CIMultiDict(
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in _NOT_FORWARDED and k.lower() not in _SIGNED
        )
        path = str(request.rel_url)
        client = client_address(request) or ""
        signed = self.signed_headers("POST", path, body, client, client_scheme(request), username)
        headers.update(signed)
        try:
            async with self._http().post(
                base.rstrip("/") + path, data=body, headers=headers
            ) as resp:
                data = await resp.read()
                status = resp.status
                answer = CIMultiDict(
                    (k, v)
                    for k, v in resp.headers.items()
                    if k.lower() not in _NOT_FORWARDED and k.lower() not in _SIGNED
                )
                given = resp.headers.get(SIGNATURE_HEADER, "")
        except (aiohttp.ClientConnectorError, OSError) as exc:
            log(logger, logging.WARNING, "host_relay_owner_gone", owner=host_id, error=exc)
            return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            log(logger, logging.WARNING, "host_relay_failed", owner=host_id, error=repr(exc))
            return _unavailable("the host holding this session did not answer")
        expected = relay_auth.sign_answer(self.key, signed[NONCE_HEADER], status, data)
        if not relay_auth.verify(expected, given):
            # not a host of this cluster (a wrong URL, a different secret): nothing of
            # its answer reaches the CPE
            log(logger, logging.ERROR, "host_relay_answer_refused", owner=host_id, status=status)
            return _unavailable("the host holding this session answered unsigned")
        self.metrics.relay(f"host_{reason}")
        return web.Response(status=status, body=data or None, headers=answer)

    async def supersede(
        self, host_id: str, session_id: str, device_id: str, username: str | None
    ) -> bool:
        """Ask the owning host to end its session of this device, which a new Inform
        proves dead (acs/web/relay.py says why only the owner may); True when it did.
        A host that is gone or does not answer ended nothing: the lease runs out."""
        try:
            base = await self._url_of(host_id)
        except UNAVAILABLE:
            base = None
        if base is None:
            return False
        body = json.dumps({"session": session_id, "device": device_id, "username": username})
        data = body.encode()
        headers = self.signed_headers("POST", SUPERSEDE_PATH, data, "", "http", None)
        headers["Content-Type"] = "application/json"
        try:
            async with asyncio.timeout(10):
                async with self._http().post(
                    base.rstrip("/") + SUPERSEDE_PATH, data=data, headers=headers
                ) as resp:
                    answer = await resp.read()
                    status, given = resp.status, resp.headers.get(SIGNATURE_HEADER, "")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log(logger, logging.WARNING, "host_supersede_failed", owner=host_id, error=repr(exc))
            return False
        expected = relay_auth.sign_answer(self.key, headers[NONCE_HEADER], status, answer)
        if status != 200 or not relay_auth.verify(expected, given):
            log(logger, logging.WARNING, "host_supersede_failed", owner=host_id, status=status)
            return False
        try:
            doc = json.loads(answer)
        except ValueError:
            return False
        return isinstance(doc, dict) and doc.get("ended") is True

    # ------------------------------------------------------------ in: the relay listener

    def app(
        self, handle: Handler, max_body_bytes: int, supersede: Supersede | None = None
    ) -> web.Application:
        @web.middleware
        async def signed(request: web.Request, handler: Handler) -> web.StreamResponse:
            body = await request.read()
            refused = await self._refusal(request, body)
            if refused is not None:
                log(
                    logger,
                    logging.WARNING,
                    "host_relay_refused",
                    peer=request.remote,
                    reason=refused,
                )
                return web.Response(status=403, text=f"not a host of this cluster: {refused}\n")
            scheme = request.headers.get(SCHEME_HEADER, "http")
            request[CLIENT] = Client(
                request.headers.get(CLIENT_HEADER) or None,
                scheme if scheme in ("http", "https") else "http",
                proxied=True,
            )
            request[HOST_RELAYED] = True
            answer = await handler(request)
            assert isinstance(answer, web.Response)  # the CWMP endpoint answers whole bodies
            data = answer.body if isinstance(answer.body, bytes) else b""
            answer.headers[SIGNATURE_HEADER] = relay_auth.sign_answer(
                self.key, request.headers[NONCE_HEADER], answer.status, data
            )
            return answer

        app = web.Application(client_max_size=max_body_bytes, middlewares=[signed])
        # before the catch-all, which takes every other POST for a CWMP request
        app.router.add_post(SUPERSEDE_PATH, supersede_handler(supersede))
        app.router.add_post("/{tail:.*}", handle)
        return app

    async def _refusal(self, request: web.Request, body: bytes) -> str | None:
        """Why this request is not a signed, fresh, first-seen relay request; None if it is."""
        h = request.headers
        given, nonce, date = h.get(SIGNATURE_HEADER), h.get(NONCE_HEADER), h.get(DATE_HEADER)
        if not given or not nonce or not date or not date.isdigit() or len(nonce) > 64:
            return "unsigned"
        user = h.get(USER_HEADER)
        carried = _carried(
            h.get(CLIENT_HEADER, ""),
            h.get(SCHEME_HEADER, ""),
            None if user is None else unquote(user),
        )
        expected = relay_auth.sign_request(
            self.key, request.method, str(request.rel_url), body, int(date), nonce, carried
        )
        if not relay_auth.verify(expected, given):
            return "bad signature"
        if not relay_auth.fresh(int(date), time.time()):
            return "stale signature"
        try:
            async with self.pool.acquire() as conn:
                first = await cluster.remember_nonce(conn, nonce, relay_auth.WINDOW_S)
        except UNAVAILABLE:
            return "database unavailable"
        return None if first else "replayed nonce"

    async def listen(
        self,
        listen: str,
        handle: Handler,
        max_body_bytes: int,
        supersede: Supersede | None = None,
    ) -> int:
        host, _, port = listen.rpartition(":")
        self._runner = web.AppRunner(self.app(handle, max_body_bytes, supersede), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]") or "0.0.0.0", int(port), reuse_port=True)
        await site.start()
        bound: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return bound

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()


def _unavailable(text: str) -> web.Response:
    return web.Response(
        status=503, text=text + ", retry later\n", headers={"Retry-After": RETRY_AFTER_S}
    )
