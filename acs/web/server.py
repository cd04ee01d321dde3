"""Starting the ACS: database, migrations, and the three listeners.

CWMP (CPEs), the operator API and the file server run as separate aiohttp
applications on their own ports, so each can get its own TLS, limits and
firewall rules.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os
import re
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from acs import loops
from acs.config import LISTENERS, Settings
from acs.connreq.http import ConnectionRequester
from acs.connreq.stun_server import StunServer
from acs.connreq.udp_sender import UdpConnectionRequester
from acs.connreq.xmpp_client import XmppConnectionRequester
from acs.core import secrets as secret_rules
from acs.core.auth_throttle import Throttle
from acs.core.reach import StunPeer
from acs.logs import log
from acs.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from acs.metrics import Metrics
from acs.services import (
    bulk_jobs,
    campaigns,
    jobs,
    leases,
    provisioning,
    reseal,
    retention,
    sealing_key,
)
from acs.services import diagnostics as diagnostics_jobs
from acs.services.history import HistoryRecorder
from acs.services.knock import knock
from acs.services.knock_watch import ArrivalWatcher
from acs.services.live import LiveHub
from acs.store import credentials, nat
from acs.store import leases as lease_store
from acs.store import tasks as task_store
from acs.store.db import UNAVAILABLE, create_pool, migrate
from acs.store.dsn import redacted
from acs.web import transfers
from acs.web.api.app import Services, build_api_app
from acs.web.cpe_auth import CpeAuthenticator, Credential, ha1_of
from acs.web.cpe_auth_state import PgAuthState, new_holder
from acs.web.cwmp import CwmpEndpoint
from acs.web.files import files_app
from acs.web.guard import GuardedRunner
from acs.web.host_relay import HostRelay
from acs.web.large import LargeRequests
from acs.web.lean import Handler, LeanListener, LeanSite, routed_to
from acs.web.proxy import TrustedProxies, parse_networks
from acs.web.relay import Relay, Workers
from acs.web.tls import TlsConfigError, server_context
from acs.web.tls import reload as reload_tls
from acs.web.ui import app as ui
from acs.web.webhooks import WebhookSender

logger = logging.getLogger("acs.server")
# the API's request line: a filter, a projection and a cursor at their documented
# lengths, percent-encoded UTF-8, fit (aiohttp's default is 8190 bytes)
API_MAX_LINE = 128 * 1024


@dataclass(slots=True)
class Running:
    settings: Settings
    pool: asyncpg.Pool
    cwmp: CwmpEndpoint
    api_app: web.Application
    runners: list[web.AppRunner]
    ports: dict[str, int]
    metrics: Metrics
    tls: dict[str, ssl.SSLContext | None]

    def url(self, listener: str, path: str = "/") -> str:
        """A listener's URL with its real port: what serve prints and what tests call."""
        host = self.settings.public_host or "127.0.0.1"
        return f"{self.settings.scheme_of(listener)}://{host}:{self.ports[listener]}{path}"

    def reload_tls(self) -> None:
        """Read the certificate files again, e.g. after a renewal (SIGHUP)."""
        for ctx in self.tls.values():
            if ctx is not None:
                reload_tls(ctx, self.settings)


def make_authenticator(
    settings: Settings,
    pool: asyncpg.Pool,
    nonce_secret: bytes | None = None,
    *,
    nonce_holder: str | None = None,
) -> CpeAuthenticator:
    """Shared credential from the settings, else per-device ones from the database."""
    shared: Credential | None = None
    if settings.cpe_username is not None and settings.cpe_password is not None:
        shared = Credential(
            settings.cpe_username,
            ha1_of(settings.cpe_username, settings.cpe_auth_realm, settings.cpe_password),
        )

    async def lookup(username: str) -> Credential | None:
        if shared is not None and username == shared.username:
            return shared
        if not _may_be_stored(username):
            return None  # PostgreSQL would refuse the query: no such credential can exist
        async with pool.acquire() as conn:
            row = await credentials.get_credential(conn, username)
        if row is None:
            return None
        ha1, realm, device_id = row
        if realm != settings.cpe_auth_realm:
            return None
        return Credential(username, ha1, device_id)

    throttle = Throttle(
        max_failures=settings.cpe_auth_max_failures,
        window_s=settings.cpe_auth_failure_window_s,
        backoff_s=settings.cpe_auth_backoff_s,
        backoff_max_s=settings.cpe_auth_backoff_max_s,
    )
    # workers share the nonce key: a CPE's Digest answer may reach another worker
    # than the one that challenged it; and so the nonce counts, in PostgreSQL
    return CpeAuthenticator(
        settings.cpe_auth,
        settings.cpe_auth_realm,
        lookup,
        secret=nonce_secret,
        state=PgAuthState(pool, throttle, holder=nonce_holder),
        allow_no_qop=settings.cpe_digest_allow_no_qop,
    )


