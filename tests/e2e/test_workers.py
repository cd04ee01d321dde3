"""`acs serve --workers 2`: two real processes sharing the ports and one database.

The CPEs are the simulator; half of them open a new TCP connection for every
POST of a session (TR-069 allows it), and the rest share one keep-alive pool,
so a session's POSTs land on both workers and must be relayed to the one that
holds the session. What is checked is what the devices saw: each job ran once
on its CPE (``requests_seen``), and every job finished.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acs.store import tokens
from acs.store.db import connect
from cpe_simulator.fleet import Fleet, FleetConfig
from tests.e2e.test_simulator_fleet import FAST
from tests.e2e.test_survival import (  # noqa: F401  (fresh_database is a fixture)
    AcsProcess,
    free_ports,
    fresh_database,
    wait_until,
)

pytestmark = pytest.mark.db

DEVICES = 48
SSID = "Device.WiFi.SSID.1.SSID"


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric: labels -> value."""
    found = {}
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', match.group(1))))
            found[labels] = float(match.group(2))
    return found


def by_worker(samples: dict[tuple[tuple[str, str], ...], float], **want: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for labels, value in samples.items():
        d = dict(labels)
        if all(d.get(k) == v for k, v in want.items()):
            total[d["worker"]] += int(value)
    return total


async def test_two_workers_run_each_job_once_and_relay_sessions_between_them(
    fresh_database: str,  # noqa: F811
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="acs-workers-"))
    cwmp_port, api_port, files_port = free_ports(3)
    env = {
        **os.environ,
        "ACS_DATABASE_URL": fresh_database,
        "ACS_DATA_DIR": str(workdir),
        "ACS_HOST": "127.0.0.1",
        "ACS_CWMP_PORT": str(cwmp_port),
        "ACS_API_PORT": str(api_port),
        "ACS_FILES_PORT": str(files_port),
        "ACS_STUN_PORT": "0",
        "ACS_WORKERS": "2",
        "ACS_CPE_AUTH": "digest",
        "ACS_CPE_USERNAME": "cpe",
        "ACS_CPE_PASSWORD": "cpe-pw",
        "ACS_CONNECTION_REQUEST_USERNAME": "cr",
        "ACS_CONNECTION_REQUEST_PASSWORD": "cr-secret",
        "ACS_SESSION_TIMEOUT_S": "20",
        "ACS_DEFAULT_POLICIES": "false",
        "ACS_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    acs = AcsProcess(env, workdir / "acs.log")
    conn = await connect(fresh_database)
    try:
        secret = await tokens.create_token(conn, "workers-test", "admin")
    finally:
        await conn.close()

    def fleet(prefix: str, n: int, faults: str) -> Fleet:
        return Fleet(
            FleetConfig(
                acs_url=f"http://127.0.0.1:{cwmp_port}/",
                devices=n,
                serial_prefix=prefix,
                username="cpe",
                password="cpe-pw",
                timing=FAST,
                periodic_interval=3600,  # sessions only at boot and when knocked
                faults=faults,
            )
        )

    main = fleet("WRK", DEVICES, "new-connection:0.5")
    # a CPE with neither cookie nor connection: only its address says whose it is
    bare = fleet("WRKBARE", 1, "ignore-cookies,new-connection")
    fleets = [main]
    http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"})

    async def call(method: str, path: str, status: int = 200, **kw: Any) -> Any:
        async with http.request(method, f"{acs.api}/api/v1{path}", **kw) as resp:
            body = await resp.json()
            assert resp.status == status, (method, path, resp.status, body)
            return body

    async def metrics() -> str:
        async with http.get(f"{acs.api}/metrics") as resp:
            assert resp.status == 200
            return await resp.text()

    def device_id(f: Fleet, serial: str) -> str:
        from acs.store.ids import device_id as make

        return make(f.config.oui, f.config.product_class, serial)

    try:
        await acs.start()
        await main.start()
        await main.wait_for(lambda: all(c.sessions_ok for c in main.devices.values()), 90)
        assert {p for c in main.devices.values() for p in c.profiles} == {"new-connection"}
        assert 0 < sum("new-connection" in c.profiles for c in main.devices.values()) < DEVICES

        # a job per device, and a Reboot for every third; then knock them all at once
        jobs: dict[int, tuple[str, str]] = {}
        serials = sorted(main.devices)
        for i, serial in enumerate(serials):
            dev = device_id(main, serial)
            key = f"w-{serial}"
            body = {
                "name": "setParameterValues",
                "parameterValues": [[SSID, key]],
                "parameterKey": key,
            }
            job = await call("POST", f"/devices/{dev}/tasks", 201, json=body)
            jobs[job["id"]] = (serial, "spv")
            if i % 3 == 0:
                job = await call("POST", f"/devices/{dev}/tasks", 201, json={"name": "reboot"})
                jobs[job["id"]] = (serial, "reboot")
        for serial in serials:
            answer = await call("POST", f"/devices/{device_id(main, serial)}/connection-request")
            assert answer["ok"], answer

        async def all_finished() -> bool:
            conn = await connect(fresh_database)
            try:
                open_jobs = await conn.fetchval(
                    "SELECT count(*) FROM tasks WHERE id = ANY($1::bigint[]) AND status <> 'done'",
                    list(jobs),
                )
            finally:
                await conn.close()
            return open_jobs == 0

        await wait_until(all_finished, 90, "every job done", poll=0.5)
        rebooted = {serial for serial, kind in jobs.values() if kind == "reboot"}
        await main.wait_for(lambda: all(main.devices[s].state == "up" for s in rebooted), 30)

        # the devices' own count: each SetParameterValues and Reboot arrived exactly once
        for serial, cpe in main.devices.items():
            assert cpe.requests_seen["SetParameterValues"] == 1, (serial, cpe.requests_seen)
            assert cpe.requests_seen["Reboot"] == (1 if serial in rebooted else 0), serial
            assert cpe.tree.value(SSID) == f"w-{serial}"
        assert not [k for k in main.counters if k[0] == "session_failed"], main.counters
        assert ("http", "500") not in main.counters

        # both workers served sessions, and sessions crossed between them
        text = await metrics()
        sessions = series(text, "acs_cwmp_sessions_total")
        completed = by_worker(sessions, outcome="completed")
        assert completed["0"] > 0 and completed["1"] > 0, completed
        relayed = by_worker(series(text, "acs_cwmp_relayed_total"), reason="cookie")
        assert sum(relayed.values()) > 0, relayed

        # a cookie-less CPE on new connections, alone at its address: found by
        # address through PostgreSQL. Each POST lands on a worker at random, so
        # thirty sessions make a crossing all but certain.
        fleets.append(bare)
        await bare.start()
        cpe = next(iter(bare.devices.values()))
        await bare.wait_for(lambda: cpe.sessions_ok >= 1, 30)
        for _ in range(30):
            found = by_worker(series(await metrics(), "acs_cwmp_relayed_total"), reason="address")
            if sum(found.values()) > 0:
                break
            before = cpe.sessions_ok
            await bare.trigger(cpe.serial)
            assert cpe.sessions_ok == before + 1, cpe.last_session
        else:
            raise AssertionError("no session of the cookie-less CPE crossed workers")
        assert cpe.sessions_failed == 0, cpe.last_session

        # a worker that dies is restarted by the parent, and the server goes on
        pids = re.findall(r"event=worker_started worker=1 pid=(\d+)", acs.log_path.read_text())
        os.kill(int(pids[-1]), signal.SIGKILL)

        async def restarted() -> bool:
            log = acs.log_path.read_text()
            # ready: listening, its signal handlers set (a worker still starting
            # is simply killed by the SIGTERM of a stop; it has nothing to finish)
            return (
                "event=worker_died worker=1" in log
                and len(re.findall(r"event=worker_ready worker=1 ", log)) == 2
            )

        await wait_until(restarted, 20, "worker 1 restarted")
        before = cpe.sessions_ok
        await bare.trigger(cpe.serial)
        assert cpe.sessions_ok == before + 1, cpe.last_session
    finally:
        await http.close()
        for f in fleets:
            await f.stop()
        acs.stop()
        log_text = acs.log_path.read_text() if acs.log_path.exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
    assert acs.proc is not None and acs.proc.returncode == 0, log_text[-3000:]
    for trouble in ("Traceback", "Error handling request", "event=workers_crash_loop"):
        assert trouble not in log_text, log_text[-3000:]
    assert "event=worker_stopped worker=0 exitcode=0" in log_text
    assert "event=worker_stopped worker=1 exitcode=0" in log_text
    assert log_text.count("CWMP (give CPEs this ACS URL)") == 1
