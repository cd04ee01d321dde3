"""Many simulated CPEs in one asyncio process.

Density comes from sharing: one template for every tree, one HTTP client
(connection pool) for the fleet, one connection-request server, and one
scheduler task with a heap of wake-up times instead of a sleeping task per
device. Sessions run in at most ``max_concurrent`` tasks at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import ssl
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from acs.cwmp.soap import CWMP_NS_1_0, CWMP_NS_1_2
from cpe_simulator import health_faults
from cpe_simulator.connreq import ConnectionRequestServer
from cpe_simulator.cpe import SimulatedCpe
from cpe_simulator.datamodel import Identity, Template, load_template
from cpe_simulator.profiles import (
    Timing,
    parse_profiles,
    profile_values,
    profiles_for,
    retry_wait_range,
)
from cpe_simulator.stun import StunAgent
from cpe_simulator.tree import ParameterTree
from cpe_simulator.xmpp import XmppAgent


@dataclass(slots=True)
class FleetConfig:
    acs_url: str
    devices: int = 1
    model: str = "tr181-gateway"
    serial_prefix: str = "SIM"
    oui: str = "ACDE48"
    product_class: str = "HGW"
    software_version: str = "1.0.0"
    hardware_version: str = "HW1.0"
    periodic_interval: int | None = None  # None: the template's PeriodicInformInterval
    ramp_s: float = 0.0
    faults: str = ""
    username: str | None = None
    password: str | None = None
    auth: str = "digest"  # how the CPEs authenticate to the ACS: digest or basic
    cr_host: str = "127.0.0.1"
    cr_port: int = 0
    cr_username: str = "cr"
    cr_password: str = "cr-secret"
    # behind a NAT: no inbound TCP, so no connection-request HTTP server; the
    # published ConnectionRequestURL leads nowhere, as a NATed CPE's private one
    # does from outside. STUN (when the ACS enables it) is then the way in.
    nat: bool = False
    # XMPP connection requests (TR-069 Annex K): each CPE logs in to this server
    # ("host:port") as <serial>@xmpp_domain/cwmp with xmpp_password
    xmpp_server: str | None = None
    xmpp_domain: str = ""
    xmpp_password: str = ""
    cwmp_version: str = "1.0"  # "1.0" speaks urn:dslforum-org:cwmp-1-0, else cwmp-1-2
    max_concurrent: int = 200
    jitter: float = 0.1
    timing: Timing = field(default_factory=Timing)
    first_serial: int = 1
    # TLS towards the ACS (https URLs) and the XMPP server (STARTTLS): the CA that signed
    # their certificates (None: the system's), and a client certificate the CPEs present, as real
    # CPEs carry one from the factory (the fleet shares one)
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    # serial -> {path: value}: each device's non-volatile configuration at power-on
    # (what an ACS set in an earlier life of the fleet); such a device has bootstrapped
    state: dict[str, dict[str, str]] = field(default_factory=dict)

    def serial_of(self, i: int) -> str:
        return f"{self.serial_prefix}{i:08d}"

    def tree_of(self, template: Template, i: int, cr_port: int) -> ParameterTree:
        """Device i's tree at power-on (before any ``state``); benches that seed an
        ACS's store build the same trees to know what a discovery would store."""
        serial = self.serial_of(i)
        identity = Identity.from_serial(
            serial,
            oui=self.oui,
            product_class=self.product_class,
            software_version=self.software_version,
            hardware_version=self.hardware_version,
        )
        return ParameterTree(
            template,
            identity,
            acs_url=self.acs_url,
            connection_request_url=f"http://{self.cr_host}:{cr_port}/cr/{serial}",
            connection_request_username=self.cr_username,
            connection_request_password=self.cr_password,
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context, or None for the library's default (system CAs)."""
        if self.ca_file is None and self.client_cert is None:
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.client_cert is not None:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx


class Fleet:
    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.acs_url = config.acs_url
        self.timing = config.timing
        self.cwmp_ns = CWMP_NS_1_0 if config.cwmp_version == "1.0" else CWMP_NS_1_2
        self.shares = parse_profiles(config.faults)
        self.profile_values = profile_values(config.faults)  # nat-drop:S, udp-loss:P
        self.devices: dict[str, SimulatedCpe] = {}
        self.counters: Counter[tuple[str, str]] = Counter()
        self.http: aiohttp.ClientSession = None  # type: ignore[assignment]  # set by start()
        self.cr_server = ConnectionRequestServer(self)
        self.stun: dict[str, StunAgent] = {}  # devices with STUNEnable, by serial
        self.xmpp: dict[str, XmppAgent] = {}  # with xmpp_server: every device, by serial
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._gate = asyncio.Semaphore(config.max_concurrent)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._auth: tuple[aiohttp.ClientMiddlewareType, ...] = ()
        self._own_http: dict[str, aiohttp.ClientSession] = {}
        self._rng = random.Random(config.serial_prefix)
        self._tls = config.tls_context()
        self.started_at = 0.0
        self.closing = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        c = self.config
        connector = aiohttp.TCPConnector(
            limit=c.max_concurrent + 20,
            limit_per_host=0,
            keepalive_timeout=30,
            ssl=self._tls if self._tls is not None else True,
        )
        self.http = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=120, sock_connect=10),
        )
        if c.username is not None and c.password is not None:
            if c.auth == "basic":
                basic = aiohttp.encode_basic_auth(c.username, c.password)

                async def add_basic(
                    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
                ) -> aiohttp.ClientResponse:
                    request.headers["Authorization"] = basic
                    return await handler(request)

                self._auth = (add_basic,)
            else:
                # one Digest state for the fleet: the CPEs share the credential
                self._auth = (
                    aiohttp.DigestAuthMiddleware(c.username, c.password, preemptive=False),
                )
        # port 1 (tcpmux) behind a NAT: a URL nothing answers on, even on loopback
        port = await self.cr_server.start(c.cr_host, c.cr_port) if not c.nat else c.cr_port or 1
        template = load_template(c.model)
        self.started_at = time.monotonic()
        for i in range(c.first_serial, c.first_serial + c.devices):
            tree = c.tree_of(template, i, port)
            serial = tree.identity.serial_number
            if c.periodic_interval is not None:
                tree.set_value_internal(
                    f"{tree.root}ManagementServer.PeriodicInformInterval", str(c.periodic_interval)
                )
                tree.set_value_internal(
                    f"{tree.root}ManagementServer.PeriodicInformEnable",
                    "true" if tree.root == "Device." else "1",
                )
                tree.take_value_changes()
            if c.nat:
                # behind a NAT from power-on, as a CPE whose own STUN (or modem)
                # found it out: it says so before any ACS turns STUN on
                tree.set_value_internal(
                    f"{tree.root}ManagementServer.NATDetected",
                    "true" if tree.root == "Device." else "1",
                )
                tree.take_value_changes()
            kept = c.state.get(serial)
            if kept is not None:
                # what an earlier ACS session set, kept across the power cut as a
                # CPE keeps its configuration: it is known, so no 0 BOOTSTRAP
                for path, value in kept.items():
                    tree.set_value_internal(path, value)
                tree.take_value_changes()
            cpe = SimulatedCpe(self, tree, profiles_for(serial, self.shares))
            cpe.bootstrapped = kept is not None
            self.devices[serial] = cpe
            if c.xmpp_server:
                host, _, xport = c.xmpp_server.rpartition(":")
                agent = XmppAgent(self, cpe, (host, int(xport)), c.xmpp_domain, c.xmpp_password)
                ms = f"{tree.root}ManagementServer."
                tree.set_value_internal(ms + "ConnReqJabberID", agent.jid)
                tree.set_value_internal(ms + "SupportedConnReqMethods", "HTTP,STUN,XMPP")
                tree.take_value_changes()
                self.xmpp[serial] = agent
                agent.start()
            health_faults.at_first_boot(cpe)
            cpe.power_on()
            delay = self._rng.uniform(0, c.ramp_s) if c.ramp_s > 0 else 0.0
            self._push(cpe, delay)
        self._scheduler = asyncio.create_task(self._run_scheduler())

    async def stop(self) -> None:
        """Stop everything within seconds, whatever the devices are doing."""
        self.closing = True
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        # closing the client first aborts requests in flight, so no task waits on the ACS;
        # bounded, because aiohttp waits for every transport to report itself closed
        # and one that never does (a peer gone mid-close) would hold the stop forever
        for client in [*self._own_http.values(), self.http]:
            if client is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.close(), timeout=5)
        for _round in range(5):  # cancelled tasks may spawn follow-ups (after-session actions)
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=5)
        for agent in self.stun.values():
            await agent.stop()
        for xagent in self.xmpp.values():
            await xagent.stop()
        await self.cr_server.stop()

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ scheduling

    def _push(self, cpe: SimulatedCpe, delay: float) -> None:
        due = time.monotonic() + max(delay, 0.0)
        cpe.next_wakeup = due
        heapq.heappush(self._heap, (due, next(self._seq), cpe.serial))
        self._wakeup.set()

    def wake(self, cpe: SimulatedCpe, delay: float = 0.0) -> None:
        """Start a session soon (pending events, connection request, reboot)."""
        if cpe.in_session:
            return  # the running session reschedules when it ends
        due = time.monotonic() + delay
        if cpe.next_wakeup > due or cpe.next_wakeup <= time.monotonic() - 1e-3:
            self._push(cpe, delay)

    def schedule(self, cpe: SimulatedCpe, delay: float, *events: tuple[str, str]) -> None:
        """A session in ``delay`` seconds carrying ``events`` (ScheduleInform)."""

        async def later() -> None:
            await asyncio.sleep(delay)
            for code, key in events:
                cpe.add_event(code, key)
            self.wake(cpe)

        self.spawn(later())

    def later(self, delay: float, coro: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                coro.close()  # never started: close it, or Python warns it was never awaited
                raise
            await coro

        self.spawn(run())

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self.closing:
            coro.close()
            return
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_scheduler(self) -> None:
        while True:
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                due, _, serial = heapq.heappop(self._heap)
                cpe = self.devices[serial]
                if due != cpe.next_wakeup or cpe.in_session or cpe.state != "up":
                    continue  # superseded, busy, or offline
                cpe.next_wakeup = float("inf")
                cpe.in_session = True
                self.spawn(self._session(cpe))
            self._wakeup.clear()
            timeout = self._heap[0][0] - time.monotonic() if self._heap else 3600.0
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancellation that lands as the event fires, and stop() then waits
            # for a scheduler that never ends
            try:
                async with asyncio.timeout(max(timeout, 0.0)):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def _session(self, cpe: SimulatedCpe) -> None:
        async with self._gate:
            if not cpe.events:
                cpe.add_event("2 PERIODIC")
            try:
                ok = await cpe.run_session()
            except Exception as exc:  # noqa: BLE001 - a device must never take the fleet down
                if not self.closing:  # the client closed under a session: not a device fault
                    self.count("session_crashed", type(exc).__name__)
                cpe.in_session = False
                ok = False
        if cpe.state != "up":
            return  # rebooting or bricked: power_on() wakes it
        self._sync_stun(cpe)
        if not ok:
            low, high = retry_wait_range(cpe.retry_count, self.timing)
            self._push(cpe, cpe.rng.uniform(low, high))
        elif cpe.events or cpe.transfer_results:
            self._push(cpe, 0.0)
        elif "reboot-loop" in cpe.profiles:
            self.spawn(cpe.reboot())
        else:
            self._schedule_periodic(cpe)

    def _sync_stun(self, cpe: SimulatedCpe) -> None:
        """Start STUN keep-alives once a session left STUNEnable on (the agent stops
        by itself when it is turned off)."""
        agent = self.stun.get(cpe.serial)
        if agent is None:
            agent = StunAgent(self, cpe, self.config.cr_host)
            if not agent.enabled():
                return
            self.stun[cpe.serial] = agent
        if agent.enabled() and not self.closing:
            agent.start()

    def _schedule_periodic(self, cpe: SimulatedCpe) -> None:
        if not cpe.tree.periodic_inform_enable or cpe.silent:
            return
        interval = max(cpe.tree.periodic_inform_interval, 1)
        jitter = interval * self.config.jitter
        self._push(cpe, interval + cpe.rng.uniform(-jitter, jitter))

    # ------------------------------------------------------------ helpers for callers

    def auth_for(self, cpe: SimulatedCpe) -> tuple[aiohttp.ClientMiddlewareType, ...]:
        return self._auth

    def http_for(self, cpe: SimulatedCpe) -> aiohttp.ClientSession:
        """The fleet's shared client; a CPE that ignores cookies gets a connection of its
        own, as a real one has: the ACS can then only know it by that connection."""
        if "ignore-cookies" not in cpe.profiles:
            return self.http
        own = self._own_http.get(cpe.serial)
        if own is None:
            own = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=1, ssl=self._tls if self._tls is not None else True
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=self.http.timeout,
            )
            self._own_http[cpe.serial] = own
        return own

    def count(self, kind: str, detail: str = "") -> None:
        self.counters[(kind, detail)] += 1

    def change_value(self, serial: str, path: str, value: str) -> None:
        """The device itself changes a value (a user on its web page, a link going down).

        With active notification on that parameter it opens a session at once
        (TR-069 3.2.1: 4 VALUE CHANGE); with passive, the next session carries it.
        """
        cpe = self.devices[serial]
        cpe.tree.set_value_internal(path, value)
        if cpe.tree.has_active_notification_change():
            self.wake(cpe)

    async def trigger(self, serial: str, event: str = "6 CONNECTION REQUEST") -> None:
        """Start a session of one device now, with an event, and wait for it to end."""
        cpe = self.devices[serial]
        waiter = asyncio.get_running_loop().create_future()
        cpe.session_waiters.append(waiter)
        cpe.add_event(event)
        self.wake(cpe)
        await waiter

    async def wait_for(self, predicate: Any, within_s: float = 30.0, poll: float = 0.05) -> None:
        """Wait until ``predicate()`` is true (tests)."""
        deadline = time.monotonic() + within_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached in time")
            await asyncio.sleep(poll)

    def summary(self) -> dict[str, Any]:
        ok = sum(c.sessions_ok for c in self.devices.values())
        failed = sum(c.sessions_failed for c in self.devices.values())
        up = sum(1 for c in self.devices.values() if c.state == "up")
        return {
            "devices": len(self.devices),
            "online": up,
            "sessions_ok": ok,
            "sessions_failed": failed,
            "in_session": sum(1 for c in self.devices.values() if c.in_session),
            "faults": {
                f"{k}:{d}": n
                for (k, d), n in sorted(self.counters.items())
                if k not in ("http", "acs_rpc")
            },
            # the ACS's requests by RPC: how many round trips its work took
            "acs_rpcs": {d: n for (k, d), n in sorted(self.counters.items()) if k == "acs_rpc"},
            # every HTTP status the ACS answered with, e.g. {"200": .., "204": .., "503": ..}
            "http": {d: n for (k, d), n in sorted(self.counters.items()) if k == "http"},
        }