# NUL, and the lone surrogates undecodable header bytes turn into, are not text
# PostgreSQL can hold; a hostile Authorization header carries both
_NOT_STORABLE = re.compile("[\x00\ud800-\udfff]")
USERNAME_MAX = 256


def _may_be_stored(username: str) -> bool:
    return len(username) <= USERNAME_MAX and _NOT_STORABLE.search(username) is None


def ops_routes(
    pool: asyncpg.Pool,
    metrics: Metrics,
    metrics_token: str | None = None,
    render: Callable[[], Awaitable[bytes]] | None = None,
    host: str | None = None,
) -> Callable[[web.Application], None]:
    """/healthz (the process answers), /readyz (the database answers) and /metrics.

    /readyz names this host and the cluster leases it holds now (read from
    PostgreSQL, so any worker of the host answers the same).

    No API token: they are for load balancers, orchestrators and Prometheus.
    /metrics takes a bearer token of its own when ACS_METRICS_TOKEN is set.
    """

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(2):
                async with pool.acquire() as conn:
                    held = await lease_store.held_by(conn, host) if host else []
        except (TimeoutError, *UNAVAILABLE) as exc:
            # a load balancer takes this instance out until the database is back
            return web.json_response(
                {
                    "status": "database unavailable",
                    "error": str(exc) or type(exc).__name__,
                    "host": host,
                },
                status=503,
                headers={"Retry-After": "5"},
            )
        return web.json_response({"status": "ready", "host": host, "leases": held})

    expected = f"Bearer {metrics_token}".encode() if metrics_token else None
    render = render or metrics.render  # with workers: every worker's series

    async def scrape(request: web.Request) -> web.Response:
        if expected is not None:
            # surrogateescape: header bytes beyond ASCII arrive as lone surrogates
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                return web.Response(
                    status=401,
                    text="send Authorization: Bearer <ACS_METRICS_TOKEN>\n",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        body = await render()
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    def add(app: web.Application) -> None:
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", scrape)

    return add


async def expire_transfers(
    pool: asyncpg.Pool, timeout_s: float, metrics: Metrics | None = None
) -> None:
    """Fault Download/Upload jobs whose TransferComplete never came."""
    await jobs.close_expired(
        pool,
        lambda conn: task_store.expire_transfers(conn, timeout_s),
        tick="expire_transfers",
        event="transfer_timeout",
        logger=logger,
        metrics=metrics,
    )


async def campaign_tick(pool: asyncpg.Pool, knock: campaigns.Knock) -> None:
    """Advance firmware campaigns: stages, thresholds, timeouts, newcomers, knocks."""
    try:
        await campaigns.tick(pool, knock)
    except UNAVAILABLE as exc:
        log(logger, logging.WARNING, "tick_failed", tick="campaigns", error=exc)


async def prune(pool: asyncpg.Pool, settings: Settings) -> None:
    """Retention: old session logs, finished jobs, audit rows, finished deliveries."""
    try:
        counts = await retention.prune(pool, settings)
    except UNAVAILABLE as exc:
        log(logger, logging.WARNING, "tick_failed", tick="retention", error=exc)
        return
    if any(counts.values()):
        log(logger, logging.INFO, "pruned", **counts)


async def bulk_tick(pool: asyncpg.Pool, knock: bulk_jobs.Knock, tick_s: float) -> None:
    """Queue bulk jobs' next devices at their rates; complete jobs whose tasks ended."""
    try:
        await bulk_jobs.tick(pool, knock, tick_s)
    except UNAVAILABLE as exc:
        log(logger, logging.WARNING, "tick_failed", tick="bulk_jobs", error=exc)


async def _listen(
    app: web.Application,
    listener: str,
    settings: Settings,
    tls: ssl.SSLContext | None,
    metrics: Metrics,
    reuse_port: bool = False,
    max_line_size: int = 8190,
    lean: tuple[Handler, TrustedProxies] | None = None,
) -> tuple[web.AppRunner, int]:
    """``lean``: the CWMP handler and the trusted proxies, to serve its POSTs on
    the lean path (acs/web/lean.py) instead of aiohttp's web server."""
    host, port = settings.host, getattr(settings, f"{listener}_port")
    # header and body deadlines, and one log line for malformed HTTP (acs/web/guard.py)
    runner = GuardedRunner(
        app,
        listener=listener,
        header_timeout_s=settings.http_header_timeout_s,
        body_timeout_s=settings.http_body_timeout_s,
        count=lambda reason: metrics.http_refused.labels(listener, reason).inc(),
        access_log=None,
        max_line_size=max_line_size,
    )
    await runner.setup()
    site: web.TCPSite
    if lean is not None:
        handler, proxies = lean
        assert runner.server is not None
        # the pool size when unset: Settings' validator fills it in
        large_at_once = settings.large_requests_at_once
        assert large_at_once is not None
        lean_listener = LeanListener(
            handler=handler,
            fallback=runner.server,  # aiohttp's protocol (a GuardedHandler) for a handoff
            serves=routed_to(app, handler),
            proxies=proxies,
            listener=listener,
            max_body_bytes=settings.max_body_bytes,
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            keepalive_timeout_s=runner.server._kwargs.get("keepalive_timeout", 3630.0),
            count=lambda reason: metrics.http_refused.labels(listener, reason).inc(),
            tls=tls is not None,
            large=LargeRequests(
                min_bytes=settings.large_request_bytes,
                at_once=large_at_once,
            ),
        )
        site = LeanSite(
            runner,
            lean_listener,
            host,
            port,
            reuse_address=True,
            reuse_port=reuse_port or None,
            ssl_context=tls,
        )
    else:
        site = web.TCPSite(
            runner, host, port, reuse_address=True, reuse_port=reuse_port or None, ssl_context=tls
        )
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]  # the bound port when port=0
    return runner, sock.getsockname()[1]


