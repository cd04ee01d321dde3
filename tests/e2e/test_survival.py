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
import logging
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.cwmp.soap import Envelope, serialize_envelope
from acs.store import tasks, tokens
from acs.store.db import EmbeddedPostgres
from acs.web.server import Running, running_acs
from cpe_simulator.cpe import SimulatedCpe
from cpe_simulator.fleet import Fleet
from tests.e2e.conftest import make_settings
from tests.e2e.test_api import Client
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db

CPE_AUTH = {"cpe_auth": "digest", "cpe_username": "cpe", "cpe_password": "cpe-pw"}
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
        self.holds: dict[tuple[str, type[m.Message]], tuple[asyncio.Event, asyncio.Event]] = {}
        answer, reboot = SimulatedCpe.answer, SimulatedCpe.reboot
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

        monkeypatch.setattr(SimulatedCpe, "answer", counting_answer)
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
    settings = make_settings(data_dir=workdir, session_timeout_s=3.0, **CPE_AUTH, **CR_AUTH)
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

            # phase B: two sessions the outage cuts at a known point, with the CPE
            # holding the request: a SetParameterValues it applies, a Reboot it accepts
            cut_spv_serial, cut_reboot_serial = serials[0], serials[1]
            spv_arrived, spv_release = effects.hold(cut_spv_serial, m.SetParameterValues)
            reboot_arrived, reboot_release = effects.hold(cut_reboot_serial, m.Reboot)
            cut_spv, cut_spv_what = await set_ssid(cut_spv_serial, "cut")
            cut_reboot = await enqueue(busy, cut_reboot_serial, "reboot", {})
            await asyncio.wait_for(spv_arrived.wait(), 10)
            await asyncio.wait_for(reboot_arrived.wait(), 10)
            # and jobs due while the database is down: they wait in the queue
            due_s = 1.5
            later: dict[int, tuple[str, str]] = {}
            for serial in serials[2:]:
                job, what = await set_ssid(
                    serial, "b", not_before=datetime.now(UTC) + timedelta(seconds=due_s)
                )
                later[job] = what
            quiet_reboots = {await enqueue(quiet, s, "reboot", {}): s for s in quiet.devices}

            statuses_before = Counter(busy.counters)
            assert await prober.ready() == 200
            await pg.stop()
            stopped_at = time.monotonic()
            spv_release.set()
            reboot_release.set()
            informs: list[tuple[int, str | None, float]] = []
            others: Counter[tuple[str, int]] = Counter()
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
            cut = [
                r.getMessage()
                for r in caplog.records
                if "event=database_unavailable" in r.getMessage()
                and any(f"{s}" in r.getMessage() for s in (cut_spv_serial, cut_reboot_serial))
            ]
            assert len(cut) >= 2, cut  # both held sessions were cut mid-way, by a 503

            # the same pool reconnects by itself: no restart of the ACS
            await wait_until(lambda: ready_again(prober), 20, "/readyz 200 again")
            status, _retry, _took = await prober.inform()
            assert status == 200
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
