"""Faults the ACS must survive, each provoked for real.

- PostgreSQL stopped (fast shutdown) and started again under a running fleet;
- the ACS process SIGKILLed with sessions and a firmware campaign in flight;
- connection-request targets that hang, refuse, or cannot be reached;
- a file-server disk that fills up during an upload.

Real parts throughout: a private PostgreSQL (the project's embedded server)
for the restart, the machine's PostgreSQL elsewhere, HTTP on 127.0.0.1, the
CPE simulator as the CPEs, and a real tmpfs for the full disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.cwmp.soap import Envelope, serialize_envelope
from acs.store import tasks, tokens
from acs.store.db import EmbeddedPostgres, connect, drop_database, ensure_database, migrate
from acs.web.server import Running, running_acs
from cpe_simulator.cpe import SimulatedCpe
from cpe_simulator.firmware import make_image
from cpe_simulator.fleet import Fleet, FleetConfig
from tests.e2e.conftest import StartAcs, cwmp_url, make_settings
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_api import Client, dev_id_of, token
from tests.e2e.test_simulator_fleet import FAST, dev_id, fleet_of

pytestmark = pytest.mark.db

REPO = Path(__file__).resolve().parents[2]
IMAGE_BYTES = 6_000_000
CPE_AUTH = {"cpe_auth": "digest", "cpe_username": "cpe", "cpe_password": "cpe-pw"}
DIGEST = ("cpe", "cpe-pw")
CR_AUTH = {"connection_request_username": "cr", "connection_request_password": "cr-secret"}


# --------------------------------------------------------------------------- helpers


class SideEffects:
    """What the simulated CPEs actually did, counted on the CPE side: the ACS's
    own records cannot prove that a job ran once, only the device can.

    ``hold(serial, rpc)`` stops that CPE in the middle of its next such RPC until
    released, so a test can cut a session at an exact point."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.set_values: Counter[tuple[str, str]] = Counter()  # (serial, ParameterKey)
        self.reboots: Counter[str] = Counter()  # serial -> reboots asked by a Reboot RPC
        self.flashes: Counter[str] = Counter()  # serial -> firmware images installed
        self.holds: dict[tuple[str, type[m.Message]], tuple[asyncio.Event, asyncio.Event]] = {}
        answer, reboot, flash = SimulatedCpe.answer, SimulatedCpe.reboot, SimulatedCpe._flash
        effects = self

        async def counting_answer(cpe: SimulatedCpe, request: m.Message) -> m.Message:
            held = effects.holds.pop((cpe.serial, type(request)), None)
            if held is not None:
                arrived, release = held
                arrived.set()
                await release.wait()
            reply = await answer(cpe, request)
            if isinstance(request, m.SetParameterValues) and isinstance(
                reply, m.SetParameterValuesResponse
            ):
                effects.set_values[(cpe.serial, request.parameter_key)] += 1
            return reply

        async def counting_reboot(cpe: SimulatedCpe, *events: tuple[str, str]) -> None:
            if any(code == "M Reboot" for code, _key in events):
                effects.reboots[cpe.serial] += 1
            await reboot(cpe, *events)

        async def counting_flash(cpe: SimulatedCpe, version: str, *rest: Any) -> None:
            effects.flashes[cpe.serial] += 1
            await flash(cpe, version, *rest)

        monkeypatch.setattr(SimulatedCpe, "answer", counting_answer)
        monkeypatch.setattr(SimulatedCpe, "_flash", counting_flash)
        monkeypatch.setattr(SimulatedCpe, "reboot", counting_reboot)

    def hold(self, serial: str, rpc: type[m.Message]) -> tuple[asyncio.Event, asyncio.Event]:
        """(arrived, release): set when the CPE has the request; set it to let it answer."""
        events = (asyncio.Event(), asyncio.Event())
        self.holds[(serial, rpc)] = events
        return events


def inform_envelope(serial: str) -> bytes:
    inform = m.Inform(
        device_id=m.DeviceIdStruct("Acme", "ACDE48", "PROBE", serial),
        events=[m.EventStruct("2 PERIODIC", "")],
        max_envelopes=1,
        current_time=datetime.now(UTC),
        retry_count=0,
        parameter_list=[],
    )
    return serialize_envelope(Envelope(body=inform, cwmp_id="probe"))


