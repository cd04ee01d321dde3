"""Worker processes handing CWMP requests to the worker that owns the session.

With ``ACS_WORKERS`` > 1 the kernel (SO_REUSEPORT) spreads TCP *connections*
over the worker processes. A CPE that keeps its connection for the whole
session stays on one worker; but TR-069 lets a CPE open a new connection for
any POST of a session (it then relies on the cookie, or on nothing), and a
keep-alive pool shared by many CPEs (a proxy, the simulator) mixes sessions
over connections. A session's live state (the sans-IO machine, the driver's
plan, the transcript) is in the memory of the worker whose Inform opened it,
so a request must reach that worker:

- a session id, and so the cookie, starts with its owner's index (``"3.xyz"``);
  the device lock row in PostgreSQL holds the same id;
- each worker also listens on a private Unix socket in a 0700 directory of its
  own, and that listener takes only requests carrying the run's relay token
  (derived from the secret the parent hands every worker);
- a worker getting a request whose cookie names another worker forwards it
  there (body, headers, and who the client is) and returns the owner's answer
  as its own: the CPE never sees the hop;
- a CPE that sends no cookie, on a connection no session is bound to, is
  found by its credentials and its address, now across workers: the worker
  that took the request checks the credentials, PostgreSQL knows which live
  lock rows have that address (and that device, for a per-device credential),
  and so their owners; the owner is told which username authenticated, and
  joins the request to its session only if that username opened it. That
  query runs only on this miss path, never for a request a cookie or a
  connection identifies.

A new Inform of a device whose lease another worker holds asks that owner to
end the old session (``SUPERSEDE_PATH``): a CPE that restarted mid-session
(power loss, crash) comes back on a new connection, without its cookie, and
TR-069 allows one session at a time, so the old one is dead. Only the owner can
tell whether that session is idle (waiting on the CPE) or busy in a request
right now, and only it holds the job in flight and the transcript it must
close; taking the lease over in PostgreSQL instead would leave the owner
writing a session that is no longer the device's. The owner answers whether it
ended the session; the new Inform then takes the free lease, else gets 8005.

The private listener also serves each worker's own metrics, so that /metrics
on any worker can answer for all of them (a scrape lands on a random worker).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import aiohttp
import asyncpg
from aiohttp import web
from multidict import CIMultiDict

from acs.logs import log
from acs.metrics import Metrics, merge_worker_metrics
from acs.store import sessions
from acs.web.proxy import CLIENT, Client, client_address, client_scheme

logger = logging.getLogger("acs.relay")

TOKEN_HEADER = "X-ACS-Relay-Token"
CLIENT_HEADER = "X-ACS-Relay-Client"
SCHEME_HEADER = "X-ACS-Relay-Scheme"
# the CPE username the relaying worker verified (percent-encoded); believed only
# on the private listener, behind the relay token
USER_HEADER = "X-ACS-Relay-Cpe-User"
METRICS_PATH = "/_worker/metrics"
SUPERSEDE_PATH = "/_worker/supersede"
# "do you hold this Digest nonce, and is this count new?" (acs/web/cpe_auth_state.py)
NONCE_PATH = "/_worker/nonce"
RELAYED = web.RequestKey("relayed", bool)
# set by another host's signed relay (acs/web/host_relay.py): its headers are believed
HOST_RELAYED = web.RequestKey("host_relayed", bool)
# hop-by-hop headers (RFC 9110 7.6.1) and those the next hop sets again itself
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
        "date",
        "server",
        TOKEN_HEADER.lower(),
        CLIENT_HEADER.lower(),
        SCHEME_HEADER.lower(),
        USER_HEADER.lower(),
    }
)
# a Unix socket path has at most 107 bytes on Linux
_MAX_SOCKET_PATH = 100
RETRY_AFTER_S = "10"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (session id, device id, verified CPE username) -> whether the owner ended it
Supersede = Callable[[str, str, str | None], Awaitable[bool]]
# (holder, nonce, nc) -> the holder's verdict; None: not that holder, or no such nonce
NonceCounts = Callable[[str, str, int], Awaitable[bool | None]]


def nonce_handler(counts: NonceCounts | None) -> Handler:
    """The holder's end of a sibling's question about a Digest nonce it holds."""

    async def count(request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read())
            holder, nonce, nc = doc["holder"], doc["nonce"], doc["nc"]
            if not (isinstance(holder, str) and isinstance(nonce, str) and type(nc) is int):
                raise TypeError("holder and nonce must be strings, nc an integer")
        except (ValueError, KeyError, TypeError) as bad:
            return web.Response(status=400, text=f"not a nonce question: {bad}\n")
        verdict = None if counts is None else await counts(holder, nonce, nc)
        return web.json_response({"verdict": verdict})

    return count


def supersede_handler(supersede: Supersede | None) -> Handler:
    """The owner's end of "end your session, its CPE has restarted": the same
    document whether another worker of this host or another host sends it."""

    async def end_superseded(request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read())
            session_id, device_id = doc["session"], doc["device"]
            username = doc.get("username")
            if not all(isinstance(v, str) for v in (session_id, device_id)) or not (
                username is None or isinstance(username, str)
            ):
                raise TypeError("session and device must be strings")
        except (ValueError, KeyError, TypeError) as bad:
            return web.Response(status=400, text=f"not a supersede request: {bad}\n")
        ended = supersede is not None and await supersede(session_id, device_id, username)
        return web.json_response({"ended": ended})

    return end_superseded


@dataclass(frozen=True, slots=True)
class Workers:
    """Who this worker is among its siblings, and what they share."""

    index: int
    count: int
    run_dir: Path  # the private sockets, one per worker
    secret: bytes  # the same in every worker: Digest nonces, the relay token

    def socket_path(self, index: int) -> Path:
        return self.run_dir / f"worker-{index}.sock"

    @property
    def relay_token(self) -> str:
        # not the secret itself: a token that leaked from a header must not sign nonces
        return hmac.new(self.secret, b"acs worker relay", hashlib.sha256).hexdigest()

    def session_id(self, token: str) -> str:
        return f"{self.index}.{token}"

    def owner_of(self, session_id: str) -> int | None:
        """The worker a session id names; None when it is not one of ours."""
        prefix, dot, _ = session_id.partition(".")
        if not dot or not prefix.isdigit():
            return None
        index = int(prefix)
        return index if index < self.count else None


def make_run_dir(data_dir: Path) -> tuple[Path, bool]:
    """The private sockets' directory, mode 0700, and whether it is a temporary one.

    Under the data dir when the path is short enough for a Unix socket (and not
    in /tmp, whose cleaners remove old files from under a long-running server);
    else a fresh temporary directory.
    """
    run = data_dir.resolve() / "run"
    if len(str(run / "worker-999.sock")) <= _MAX_SOCKET_PATH:
        run.mkdir(parents=True, exist_ok=True)
        run.chmod(0o700)
        return run, False
    return Path(tempfile.mkdtemp(prefix="acs-run-")), True


class Relay:
    """This worker's side of the relay: forwarding out, and the private listener in."""

    def __init__(self, workers: Workers, metrics: Metrics, pool: asyncpg.Pool) -> None:
        self.workers = workers
        self.metrics = metrics
        self.pool = pool
        self._clients: dict[int, aiohttp.ClientSession] = {}
        self._runner: web.AppRunner | None = None

    @property
    def index(self) -> int:
        return self.workers.index

    def new_session_id(self, token: str) -> str:
        return self.workers.session_id(token)

    def foreign_owner(self, session_id: str | None) -> int | None:
        """The other worker owning this session, if the id names one."""
        if not session_id:
            return None
        # past the host's id when hosts relay too ("<host>~<worker>.<token>")
        owner = self.workers.owner_of(session_id.rpartition("~")[2])
        return owner if owner is not None and owner != self.index else None

    async def session_at(self, address: str | None, device_id: str | None = None) -> str | None:
        """The one live session of a CPE at this address, over all workers (the miss path);
        with ``device_id`` (a per-device credential), that device's session there.

        Several CPEs behind one NAT address identify none of them: None, as in
        one process.
        """
        return await session_at(self.pool, address, device_id)

    # ------------------------------------------------------------ out: forwarding

    def _client(self, owner: int) -> aiohttp.ClientSession:
        client = self._clients.get(owner)
        if client is None or client.closed:
            client = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(self.workers.socket_path(owner))),
                # the owner answers a CWMP request in its own time (database, CPE
                # faults); a hung owner must still not hold the CPE forever
                timeout=aiohttp.ClientTimeout(total=60),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
            self._clients[owner] = client
        return client

    async def forward(
        self,
        owner: int,
        request: web.Request,
        body: bytes,
        reason: str,
        *,
        username: str | None = None,
    ) -> web.Response | None:
        """The owner's answer to this request; None when the owner is not there.
        ``username``: the CPE credential this worker verified for the request.

        A worker that is gone (crashed, restarting) took its sessions with it:
        the caller then goes on as if no session had been found.
        """
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED
        )
        headers[TOKEN_HEADER] = self.workers.relay_token
        headers[CLIENT_HEADER] = client_address(request) or ""
        headers[SCHEME_HEADER] = client_scheme(request)
        if username is not None:
            headers[USER_HEADER] = quote(username, safe="")
        url = f"http://worker{owner}{request.rel_url}"
        try:
            async with self._client(owner).post(url, data=body, headers=headers) as resp:
                data = await resp.read()
                answer = CIMultiDict(
                    (k, v) for k, v in resp.headers.items() if k.lower() not in _NOT_FORWARDED
                )
                status = resp.status
        except (aiohttp.ClientConnectorError, FileNotFoundError) as exc:
            log(logger, logging.WARNING, "relay_owner_gone", owner=owner, error=exc)
            return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            # it took the request and never answered: whether the session moved on
            # is unknown, so the CPE retries later, as after any cut session
            log(logger, logging.WARNING, "relay_failed", owner=owner, error=repr(exc))
            return web.Response(
                status=503,
                text="the worker holding this session did not answer, retry later\n",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        self.metrics.relay(reason)
        return web.Response(status=status, body=data or None, headers=answer)

    async def supersede(
        self, owner: int, session_id: str, device_id: str, username: str | None
    ) -> bool:
        """Ask the owner to end its session ``session_id`` of ``device_id``, which a
        new Inform of the device (authenticated as ``username``) proves dead;
        True when it did. An owner that is gone or does not answer ended nothing:
        its lease then simply runs out, as before."""
        doc = {"session": session_id, "device": device_id, "username": username}
        try:
            async with asyncio.timeout(10):
                async with self._client(owner).post(
                    f"http://worker{owner}{SUPERSEDE_PATH}",
                    json=doc,
                    headers={TOKEN_HEADER: self.workers.relay_token},
                ) as resp:
                    if resp.status != 200:
                        log(
                            logger,
                            logging.WARNING,
                            "relay_supersede_failed",
                            owner=owner,
                            status=resp.status,
                        )
                        return False
                    answer = await resp.json()
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log(logger, logging.WARNING, "relay_supersede_failed", owner=owner, error=repr(exc))
            return False
        return isinstance(answer, dict) and answer.get("ended") is True

    async def ask_nonce(self, holder: str, nonce: str, nc: int) -> bool | None:
        """The verdict of the sibling worker ``holder`` names on count ``nc`` of a
        nonce it holds; None when it is gone, restarted (another id) or not ours."""
        owner = self.workers.owner_of(holder)
        if owner is None or owner == self.index:
            return None
        try:
            async with asyncio.timeout(10):
                async with self._client(owner).post(
                    f"http://worker{owner}{NONCE_PATH}",
                    json={"holder": holder, "nonce": nonce, "nc": nc},
                    headers={TOKEN_HEADER: self.workers.relay_token},
                ) as resp:
                    answer = await resp.json() if resp.status == 200 else None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log(logger, logging.WARNING, "relay_nonce_failed", owner=owner, error=repr(exc))
            return None
        verdict = answer.get("verdict") if isinstance(answer, dict) else None
        return verdict if isinstance(verdict, bool) else None

    # ------------------------------------------------------------ in: the private listener

    def private_app(
        self,
        handle: Handler,
        max_body_bytes: int,
        supersede: Supersede | None = None,
        nonce_counts: NonceCounts | None = None,
    ) -> web.Application:
        token = self.workers.relay_token.encode()

        @web.middleware
        async def relayed(request: web.Request, handler: Handler) -> web.StreamResponse:
            given = request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, token):
                return web.Response(status=403, text="not a worker of this ACS\n")
            scheme = request.headers.get(SCHEME_HEADER, "http")
            # the client as the first worker saw it; the Unix connection is a pool
            # shared by many CPEs, so it identifies none of them (proxied=True)
            request[CLIENT] = Client(
                request.headers.get(CLIENT_HEADER) or None,
                scheme if scheme in ("http", "https") else "http",
                proxied=True,
            )
            request[RELAYED] = True
            return await handler(request)

        async def own_metrics(_request: web.Request) -> web.Response:
            return web.Response(body=await self.metrics.render())

        app = web.Application(client_max_size=max_body_bytes, middlewares=[relayed])
        app.router.add_get(METRICS_PATH, own_metrics)
        # before the catch-all, which takes every other POST for a CWMP request
        app.router.add_post(SUPERSEDE_PATH, supersede_handler(supersede))
        app.router.add_post(NONCE_PATH, nonce_handler(nonce_counts))
        app.router.add_post("/{tail:.*}", handle)
        return app

    async def listen(
        self,
        handle: Handler,
        max_body_bytes: int,
        supersede: Supersede | None = None,
        nonce_counts: NonceCounts | None = None,
    ) -> None:
        self._runner = web.AppRunner(
            self.private_app(handle, max_body_bytes, supersede, nonce_counts), access_log=None
        )
        await self._runner.setup()
        path = self.workers.socket_path(self.index)
        await web.UnixSite(self._runner, str(path)).start()
        path.chmod(0o600)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for client in self._clients.values():
            await client.close()

    # ------------------------------------------------------------ metrics of all workers

    async def all_metrics(self) -> bytes:
        """This worker's metrics and its siblings', each series labelled with its worker."""

        async def fetch(index: int) -> bytes | None:
            try:
                async with asyncio.timeout(2):
                    async with self._client(index).get(
                        f"http://worker{index}{METRICS_PATH}",
                        headers={TOKEN_HEADER: self.workers.relay_token},
                    ) as resp:
                        return await resp.read() if resp.status == 200 else None
            except (aiohttp.ClientError, OSError, TimeoutError):
                return None  # restarting: its series are missing from this one scrape

        others = [i for i in range(self.workers.count) if i != self.index]
        texts = {self.index: await self.metrics.render()}
        for index, text in zip(others, await asyncio.gather(*map(fetch, others)), strict=True):
            if text is not None:
                texts[index] = text
        return merge_worker_metrics(texts, self.index)


async def session_at(
    pool: asyncpg.Pool, address: str | None, device_id: str | None = None
) -> str | None:
    """The one live session of a CPE at this address, whoever owns it (see Relay.session_at)."""
    if address is None:
        return None
    async with pool.acquire() as conn:
        if device_id is not None:
            return await sessions.live_session_of(conn, device_id, address)
        found = await sessions.live_sessions_at(conn, address)
    return found[0] if len(found) == 1 else None


def is_relayed(request: web.Request) -> bool:
    return request.get(RELAYED, False)


def is_host_relayed(request: web.Request) -> bool:
    return request.get(HOST_RELAYED, False)


def relayed_username(request: web.Request) -> str | None:
    """The CPE username the relaying worker (or host) verified; None if it verified none."""
    if not is_relayed(request) and not is_host_relayed(request):
        return None
    value = request.headers.get(USER_HEADER)
    return unquote(value) if value is not None else None