@asynccontextmanager
async def running_acs(
    settings: Settings, dsn: str, workers: Workers | None = None
) -> AsyncIterator[Running]:
    """Migrate, then serve CWMP, API and files until the context exits.

    As one of several workers (acs/web/workers.py), the parent has migrated
    already; this process shares the ports with its siblings, relays requests
    for their sessions to them, and runs the periodic ticks only as worker 0.
    """
    # before anything starts: a bad certificate is a configuration error, said plainly
    contexts = {name: server_context(settings, name) for name in LISTENERS}
    # the secrets rule and key, before any value is stored or shown
    secret_rules.use_extra_endings(secret_rules.parse_endings(settings.secret_parameters))
    sealing_key.sealer(settings)
    proxies = TrustedProxies(parse_networks(settings.trusted_proxies))
    pool = await create_pool(dsn, max_size=settings.database_pool_size)
    runners: list[web.AppRunner] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        if workers is None:  # else the parent did it once, before any worker started
            await prepare_database(pool, settings)
        metrics = Metrics(pool, db_cache_s=settings.metrics_db_cache_s)
        closers.append(metrics.close)
        relay: Relay | None = None
        if workers is not None:
            relay = Relay(workers, metrics, pool)
            closers.append(relay.close)
        hosts: HostRelay | None = None
        if settings.relay_listen is not None and settings.cluster_secret is not None:
            hosts = HostRelay(
                settings.host_name, settings.cluster_secret, settings.relay_url, pool, metrics
            )
            closers.append(hosts.close)
        nonce_secret = hosts.shared_secret if hosts else (workers.secret if workers else None)
        # one host keeps Digest nonce counts in its workers' memory, a cluster in
        # PostgreSQL (acs/web/cpe_auth_state.py)
        holder = None if hosts else new_holder(workers.index if workers else 0)
        auth = make_authenticator(settings, pool, nonce_secret, nonce_holder=holder)
        auth_state = auth.state
        assert isinstance(auth_state, PgAuthState)
        if relay is not None:
            auth_state.ask_holder = relay.ask_nonce
        cwmp = CwmpEndpoint(settings, pool, auth, metrics, relay, hosts)
        if relay is not None:
            await relay.listen(
                cwmp.handle,
                settings.max_body_bytes,
                cwmp.end_superseded,
                auth_state.count_held,
            )
        if hosts is not None:
            await _listen_for_hosts(hosts, settings, cwmp)
        requester = ConnectionRequester(
            timeout_s=settings.connection_request_timeout_s,
            max_concurrent=settings.connection_request_concurrency,
            max_per_host=settings.connection_request_per_host,
            allow_basic=settings.connection_request_allow_basic,
            metrics=metrics,
        )
        closers.append(requester.close)
        udp: UdpConnectionRequester | None = None
        stun_port: int | None = None
        if settings.stun_enable:
            stun_server = stun_listener(settings, pool, metrics)
            # before the TCP listeners: a CPE told of our STUN port finds it open
            stun_port = await stun_server.start(
                settings.host, settings.stun_port, reuse_port=workers is not None
            )
            closers.append(stun_server.close)
            settings.stun_port = stun_port
            udp = UdpConnectionRequester(
                transport=lambda: stun_server.transport,
                max_concurrent=settings.connection_request_concurrency,
                metrics=metrics,
            )
            closers.append(udp.close)
        xmpp: XmppConnectionRequester | None = None
        if settings.xmpp_server:
            xmpp = XmppConnectionRequester(
                settings.xmpp_server,
                settings.xmpp_jid or "",
                settings.xmpp_password or "",
                require_tls=settings.xmpp_require_tls,
                ca_file=settings.xmpp_ca_file,
                metrics=metrics,
            )
            xmpp.start()  # logs in (and back in) in the background; knocks fail fast meanwhile
            closers.append(xmpp.close)
        ops = ops_routes(
            pool,
            metrics,
            settings.metrics_token,
            relay.all_metrics if relay else None,
            host=settings.host_name,
        )

        def api_extras(app: web.Application) -> None:
            ops(app)
            ui.install(app)  # the web UI, on the API's port and its session-aware auth

        # one per process: every waiting knock's session looked for in one statement a tick
        arrivals = ArrivalWatcher(pool)
        live = LiveHub(dsn)  # one LISTEN connection for this process's browsers
        closers.append(live.close)
        read_pool: asyncpg.Pool | None = None
        if settings.database_read_url:
            read_pool = await create_pool(
                settings.database_read_url,
                min_size=0,  # a standby that is down must not keep the ACS from starting
                max_size=settings.database_pool_size,
                read_only=True,
            )
            closers.append(read_pool.close)
        services = Services(
            settings, pool, requester, udp, xmpp, arrivals=arrivals, live=live, read_pool=read_pool
        )
        api = build_api_app(services, api_extras)
        ports = {}
        for name, app in (
            ("cwmp", cwmp.app()),
            ("api", api),
            ("files", transfers.with_transfers(files_app(settings, pool), settings, pool)),
        ):
            # outermost, so every handler and middleware sees the real client
            app.middlewares.insert(0, proxies.middleware())
            runner, ports[name] = await _listen(
                app,
                name,
                settings,
                contexts[name],
                metrics,
                reuse_port=workers is not None,
                max_line_size=API_MAX_LINE if name == "api" else 8190,
                lean=(cwmp.handle, proxies)
                if name == "cwmp" and settings.cwmp_http == "lean"
                else None,
            )
            runners.append(runner)
        # port 0 asks for any free port; the URLs we hand out need the real ones
        settings.cwmp_port, settings.api_port, settings.files_port = (
            ports["cwmp"],
            ports["api"],
            ports["files"],
        )
        # worker 0 of each host competes for the cluster's leases on periodic work
        leader = workers is None or workers.index == 0
        metrics.leases(settings.host_name, (), leases.ALL if leader else ())
        recorder = HistoryRecorder(pool, metrics, settings.history_flush_s, online=False)
        recorder.start()
        closers.append(recorder.close)
        if leader:
            await _start_background(
                settings, pool, metrics, requester, closers, recorder, udp, xmpp, arrivals
            )
        if stun_port is not None:
            ports["stun"] = stun_port
        yield Running(settings, pool, cwmp, api, runners, ports, metrics, contexts)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        for close in reversed(closers):
            await close()
        try:  # a connection a cancelled handler never gave back must not hold shutdown
            await asyncio.wait_for(pool.close(), timeout=10)
        except TimeoutError:
            pool.terminate()