class Prober:
    """A CPE that does nothing but open sessions, to see exactly what the ACS answers
    (status, Retry-After, how long it took) while something is broken."""

    def __init__(self, running: Running, serial: str) -> None:
        self.cwmp = f"http://127.0.0.1:{running.ports['cwmp']}/"
        self.readyz = f"http://127.0.0.1:{running.ports['api']}/readyz"
        self.files = f"http://127.0.0.1:{running.ports['files']}/"
        self.serial = serial
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=20),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.digest = aiohttp.DigestAuthMiddleware("cpe", "cpe-pw", preemptive=False)

    async def inform(self) -> tuple[int, str | None, float]:
        started = time.monotonic()
        async with self.http.post(
            self.cwmp,
            data=inform_envelope(self.serial),
            headers={"Content-Type": "text/xml; charset=utf-8", "Connection": "close"},
            middlewares=(self.digest,),
        ) as resp:
            await resp.read()
            return resp.status, resp.headers.get("Retry-After"), time.monotonic() - started

    async def file(self, name: str) -> int:
        async with self.http.get(f"{self.files}{name}") as resp:
            await resp.read()
            return resp.status

    async def ready(self) -> int:
        async with self.http.get(self.readyz) as resp:
            await resp.read()
            return resp.status

    async def close(self) -> None:
        await self.http.close()


class SharedConnection:
    """CPEs behind one keep-alive connection, as behind a proxy or a pooled client:
    what befalls one CPE's request must not end another's session."""

    def __init__(self, running: Running) -> None:
        self.cwmp = f"http://127.0.0.1:{running.ports['cwmp']}/"
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1),  # every request on the one connection
            timeout=aiohttp.ClientTimeout(total=20),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.digest = aiohttp.DigestAuthMiddleware("cpe", "cpe-pw", preemptive=False)

    async def post(self, body: bytes, cookie: str | None = None) -> tuple[int, str | None, bytes]:
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        if cookie:
            headers["Cookie"] = cookie
        async with self.http.post(
            self.cwmp, data=body, headers=headers, middlewares=(self.digest,)
        ) as resp:
            data = await resp.read()
            set_cookie = resp.headers.get("Set-Cookie")
            return resp.status, set_cookie.split(";")[0] if set_cookie else None, data

    async def close(self) -> None:
        await self.http.close()


async def wait_until(predicate: Any, within_s: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within_s} s: {what}")
        await asyncio.sleep(poll)


def server_errors(records: list[logging.LogRecord]) -> list[str]:
    """Log lines that betray a 500 or an unhandled exception anywhere in the ACS."""
    return [
        f"{r.name}: {r.getMessage()[:300]}"
        for r in records
        if "Error handling request" in r.getMessage()
        or (r.exc_info is not None and r.name.startswith(("acs", "aiohttp")))
        or "Traceback" in r.getMessage()
    ]


# --------------------------------------------------------------------------- 1. PostgreSQL restart


