"""Two `acs serve` hosts behind a TCP balancer with no affinity: every new
connection goes to a host picked at random, and the simulated CPEs open a new
connection for every POST, so a session's requests land on both hosts and must
be relayed to the one that owns it (acs/web/host_relay.py). Then the relay listener's refusals
(unsigned, forged, replayed, stale), and one host SIGKILLed: its CPEs carry on
with the other once their dead sessions' leases run out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acs.core import relay_auth
from acs.store import tokens
from acs.store.db import connect
from acs.store.ids import device_id as make_device_id
from acs.web.host_relay import (
    DATE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    HostRelay,
    host_id_of,
)
from cpe_simulator.fleet import Fleet, FleetConfig
from tests.e2e.test_simulator_fleet import FAST
from tests.e2e.test_survival import (  # noqa: F401  (fresh_database is a fixture)
    AcsProcess,
    free_ports,
    fresh_database,
    inform_envelope,
    wait_until,
)
from tests.e2e.test_workers import series

pytestmark = pytest.mark.db

SECRET = "cluster-secret-" + "x" * 32
DEVICES = 12
SSID = "Device.WiFi.SSID.1.SSID"


class Balancer:
    """A TCP balancer without affinity: each connection to a host picked at random
    (strict turns would send a cookie-less CPE's retry after a 401 back to the same
    host every time); a host refusing connections is skipped, as a load balancer's
    health check would."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.rng = random.Random(21)
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = self.rng.randrange(len(self.ports))
        upstream = None
        for i in range(len(self.ports)):
            port = self.ports[(first + i) % len(self.ports)]
            with contextlib.suppress(OSError):
                upstream = await asyncio.open_connection("127.0.0.1", port)
                break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