async def _listen_for_hosts(hosts: HostRelay, settings: Settings, cwmp: CwmpEndpoint) -> None:
    """The relay listener for the other hosts, and this host's entry in cluster_hosts."""
    assert settings.relay_listen is not None
    bound = await hosts.listen(
        settings.relay_listen, cwmp.handle, settings.max_body_bytes, cwmp.supersede_here
    )
    if hosts.relay_url is None:  # reachable at the listen address, or by the host's name
        host = settings.relay_listen.rpartition(":")[0].strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = settings.public_host or settings.host_name
        hosts.relay_url = f"http://{host}:{bound}"
    await hosts.register()
    log(logger, logging.INFO, "host_relay_listening", url=hosts.relay_url, host_id=hosts.host_id)


def stun_listener(settings: Settings, pool: asyncpg.Pool, metrics: Metrics) -> StunServer:
    """The STUN server, finding devices' credentials and keeping their bindings in PostgreSQL."""
    seal = sealing_key.sealer(settings)

    async def lookup(username: str) -> StunPeer | None:
        async with pool.acquire() as conn:
            return await nat.stun_peer(conn, username, seal)

    async def record(device_id: str, address: str, port: int, nat_detected: bool) -> bool:
        async with pool.acquire() as conn:
            return await nat.record_binding(
                conn, device_id, address, port, nat_detected, datetime.now(UTC)
            )

    async def touch(seen: list[tuple[str, datetime]]) -> None:
        async with pool.acquire() as conn:
            await nat.touch_bindings(conn, seen)

    return StunServer(
        lookup,
        record,
        metrics,
        rate_per_source=settings.stun_rate_per_source,
        # unchanged bindings are touched a few times per freshness period, in batches
        refresh_s=max(1.0, settings.stun_binding_fresh_s / 5),
        touch=touch,
    )