class PrivatePostgres:
    """The project's embedded PostgreSQL on a temp dir, for this test alone: the
    machine's shared server must never be restarted under other engineers' tests.
    EmbeddedPostgres.stop() runs ``pg_ctl stop``, whose default mode is fast:
    open transactions are rolled back and every connection is cut at once."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server: EmbeddedPostgres | None = None

    async def start(self) -> str:
        self.server = EmbeddedPostgres()
        # pg_ctl blocks; the ACS and the fleet share this event loop and must keep running
        return await asyncio.to_thread(self.server.start, self.data_dir)

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await asyncio.to_thread(server.stop)


async def job_states(pool: asyncpg.Pool, ids: list[int]) -> dict[int, tasks.Task]:
    async with pool.acquire() as conn:
        found = {i: await tasks.get_task(conn, i) for i in ids}
    return {i: t for i, t in found.items() if t is not None}


async def test_postgres_restart_mid_run_fails_sessions_cleanly_and_loses_nothing(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    effects = SideEffects(monkeypatch)
    # not under pytest's tmp_path: every pytest run on the machine resets
    # /tmp/pytest-of-<user> to mode 0700, which would lock the server's own user
    # out of its data directory in the middle of the test
    workdir = Path(tempfile.mkdtemp(prefix="acs-survival-pg-"))
    pg = PrivatePostgres(workdir / "pgdata")
    dsn = await pg.start()
    # sessions outlive the 4 s outage (the bystander's below), and the leases of the
    # sessions it cuts expire soon after it
    settings = make_settings(data_dir=workdir, session_timeout_s=8.0, **CPE_AUTH, **CR_AUTH)
    fleets: list[Fleet] = []
    try:
        async with running_acs(settings, dsn) as running:
            pool = running.pool
            busy = await fleet_of(running, "PGBUSY", 10, periodic_interval=1)
            # quiet devices only come when knocked: their jobs wait out the outage in the queue
            quiet = await fleet_of(running, "PGQUIET", 3, periodic_interval=3600)
            fleets += [busy, quiet]
            everyone = [*busy.devices.values(), *quiet.devices.values()]
            await busy.wait_for(lambda: all(c.sessions_ok >= 1 for c in everyone), 60)
            async with pool.acquire() as conn:
                secret = await tokens.create_token(conn, "pg-restart", "admin")
            api = Client(running, secret)
            status, _ = await api.call("PUT", "/files/cfg.bin", data=b"x" * 1000)
            assert status == 201
            prober = Prober(running, "PROBE0001")
            serials = list(busy.devices)

            async def enqueue(
                fleet: Fleet, serial: str, name: str, args: dict[str, Any], **kw: Any
            ) -> int:
                async with pool.acquire() as conn:
                    return (await tasks.enqueue(conn, dev_id(fleet, serial), name, args, **kw)).id

            async def set_ssid(serial: str, phase: str, **kw: Any) -> tuple[int, tuple[str, str]]:
                key = f"{phase}-{serial}"
                args = {
                    "parameterValues": [["Device.WiFi.SSID.1.SSID", key]],
                    "parameterKey": key,
                }
                return await enqueue(busy, serial, "setParameterValues", args, **kw), (serial, key)

            async def all_done(ids: list[int]) -> bool:
                states = await job_states(pool, ids)
                return all(t.status == "done" for t in states.values())

            # phase A: jobs that finish before the outage must never run again after it
            before: dict[int, tuple[str, str]] = {}
            for serial in serials[2:5]:
                job, what = await set_ssid(serial, "a")
                before[job] = what
                before[await enqueue(busy, serial, "reboot", {})] = (serial, "reboot")
            await wait_until(lambda: all_done(list(before)), 30, "phase A jobs done")
            await busy.wait_for(
                lambda: (
                    all(effects.reboots[s] == 1 for s in serials[2:5])
                    and all(busy.devices[s].state == "up" for s in serials[2:5])
                ),
                10,
            )

            # phase B: jobs due while the database is down wait in the queue...
            later: dict[int, tuple[str, str]] = {}
            due = datetime.now(UTC) + timedelta(seconds=3)
            for serial in serials[2:]:
                job, what = await set_ssid(serial, "b", not_before=due)
                later[job] = what
            quiet_reboots = {await enqueue(quiet, s, "reboot", {}): s for s in quiet.devices}
            # ... and two sessions the outage cuts at a known point, the CPE holding
            # the request: a SetParameterValues it applies, a Reboot it accepts. The
            # database goes down at once: held longer than the session timeout, the
            # session would be reaped instead of cut
            cut_spv_serial, cut_reboot_serial = serials[0], serials[1]
            spv_arrived, spv_release = effects.hold(cut_spv_serial, m.SetParameterValues)
            reboot_arrived, reboot_release = effects.hold(cut_reboot_serial, m.Reboot)
            cut_spv, cut_spv_what = await set_ssid(cut_spv_serial, "cut")
            cut_reboot = await enqueue(busy, cut_reboot_serial, "reboot", {})
            await asyncio.wait_for(spv_arrived.wait(), 10)
            await asyncio.wait_for(reboot_arrived.wait(), 10)

            # a bystander's session is open on a connection that another CPE's Inform
            # will use during the outage
            shared = SharedConnection(running)
            status, bystander, _ = await shared.post(inform_envelope("BYSTANDER1"))
            assert status == 200 and bystander is not None

            statuses_before = Counter(busy.counters)
            assert await prober.ready() == 200
            await pg.stop()
            stopped_at = time.monotonic()
            spv_release.set()
            reboot_release.set()
            informs: list[tuple[int, str | None, float]] = []
            others: Counter[tuple[str, int]] = Counter()
            status, _, _ = await shared.post(inform_envelope("NEIGHBOUR1"))
            assert status == 503
            while time.monotonic() < stopped_at + 4.0:
                informs.append(await prober.inform())
                others[("readyz", await prober.ready())] += 1
                status, _ = await api.call("GET", f"/devices/{dev_id(busy, serials[0])}")
                others[("api", status)] += 1
                others[("files", await prober.file("cfg.bin"))] += 1
                await asyncio.sleep(0.2)
            statuses_during = Counter(busy.counters) - statuses_before
            assert await pg.start() == dsn  # same socket: the ACS's DSN still holds

            # every session opened during the outage was refused with 503 and a
            # Retry-After at once: no 500, no hang; the API and the file server too
            assert informs and all(
                status == 503 and retry == "10" and took < 5 for status, retry, took in informs
            ), informs
            assert set(others) == {("readyz", 503), ("api", 503), ("files", 503)}, others
            during = {detail: n for (kind, detail), n in statuses_during.items() if kind == "http"}
            assert during.get("503", 0) > 0 and set(during) <= {"200", "204", "401", "503"}, during
            cut = {
                serial
                for serial in (cut_spv_serial, cut_reboot_serial)
                for r in caplog.records
                if "event=database_unavailable" in r.getMessage()
                and f"device={dev_id(busy, serial)} session=" in r.getMessage()
            }
            assert len(cut) == 2, cut  # both held sessions were cut mid-way, by a 503

            # the same pool reconnects by itself: no restart of the ACS
            await wait_until(lambda: ready_again(prober), 20, "/readyz 200 again")
            status, _retry, _took = await prober.inform()
            assert status == 200
            # the neighbour's refused Inform did not end the bystander's session
            status, _, body = await shared.post(b"", bystander)
            assert status == 200 and b"GetParameterNames" in body, (status, body[:300])
            await shared.close()
            sessions_then = {s: c.sessions_ok for s, c in busy.devices.items()}
            await busy.wait_for(
                lambda: all(c.sessions_ok > sessions_then[s] for s, c in busy.devices.items()), 30
            )
            for serial in quiet_reboots.values():
                status, body = await api.call(
                    "POST", f"/devices/{dev_id(quiet, serial)}/connection-request"
                )
                assert status == 200 and body["ok"], body
            waiting = [cut_spv, cut_reboot, *later, *quiet_reboots]
            await wait_until(lambda: all_done(waiting), 40, "jobs across the outage done")
            await busy.wait_for(
                lambda: (
                    effects.reboots[cut_reboot_serial] >= 1
                    and all(effects.reboots[s] >= 1 for s in quiet.devices)
                ),
                10,
            )
            await asyncio.sleep(1.0)  # room for a reboot that should not happen
            states = await job_states(pool, [*before, *waiting])

            # done before the outage: never again
            for job, (serial, key) in before.items():
                assert states[job].attempts == 1, states[job]
                if key != "reboot":
                    assert effects.set_values[(serial, key)] == 1, (serial, key)
            # cut mid-exchange: the ACS never learned the CPE's answer, so the
            # SetParameterValues went out again (a second attempt on record); the
            # Reboot the CPE accepted in a session that failed was not carried out
            # then, and was carried out exactly once after
            assert effects.set_values[cut_spv_what] == 2 and states[cut_spv].attempts == 2
            assert states[cut_reboot].attempts == 2
            assert effects.reboots[cut_reboot_serial] == 1
            # queued across the outage: done once
            for job, what in later.items():
                assert effects.set_values[what] == 1 and states[job].attempts == 1, what
            assert all(states[job].attempts == 1 for job in quiet_reboots)
            assert all(effects.reboots[s] == 1 for s in [*serials[2:5], *quiet.devices])
            # every device has the last value it was given, and so has its stored tree
            expected = {s: f"b-{s}" for s in serials[2:]} | {cut_spv_serial: f"cut-{serials[0]}"}
            for serial, value in expected.items():
                assert busy.devices[serial].tree.value("Device.WiFi.SSID.1.SSID") == value
            async with pool.acquire() as conn:
                stored = await conn.fetch(
                    "SELECT d.serial_number, dp.tree -> 'Device.WiFi.SSID.1.SSID' ->> 'v' AS v"
                    " FROM devices d JOIN device_parameters dp ON dp.device_id = d.id"
                    " WHERE d.serial_number = ANY($1::text[])",
                    list(expected),
                )
            assert {r["serial_number"]: r["v"] for r in stored} == expected
            async with pool.acquire() as conn:
                running_jobs = await conn.fetchval(
                    "SELECT count(*) FROM tasks WHERE status = 'running'"
                )
            assert running_jobs == 0
            assert ("http", "500") not in busy.counters
            await api.close()
            await prober.close()
    finally:
        for fleet in fleets:
            await fleet.stop()
        await pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    assert server_errors(caplog.records) == []


async def ready_again(prober: Prober) -> bool:
    return await prober.ready() == 200


# --------------------------------------------------------------------------- 2. ACS killed


def free_ports(n: int) -> list[int]:
    """Ports free right now; the ACS binds them a moment later (and again after its
    restart, which is the point: CPEs keep the URL they were given)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class AcsProcess:
    """`acs serve` in a process of its own, so that it can be SIGKILLed like a
    crashed or OOM-killed server: no atexit, no cleanup, sockets cut mid-request."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = f"http://127.0.0.1:{env['ACS_API_PORT']}"

    def command(self) -> list[str]:
        entry = Path(sys.executable).with_name("acs")  # the console script of this venv
        if entry.exists():
            return [str(entry), "serve"]
        return [sys.executable, "-c", "from acs.cli import main; main()", "serve"]

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )

    async def start(self) -> None:
        self._spawn()
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"acs serve exited: {self.log_path.read_text()[-3000:]}")
                try:
                    async with http.get(f"{self.api}/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            # a bound, not a speed target: on a loaded 2-core machine the interpreter's
            # start and imports alone have taken over 20 s
            await wait_until(ready, 90, "acs serve ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


class SlowLink:
    """A throttling TCP proxy between the CPEs and the file server (a slow access
    line), so that firmware downloads are still streaming when the ACS is killed.

    The file server's kernel keeps sending what it had buffered after the process
    dies (a few MB on loopback), so only a transfer in its first megabytes when
    the ACS is killed is really cut: ``early()`` counts those. One response per
    connection: then a response cut short is easy to tell."""

    def __init__(self, upstream_port: int, bytes_per_s: int) -> None:
        self.upstream_port = upstream_port
        self.bytes_per_s = bytes_per_s
        self.body_sent: dict[int, int] = {}  # connection -> body bytes passed on so far
        self.cut = 0  # responses that stopped short of their Content-Length
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def early(self, below: int) -> int:
        """Responses streaming now that have passed on fewer than ``below`` bytes."""
        return sum(1 for sent in self.body_sent.values() if sent < below)

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # a small receive buffer, or the kernel would take the whole image at once
        # (loopback buffers grow to tens of MB) and hand it over after the kill
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.upstream_port))
        except OSError:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        key = id(writer)
        try:
            up_reader, up_writer = await self._connect_upstream()
        except OSError:
            writer.close()  # the file server is down: the CPE sees the connection close
            return

        async def requests() -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()

        pump = asyncio.create_task(requests())
        head, expected, got = b"", None, 0
        try:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
                if expected is None:
                    head += data
                    header, found, body = head.partition(b"\r\n\r\n")
                    if found:
                        length = re.search(rb"(?im)^content-length:\s*(\d+)", header)
                        expected, got = int(length[1]) if length else 0, len(body)
                else:
                    got += len(data)
                self.body_sent[key] = got
                if expected is not None and got >= expected:
                    break
                await asyncio.sleep(len(data) / self.bytes_per_s)
        except OSError:
            pass
        finally:
            if expected is not None and got < expected:
                self.cut += 1
            self.body_sent.pop(key, None)
            pump.cancel()
            writer.close()
            up_writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def fresh_database(pg_admin_url: str) -> AsyncIterator[str]:
    """A database of its own: the killed ACS leaves session leases and jobs behind,
    and nothing else may see them."""
    name = f"acs_survival_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    conn = await connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    try:
        yield url
    finally:
        await drop_database(pg_admin_url, name)


async def test_acs_killed_mid_campaign_resumes_and_flashes_each_device_once(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    effects = SideEffects(monkeypatch)
    workdir = Path(tempfile.mkdtemp(prefix="acs-survival-kill-"))
    cwmp_port, api_port, files_port = free_ports(3)
    # 4 MB/s per transfer: a 6 MB image takes 1.5 s to arrive
    link = SlowLink(files_port, 4_000_000)
    link_port = await link.start()
    env = {
        **os.environ,
        "ACS_DATABASE_URL": fresh_database,
        "ACS_DATA_DIR": str(workdir),
        "ACS_HOST": "127.0.0.1",
        "ACS_CWMP_PORT": str(cwmp_port),
        "ACS_API_PORT": str(api_port),
        "ACS_FILES_PORT": str(files_port),
        "ACS_STUN_PORT": "0",
        "ACS_FILES_PUBLIC_URL": f"http://127.0.0.1:{link_port}/",
        "ACS_CPE_AUTH": "digest",
        "ACS_CPE_USERNAME": "cpe",
        "ACS_CPE_PASSWORD": "cpe-pw",
        "ACS_CONNECTION_REQUEST_USERNAME": "cr",
        "ACS_CONNECTION_REQUEST_PASSWORD": "cr-secret",
        "ACS_CAMPAIGN_TICK_S": "0.5",
        "ACS_SESSION_TIMEOUT_S": "3",
        "ACS_DEFAULT_POLICIES": "false",
        "ACS_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",  # what it printed before the SIGKILL must be in the log
    }
    acs = AcsProcess(env, workdir / "acs.log")
    conn = await connect(fresh_database)
    try:
        secret = await tokens.create_token(conn, "kill-test", "admin")
    finally:
        await conn.close()
    fleet = Fleet(
        FleetConfig(
            acs_url=f"http://127.0.0.1:{cwmp_port}/",
            devices=30,
            serial_prefix="KILL",
            username="cpe",
            password="cpe-pw",
            timing=FAST,
            periodic_interval=1,
        )
    )
    http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"})

    async def call(method: str, path: str, status: int = 200, **kw: Any) -> Any:
        async with http.request(method, f"{acs.api}/api/v1{path}", **kw) as resp:
            body = await resp.json()
            assert resp.status == status, (method, path, resp.status, body)
            return body

    try:
        await acs.start()
        await fleet.start()
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 60)
        await call("PUT", "/files/fw-2.0.0.bin", 201, data=make_image("2.0.0", IMAGE_BYTES))
        image = await call(
            "POST",
            "/firmware/images",
            201,
            json={
                "file": "fw-2.0.0.bin",
                "oui": "ACDE48",
                "productClass": "HGW",
                "hardwareVersions": ["HW1.0"],
                "version": "2.0.0",
            },
        )
        spec = {
            "name": "kill-mid-campaign",
            "image": image["id"],
            "filter": 'DeviceID.SerialNumber LIKE "KILL%"',
            "stages": [{"size": "30%"}, {"size": "100%"}],
            "maxInFlight": 10,
            "maxAttempts": 3,
            "retryBackoffS": 0.5,
            # how long a transfer and reboot may take, a real-time property: on a loaded
            # 2-core machine one 6 MB transfer has taken 22 s, and a "lost" verdict
            # on a transfer still streaming would retry it and flash the CPE twice
            "verifyTimeoutS": 60,
        }
        cid = (await call("POST", "/campaigns", 201, json=spec))["id"]
        await call("POST", f"/campaigns/{cid}/start")

        def states(body: dict[str, Any]) -> Counter[str]:
            total: Counter[str] = Counter()
            for stage in body["stages"]:
                total.update(stage["states"])
            return total

        async def mid_flight() -> bool:
            now = states(await call("GET", f"/campaigns/{cid}"))
            # a transfer in its first megabyte: more than the kernel buffers is still to come
            return now["succeeded"] >= 3 and link.early(1_000_000) >= 1

        await wait_until(mid_flight, 120, "a download streaming", poll=0.02)
        acs.kill()
        await asyncio.sleep(2.0)  # CPEs find nobody: sessions and transfers fail, and retry
        await acs.start()

        async def completed() -> bool:
            return (await call("GET", f"/campaigns/{cid}"))["status"] == "completed"

        await wait_until(completed, 150, "campaign completed after the restart", poll=0.3)
        done = await call("GET", f"/campaigns/{cid}")
        failed = await call("GET", f"/campaigns/{cid}/devices?state=failed&limit=100")
        # one outage costs a device at most one attempt of three: every device made it
        assert done["totals"] == {"succeeded": 30}, (done["totals"], failed["items"])
        assert all(c.tree.software_version == "2.0.0" for c in fleet.devices.values())

        conn = await connect(fresh_database)
        try:
            rows = await conn.fetch(
                "SELECT cd.device_id, cd.attempts,"
                " count(t.id) AS downloads,"
                " count(t.id) FILTER (WHERE t.status = 'done') AS done"
                " FROM campaign_devices cd"
                " LEFT JOIN tasks t ON t.device_id = cd.device_id AND t.name = 'download'"
                "  AND t.args->>'commandKey' LIKE $2"
                " WHERE cd.campaign_id = $1 GROUP BY cd.device_id, cd.attempts",
                cid,
                f"campaign-{cid}-%",
            )
            cut_short = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE name = 'download' AND status = 'fault'"
                " AND fault_code IN (9015, 9017)"
            )
            left_running = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE status = 'running'"
            )
            leases = await conn.fetchval(
                "SELECT count(*) FROM device_sessions WHERE session_expires_at < now()"
            )
        finally:
            await conn.close()
        assert link.cut >= 1  # the kill did cut transfers in the middle
        assert cut_short >= 1  # ... which the CPEs reported (9015/9017) and the campaign retried
        assert len(rows) == 30
        for r in rows:
            # one Download per attempt, and exactly one that completed
            assert r["downloads"] == r["attempts"] and r["done"] == 1, dict(r)
        assert left_running == 0
        assert leases == 0  # every lease the killed process held was taken over or released
        # on the CPE side: each device downloaded and flashed the image once (a
        # Download sent again after the kill would make it flash twice), nothing crashed
        assert effects.flashes == Counter(dict.fromkeys(fleet.devices, 1)), effects.flashes
        assert fleet.counters[("transfer", "ok")] == 30, fleet.counters
        assert not [k for k in fleet.counters if k[0] == "session_crashed"], fleet.counters
    finally:
        await http.close()
        await fleet.stop()
        acs.stop()
        await link.stop()
        log_text = (workdir / "acs.log").read_text() if (workdir / "acs.log").exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
    # the log of both lives of the ACS: no 500, no traceback
    for trouble in ("Traceback", "Error handling request"):
        assert trouble not in log_text, log_text[-3000:]
    assert log_text.count("CWMP (give CPEs this ACS URL)") == 2


# --------------------------------------------------------------------------- 3. dead CR targets

CR_TIMEOUT_S = 1.0
# a documentation prefix (RFC 3849), routed nowhere; 10.255.255.1 as well, though some
# sandboxes answer every outbound IPv4 connection through a proxy of their own
UNROUTABLE = ("http://[2001:db8::1]:7547/cr", "http://10.255.255.1:7547/cr")


class HangingTarget:
    """A CPE web server that accepts and reads the request, then never answers."""

    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0  # connections open at once, at worst
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self._writers.append(writer)
        try:
            with contextlib.suppress(OSError):
                await reader.read(4096)  # the request; never answered
                while await reader.read(4096):  # until the ACS gives up and hangs up
                    pass
        finally:
            self.open -= 1

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self.server is not None:
            self.server.close()


async def timed(api: Client, method: str, path: str) -> tuple[int, Any, float]:
    started = time.monotonic()
    status, body = await api.call(method, path)
    return status, body, time.monotonic() - started


async def test_dead_connection_request_targets_answer_in_time_and_starve_nobody(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    running = await start_acs(
        **CPE_AUTH,
        **CR_AUTH,
        connection_request_timeout_s=CR_TIMEOUT_S,
        # small on purpose: a hung target must not be able to take every slot
        connection_request_concurrency=6,
    )
    api = Client(running, await token(db_pool, "operator", unique_serial))
    hanging = HangingTarget()
    hang_port = await hanging.start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    targets = {
        "hanging": f"http://127.0.0.1:{hang_port}/cr",
        "refused": f"http://127.0.0.1:{closed.getsockname()[1]}/cr",
        "unroutable-v6": UNROUTABLE[0],
        "unroutable-v4": UNROUTABLE[1],
    }
    doubles = {
        name: CpeDouble(cwmp_url(running), unique_serial("CR"), cr_url=url, digest=DIGEST)
        for name, url in targets.items()
    }
    # more devices behind the same hung host (a NAT, a broken CPE firmware family)
    hung_family = [
        CpeDouble(cwmp_url(running), unique_serial("CRH"), cr_url=url, digest=DIGEST)
        for url in (f"{targets['hanging']}/{i}" for i in range(10))
    ]
    healthy = await fleet_of(running, unique_serial("CRok"))
    try:
        for cpe in [*doubles.values(), *hung_family]:
            await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        serial = next(iter(healthy.devices))
        await healthy.wait_for(lambda: healthy.devices[serial].sessions_ok >= 1)
        ids = {name: dev_id_of(cpe) for name, cpe in doubles.items()}
        ok_id = dev_id(healthy, serial)
        slack = 1.0  # the API's own work, on a loaded machine

        # each kind of dead target: an answer within the timeout that says what happened
        expected = {
            "hanging": ("timeout after 1.0 s",),
            "refused": ("connection refused",),
            "unroutable-v6": ("timeout after 1.0 s", "unreachable"),
        }
        for name, dev in ids.items():
            status, body, took = await timed(api, "POST", f"/devices/{dev}/connection-request")
            assert status == 200 and body["ok"] is False, (name, status, body)
            assert took < CR_TIMEOUT_S + slack and body["elapsedS"] <= CR_TIMEOUT_S + 0.2
            if name in expected:
                assert any(r in body["reason"] for r in expected[name]), (name, body)
            # a job with a knock: queued, and 504 with the same reason
            started = time.monotonic()
            status, job = await api.call(
                "POST",
                f"/devices/{dev}/tasks?connection_request=true&timeout=5",
                json={"name": "getParameterValues", "parameterNames": ["Device.DeviceInfo."]},
            )
            assert status == 504 and job["status"] == "pending", (name, status, job)
            assert job["connectionRequest"]["reason"] == body["reason"] or name.startswith(
                "unroutable"
            )
            assert time.monotonic() - started < CR_TIMEOUT_S + slack

        # a storm of knocks at hung targets, the same device over and over and its
        # neighbours behind the same host, while the healthy device is knocked
        storm = [
            timed(api, "POST", f"/devices/{ids['hanging']}/connection-request") for _ in range(20)
        ] + [
            timed(api, "POST", f"/devices/{dev_id_of(cpe)}/connection-request")
            for cpe in hung_family
        ]
        stormed = [asyncio.ensure_future(call) for call in storm]
        await asyncio.sleep(0.2)  # the storm has taken what it can
        status, body, took = await timed(api, "POST", f"/devices/{ok_id}/connection-request")
        assert status == 200 and body["ok"], body
        assert took < 0.5, (took, body)  # no wait behind the hung knocks
        await healthy.wait_for(lambda: healthy.devices[serial].sessions_ok >= 2, 10)
        for status, body, took in await asyncio.gather(*stormed):
            # every channel is named: HTTP timed out, UDP had no binding to try
            assert status == 200 and not body["ok"] and body["reason"].startswith("http: timeout")
            assert took < CR_TIMEOUT_S + slack, (took, body)
        assert hanging.most_open <= 4  # ACS_CONNECTION_REQUEST_PER_HOST's default
    finally:
        await api.close()
        await healthy.stop()
        for cpe in [*doubles.values(), *hung_family]:
            await cpe.close()
        await hanging.stop()
        closed.close()


# --------------------------------------------------------------------------- 4. full disk


@pytest.fixture
def tiny_filesystem() -> Iterator[Path]:
    """A real 1 MiB tmpfs for the ACS's data directory: writes past it fail with
    ENOSPC from the kernel, as on a full disk. Mounting needs root (or CAP_SYS_ADMIN)."""
    mount = Path(tempfile.mkdtemp(prefix="acs-survival-disk-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


async def test_full_disk_refuses_the_upload_with_507_and_stores_nothing(
    start_acs: StartAcs, db_pool: asyncpg.Pool, tiny_filesystem: Path, unique_serial
) -> None:
    running = await start_acs(data_dir=tiny_filesystem)
    admin = Client(running, await token(db_pool, "admin", unique_serial))
    files_dir = tiny_filesystem / "files"
    big, small = f"{unique_serial('big')}.bin", f"{unique_serial('small')}.bin"
    try:
        status, body = await admin.call("PUT", f"/files/{big}", data=b"x" * 2_000_000)
        assert status == 507, (status, body)
        assert body["error"]["code"] == "storage_error"
        message = body["error"]["message"]
        assert "no space left" in message and "nothing was stored" in message, message
        # nothing half-stored: no row, no temporary file, and the space is free again
        status, _ = await admin.call("GET", f"/files/{big}")
        assert status == 404
        assert [p.name for p in files_dir.iterdir()] == []
        assert shutil.disk_usage(tiny_filesystem).used < 100_000

        # what fits still goes in, and is served
        content = os.urandom(300_000)
        status, body = await admin.call("PUT", f"/files/{small}", data=content)
        assert status == 201, body
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{running.ports['files']}/{small}") as resp:
                assert resp.status == 200 and await resp.read() == content

        # replacing it with something that does not fit keeps the old file whole
        status, body = await admin.call("PUT", f"/files/{small}?replace=true", data=b"y" * 900_000)
        assert status == 507 and "no space left" in body["error"]["message"], body
        status, meta = await admin.call("GET", f"/files/{small}")
        assert status == 200 and meta["size"] == len(content)
        assert [p.name for p in files_dir.iterdir()] == [small]
        assert (files_dir / small).read_bytes() == content
    finally:
        await admin.close()