def host_env(database: str, workdir: Path, name: str) -> dict[str, str]:
    cwmp_port, api_port, files_port, relay_port = free_ports(4)
    data = workdir / name
    data.mkdir()
    return {
        **os.environ,
        "ACS_DATABASE_URL": database,
        "ACS_DATA_DIR": str(data),
        "ACS_HOST": "127.0.0.1",
        "ACS_HOST_NAME": name,
        "ACS_CWMP_PORT": str(cwmp_port),
        "ACS_API_PORT": str(api_port),
        "ACS_FILES_PORT": str(files_port),
        "ACS_STUN_PORT": "0",
        "ACS_CLUSTER_SECRET": SECRET,
        "ACS_RELAY_LISTEN": f"127.0.0.1:{relay_port}",
        "ACS_SECRETS_KEY": "k" * 40,
        "ACS_CPE_AUTH": "digest",
        "ACS_CPE_USERNAME": "cpe",
        "ACS_CPE_PASSWORD": "cpe-pw",
        "ACS_CONNECTION_REQUEST_USERNAME": "cr",
        "ACS_CONNECTION_REQUEST_PASSWORD": "cr-secret",
        "ACS_SESSION_TIMEOUT_S": "3",
        "ACS_DEFAULT_POLICIES": "false",
        "ACS_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


async def test_sessions_cross_hosts_through_the_relay_and_survive_a_dead_host(
    fresh_database: str,  # noqa: F811
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="acs-cluster-relay-"))
    env_a = host_env(fresh_database, workdir, "host-a")
    env_b = host_env(fresh_database, workdir, "host-b")
    a = AcsProcess(env_a, workdir / "a.log")
    b = AcsProcess(env_b, workdir / "b.log")
    balancer = Balancer([int(env_a["ACS_CWMP_PORT"]), int(env_b["ACS_CWMP_PORT"])])
    lb_port = await balancer.start()
    conn = await connect(fresh_database)
    try:
        secret = await tokens.create_token(conn, "relay-test", "admin")
    finally:
        await conn.close()
    http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"})

    def fleet(prefix: str, n: int, faults: str) -> Fleet:
        return Fleet(
            FleetConfig(
                acs_url=f"http://127.0.0.1:{lb_port}/",
                devices=n,
                serial_prefix=prefix,
                username="cpe",
                password="cpe-pw",
                timing=FAST,
                periodic_interval=3600,
                faults=faults,
            )
        )

    main = fleet("HRL", DEVICES, "new-connection")
    bare = fleet("HRLBARE", 1, "ignore-cookies,new-connection")
    fleets: list[Fleet] = []

    async def call(acs: AcsProcess, method: str, path: str, status: int, **kw: Any) -> Any:
        async with http.request(method, f"{acs.api}/api/v1{path}", **kw) as resp:
            body = await resp.json()
            assert resp.status == status, (method, path, resp.status, body)
            return body

    async def relayed(reason: str) -> float:
        total = 0.0
        for acs in (a, b):
            async with http.get(f"{acs.api}/metrics") as resp:
                text = await resp.text()
            total += series(text, "acs_cwmp_relayed_total").get((("reason", reason),), 0)
        return total

    def dev(f: Fleet, serial: str) -> str:
        return make_device_id(f.config.oui, f.config.product_class, serial)

    try:
        await a.start()
        await b.start()
        fleets.append(main)
        await main.start()
        await main.wait_for(lambda: all(c.sessions_ok for c in main.devices.values()), 90)
        # a job per device, knocked from host a's API; the sessions cross hosts
        jobs: dict[int, str] = {}
        for serial in sorted(main.devices):
            body = {
                "name": "setParameterValues",
                "parameterValues": [[SSID, f"h-{serial}"]],
                "parameterKey": f"h-{serial}",
            }
            job = await call(a, "POST", f"/devices/{dev(main, serial)}/tasks", 201, json=body)
            jobs[job["id"]] = serial
        for serial in sorted(main.devices):
            answer = await call(a, "POST", f"/devices/{dev(main, serial)}/connection-request", 200)
            assert answer["ok"], answer

        async def all_done() -> bool:
            conn = await connect(fresh_database)
            try:
                left = await conn.fetchval(
                    "SELECT count(*) FROM tasks WHERE id = ANY($1::bigint[]) AND status <> 'done'",
                    list(jobs),
                )
            finally:
                await conn.close()
            return left == 0

        await wait_until(all_done, 90, "every job done", poll=0.5)
        for serial, cpe in main.devices.items():
            assert cpe.requests_seen["SetParameterValues"] == 1, (serial, cpe.requests_seen)
            assert cpe.tree.value(SSID) == f"h-{serial}"
        assert not [k for k in main.counters if k[0] == "session_failed"], main.counters
        assert ("http", "500") not in main.counters
        assert await relayed("host_cookie") > 0

        # a CPE without cookies on new connections: found by its address in PostgreSQL
        fleets.append(bare)
        await bare.start()
        lone = next(iter(bare.devices.values()))
        await bare.wait_for(lambda: lone.sessions_ok >= 1, 30)
        for _ in range(20):
            if await relayed("host_address") > 0:
                break
            await bare.trigger(lone.serial)
        assert await relayed("host_address") > 0, "no cookie-less session crossed hosts"
        assert lone.sessions_failed == 0, lone.last_session

        # ---- the relay listener refuses what the cluster did not sign, and says so
        relay_b = f"http://{env_b['ACS_RELAY_LISTEN']}/"
        async with aiohttp.ClientSession() as raw:
            async with raw.post(relay_b, data=b"") as resp:
                assert resp.status == 403 and "unsigned" in await resp.text()
            signer = HostRelay("tester", SECRET, None, None, None)  # type: ignore[arg-type]
            good = signer.signed_headers("POST", "/", b"", "127.0.0.1", "http", None)
            forged = HostRelay("tester", "another-secret-" + "y" * 32, None, None, None)  # type: ignore[arg-type]
            bad = forged.signed_headers("POST", "/", b"", "127.0.0.1", "http", None)
            async with raw.post(relay_b, data=b"", headers=bad) as resp:
                assert resp.status == 403 and "bad signature" in await resp.text()
            # the body is signed: the same headers with another body are refused
            async with raw.post(relay_b, data=b"<x/>", headers=good) as resp:
                assert resp.status == 403 and "bad signature" in await resp.text()
            async with raw.post(relay_b, data=b"", headers=good) as resp:
                assert resp.status != 403, await resp.text()
                answer = await resp.read()
                expected = relay_auth.sign_answer(
                    relay_auth.key_of(SECRET), good[NONCE_HEADER], resp.status, answer
                )
                assert resp.headers[SIGNATURE_HEADER] == expected  # the answer is signed
            async with raw.post(relay_b, data=b"", headers=good) as resp:
                assert resp.status == 403 and "replayed" in await resp.text()
            stale_ts = int(time.time() - 2 * relay_auth.WINDOW_S)
            stale = {
                **good,
                DATE_HEADER: str(stale_ts),
                NONCE_HEADER: "fresh-nonce-1",
                SIGNATURE_HEADER: relay_auth.sign_request(
                    relay_auth.key_of(SECRET),
                    "POST",
                    "/",
                    b"",
                    stale_ts,
                    "fresh-nonce-1",
                    ("127.0.0.1", "http", ""),
                ),
            }
            async with raw.post(relay_b, data=b"", headers=stale) as resp:
                assert resp.status == 403 and "stale" in await resp.text()
        assert "event=host_relay_refused" in b.log_path.read_text()

        # ---- a CPE restarting mid-session, back on the other host: the owner ends
        # the old session at once (asked over the relay), no 8005 until it expires
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as cpe_http:
            for acs in (a, b):
                digest = aiohttp.DigestAuthMiddleware("cpe", "cpe-pw", preemptive=False)
                async with cpe_http.post(
                    f"http://127.0.0.1:{acs.env['ACS_CWMP_PORT']}/",
                    data=inform_envelope("HRLRESTART"),
                    headers={"Content-Type": "text/xml", "Connection": "close"},
                    middlewares=(digest,),
                ) as resp:
                    answer = await resp.read()
                    assert resp.status == 200, (resp.status, answer)
                    assert b"InformResponse" in answer, answer
        assert "event=session_superseded device=ACDE48-PROBE-HRLRESTART" in a.log_path.read_text()

        # ---- host a dies; every CPE carries on through host b
        a.kill()
        started = {s: c.sessions_ok for s, c in main.devices.items()}
        for serial in sorted(main.devices):
            await main.trigger(serial)

        async def all_served_again() -> bool:
            return all(c.sessions_ok > started[s] for s, c in main.devices.items())

        await wait_until(all_served_again, 90, "every CPE served by host b")
        conn = await connect(fresh_database)
        try:
            stuck = await conn.fetchval(
                "SELECT count(*) FROM device_sessions WHERE session_id LIKE $1"
                " AND session_expires_at > now()",
                host_id_of("host-a") + "~%",
            )
        finally:
            await conn.close()
        assert stuck == 0, "sessions of the dead host still hold their devices"
        assert ("http", "500") not in main.counters
    finally:
        await http.close()
        for f in fleets:
            await f.stop()
        await balancer.close()
        a.stop()
        b.stop()
        log_b = b.log_path.read_text() if b.log_path.exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
    assert "Traceback" not in log_b, log_b[-3000:]