async def prepare_database(pool: asyncpg.Pool, settings: Settings) -> None:
    """Migrations and the shipped default policies: once per start, before serving."""
    async with pool.acquire() as conn:
        applied = await migrate(conn)
    if applied:
        log(logger, logging.INFO, "migrated", applied=",".join(applied))
    # an installation from before secrets were sealed: once, before serving
    secret_rules.use_extra_endings(secret_rules.parse_endings(settings.secret_parameters))
    await reseal.seal_existing(pool, sealing_key.sealer(settings))
    if settings.default_policies:
        async with pool.acquire() as conn:
            installed = await provisioning.install_defaults(conn, settings)
        if installed:
            log(logger, logging.INFO, "default_policies", created=",".join(installed))


async def _start_background(
    settings: Settings,
    pool: asyncpg.Pool,
    metrics: Metrics,
    requester: ConnectionRequester,
    closers: list[Callable[[], Awaitable[None]]],
    recorder: HistoryRecorder,
    udp: UdpConnectionRequester | None = None,
    xmpp: XmppConnectionRequester | None = None,
    arrivals: ArrivalWatcher | None = None,
) -> None:
    """The periodic ticks and the webhook sender: on one host of the cluster at a time.

    With several workers only worker 0 competes (and the parent restarts it
    if it dies); with several hosts each kind of work runs on the host holding
    its lease (acs/services/leases.py). Two campaign or bulk ticks at once
    would each take their share of the same stage or rate, knocking devices
    twice as fast as the operator set; webhook concurrency limits are per
    process, so N senders would put N times the allowed load on a hook. Their
    state is in PostgreSQL, so a restarted or replacing host loses nothing.
    """
    sender = WebhookSender(settings, pool)
    sending = False

    async def changed(gained: frozenset[str], lost: frozenset[str]) -> None:
        nonlocal sending
        metrics.leases(settings.host_name, keeper.held, leases.ALL)
        recorder.online = leases.HISTORY in keeper.held
        if leases.WEBHOOKS in gained and not sending:
            await sender.start()
            sending = True
        elif leases.WEBHOOKS in lost and sending:
            await sender.stop()
            sending = False

    keeper = leases.LeaseKeeper(
        pool, settings.host_name, settings.lease_duration_s, on_change=changed, on_tick=metrics.tick
    )

    def under_lease(
        name: str, interval_s: float, tick: Callable[..., Awaitable[object]]
    ) -> Callable[..., Awaitable[bool]]:
        async def run(*args: object) -> bool:
            return await keeper.run(name, interval_s, lambda: tick(*args))

        return run

    # periodic ticks; their state lives in PostgreSQL, so a restart loses nothing
    scheduler = AsyncIOScheduler(timezone="UTC")
    knocker = functools.partial(
        knock, pool, requester, settings, udp=udp, xmpp=xmpp, arrivals=arrivals
    )
    diagnostics_s = diagnostics_jobs.tick_interval_s(settings.diagnostics_timeout_s)
    ticks: list[tuple[str, float, Callable[..., Awaitable[object]], list[object]]] = [
        (
            leases.EXPIRE_TRANSFERS,
            60.0,
            expire_transfers,
            [pool, settings.transfer_complete_timeout_s, metrics],
        ),
        (
            leases.EXPIRE_DIAGNOSTICS,
            diagnostics_s,
            diagnostics_jobs.expire,
            [pool, settings.diagnostics_timeout_s, metrics],
        ),
        (leases.CAMPAIGNS, settings.campaign_tick_s, campaign_tick, [pool, knocker]),
        (leases.RETENTION, settings.retention_interval_s, prune, [pool, settings]),
        (
            leases.BULK_JOBS,
            settings.bulk_tick_s,
            bulk_tick,
            [pool, knocker, settings.bulk_tick_s],
        ),
    ]
    for name, interval_s, tick, args in ticks:
        scheduler.add_job(
            under_lease(name, interval_s, tick),
            "interval",
            seconds=interval_s,
            args=args,
            max_instances=1,
            coalesce=True,
        )
    await keeper.start()
    scheduler.start()
    closers.append(lambda: _shutdown(scheduler))

    async def stop_sender() -> None:
        if sending:
            await sender.stop()

    closers.append(stop_sender)
    # closed first (closers run in reverse): the leases are handed over at once
    closers.append(keeper.close)


def _reload_certificates(acs: Running) -> None:
    try:
        acs.reload_tls()
    except TlsConfigError as exc:  # keep serving with the certificate already loaded
        log(logger, logging.ERROR, "tls_reload_failed", error=exc)
    else:
        log(logger, logging.INFO, "tls_reloaded", cert=acs.settings.tls_cert_file)


async def _shutdown(scheduler: AsyncIOScheduler) -> None:
    scheduler.shutdown(wait=False)


async def serve_until_signalled(
    settings: Settings, dsn: str, *, embedded: bool, workers: Workers | None = None
) -> None:
    """Serve until SIGINT or SIGTERM; SIGHUP reloads the certificate."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_acs(settings, dsn, workers) as acs:
        if settings.tls_cert_file is not None:
            loop.add_signal_handler(signal.SIGHUP, _reload_certificates, acs)
        if workers is None or workers.index == 0:  # once, not once per worker
            print_banner(acs, dsn, embedded=embedded, workers=workers)
        if workers is not None:
            log(
                logger,
                logging.INFO,
                "worker_ready",
                worker=workers.index,
                pid=os.getpid(),
                event_loop=loops.running_name(),
            )
        await stop.wait()


def print_banner(acs: Running, dsn: str, *, embedded: bool, workers: Workers | None = None) -> None:
    settings = acs.settings
    print(f"CWMP (give CPEs this ACS URL): {acs.url('cwmp')}")
    if settings.cwmp_client_cert != "none":
        print(f"  CPE client certificate: {settings.cwmp_client_cert}")
    if settings.cpe_auth != "none":
        print(
            f"  CPE credential ({settings.cpe_auth}): {settings.cpe_username} / "
            f"{settings.cpe_password}"
        )
    else:
        print("  CPE authentication is OFF (ACS_CPE_AUTH=none)")
    if "stun" in acs.ports:
        host = settings.public_host or "127.0.0.1"
        print(f"STUN (TR-111, UDP):           {host}:{acs.ports['stun']} (STUNServerAddress/Port)")
    if settings.xmpp_server:
        print(f"XMPP (Annex K):               {settings.xmpp_jid} on {settings.xmpp_server}")
    print(f"API (operators):              {acs.url('api', '/api/v1/')}")
    print("  create a token: .venv/bin/acs token create --name me --role admin")
    print(f"  metrics: {acs.url('api', '/metrics')}, health: /healthz, /readyz")
    print(f"Web UI:                       {acs.url('api', '/ui/')}")
    print("  create a user:  .venv/bin/acs user create me --role admin")
    print(f"Files (firmware, configs):    {settings.files_base_url}")
    print(f"Event loop: {loops.running_name()}")
    shown = "embedded, data in " + str(settings.pgdata_dir) if embedded else redacted(dsn)
    print(f"Database: {shown}")  # never the password the DSN may carry
    if workers is not None:
        print(f"Workers: {workers.count} processes sharing the ports")
