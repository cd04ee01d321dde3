"""Knocking a NATed fleet at once: time from the API call to the session's start.

1,000 simulated CPEs behind the simulator's NAT (``--nat``: no inbound TCP, so
HTTP connection requests cannot reach them) get STUN from an enabled copy of
the shipped ``stun-behind-nat`` policy at their bootstrap, as an operator turns
it on for a fleet, and keep their bindings open at the ACS's STUN server. Once
every device has a binding and sits idle, one ``POST
/devices/{id}/connection-request`` per device goes out at once; the ACS
knocks over UDP through each binding. For each device the figure is its
``last_inform`` (the Inform of the session the knock opened, stamped by the
ACS) minus the moment its API call was sent: p50 and p99 over the fleet.

The ACS is its own process (`acs serve`) with the default knock settings
(ACS_CONNECTION_REQUEST_CONCURRENCY 50, _TIMEOUT_S 5): a UDP knock holds a
slot only while it sends, and the process's one watcher sees all waiting
sessions in one statement per tick, so the slot count does not bound how many
NATed devices are knocked at once. ``--concurrency``/``--timeout`` set them
for a comparison. The simulator runs in this process.

    python -m bench.knock            # 1,000 CPEs (about two minutes here)
    python -m bench.knock --quick    # 50 CPEs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from acs.config import Settings
from acs.services.provisioning import stun_policy
from bench import common
from cpe_simulator.fleet import Fleet, FleetConfig

SCENARIO = "nat-knock"
GOAL_P99_S = 2.0  # issue 16: the job runs within 2 s of the API call, here for every device


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _outcome(status: int, body: dict[str, Any]) -> str:
    """ "udp ok", or each channel's outcome of a failed knock ("http=refused udp=timeout")."""
    if status != 200:
        return f"HTTP {status}"
    if body.get("ok"):
        return f"{body.get('channel')} ok"
    channels = body.get("channels") or {}
    return " ".join(f"{ch}={c.get('outcome') or 'not tried'}" for ch, c in sorted(channels.items()))


async def wait(what: str, check: Any, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {limit_s:.0f} s")
        await asyncio.sleep(0.5)


STALL_S = 60.0  # no new binding for this long: the stragglers' setup sessions failed


async def wait_for_bindings(pool: asyncpg.Pool, fleet: Fleet, devices: int) -> int:
    """Until every device has a STUN binding; how many had to be nudged.

    On a loaded machine a bootstrap in the 1,000-device storm can fail, and the
    simulated CPE then waits out TR-069's session retry back-off (minutes): a
    device whose setup has stalled gets a session started by hand (a new
    bootstrap), which is setup, not part of the knocks measured."""
    deadline = time.monotonic() + 1800
    seen, since, nudged = -1, time.monotonic(), 0
    while True:
        async with pool.acquire() as conn:
            n = await conn.fetchval("SELECT count(*) FROM udp_bindings")
        if n >= devices:
            return nudged
        if time.monotonic() > deadline:
            raise RuntimeError(f"every device's STUN binding: {n}/{devices} after 1800 s")
        if n != seen:
            seen, since = n, time.monotonic()
        elif time.monotonic() - since > STALL_S:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT d.serial_number FROM devices d"
                    " LEFT JOIN udp_bindings b ON b.device_id = d.id WHERE b.device_id IS NULL"
                )
            for r in rows:
                cpe = fleet.devices.get(r["serial_number"])
                if cpe is not None and not cpe.in_session:
                    # a bootstrap cut off mid-discovery leaves a tree of names without
                    # values, which a periodic session does not complete (so the policy
                    # never sets STUN): the device bootstraps again, as after a reset
                    cpe.add_event("0 BOOTSTRAP")
                    fleet.wake(cpe)
                    nudged += 1
            since = time.monotonic()
        await asyncio.sleep(0.5)


async def measure(acs: common.AcsProcess, devices: int, stun_port: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {acs.token}"}
    limits = aiohttp.TCPConnector(limit=0)  # every call at once: the ACS decides who waits
    http = aiohttp.ClientSession(
        headers=headers, connector=limits, timeout=aiohttp.ClientTimeout(total=300)
    )
    pool = await asyncpg.create_pool(acs.dsn, min_size=1, max_size=2)
    settings = Settings(public_host="127.0.0.1", stun_port=stun_port)
    policy = stun_policy(settings)
    spec = policy.pop("spec")
    policy |= {"name": "bench-stun", "enabled": True}
    async with http.post(f"{acs.api_url}/policies", json=policy | spec) as resp:
        if resp.status != 201:
            raise RuntimeError(f"the STUN policy: HTTP {resp.status} {await resp.text()}")
    fleet = Fleet(
        FleetConfig(
            acs_url=acs.cwmp_url,
            devices=devices,
            serial_prefix="KNK",
            username=common.CPE_USERNAME,
            password=common.CPE_PASSWORD,
            periodic_interval=3600,  # only the knock brings a device in
            nat=True,
            cr_host="127.0.0.1",
            max_concurrent=devices,
            ramp_s=min(30.0, devices / 50),
        )
    )
    try:
        await fleet.start()
        started = time.monotonic()

        nudged = await wait_for_bindings(pool, fleet, devices)
        setup_s = time.monotonic() - started

        async def idle() -> bool:
            return not any(c.in_session for c in fleet.devices.values())

        await wait("every device idle", idle, 120)
        async with pool.acquire() as conn:
            ids = [r["id"] for r in await conn.fetch("SELECT id FROM devices ORDER BY id")]
        sent_at: dict[str, float] = {}
        outcomes: Counter[str] = Counter()

        async def knock(dev: str) -> None:
            url = f"{acs.api_url}/devices/{dev}/connection-request"
            sent_at[dev] = time.time()
            try:
                async with http.post(url) as resp:
                    body = await resp.json() if resp.status == 200 else {}
                    outcomes[_outcome(resp.status, body)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcomes[type(exc).__name__] += 1

        before = Counter(fleet.counters)
        async with pool.acquire() as conn:
            # this database's backends only: the machine's other PostgreSQL work is not ours
            backends = [
                r["pid"]
                for r in await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                )
            ]
        acs_cpu, pg_cpu = common.CpuMeter(acs.pids()).start(), common.CpuMeter(backends).start()
        wall = time.monotonic()
        await asyncio.gather(*(knock(d) for d in ids))
        wall = time.monotonic() - wall
        # a knock the API reported as timed out may still have started its session
        # (the datagram went out; the CPE came after the caller's 5 s): count every
        # session the knocks started, until none has come for 10 s
        quiet, counted, answered = time.monotonic(), -1, time.monotonic()
        while time.monotonic() - quiet < 10 and time.monotonic() - answered < 120:
            async with pool.acquire() as conn:
                n = await conn.fetchval(
                    "SELECT count(*) FROM devices WHERE '6 CONNECTION REQUEST' = ANY (last_events)"
                )
            if n != counted:
                counted, quiet = n, time.monotonic()
            if n >= len(ids):
                break
            await asyncio.sleep(0.5)
        acs_cpu.stop()
        pg_cpu.stop()
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT d.id, s.last_inform,"
                " '6 CONNECTION REQUEST' = ANY (d.last_events) AS knocked"
                " FROM devices d JOIN device_sessions s ON s.device_id = d.id"
            )
        latency = [
            r["last_inform"].timestamp() - sent_at[r["id"]]
            for r in rows
            if r["knocked"] and isinstance(r["last_inform"], datetime) and r["id"] in sent_at
        ]
        return {
            "devices": devices,
            "knocked": len(ids),
            "sessions": len(latency),
            "p50": percentile(latency, 0.50) if latency else None,
            "p99": percentile(latency, 0.99) if latency else None,
            "max": max(latency) if latency else None,
            "wall_s": wall,
            "setup_s": setup_s,
            "outcomes": dict(outcomes),
            "udp_accepted": fleet.counters[("udp_connection_request", "accepted")],
            # what the simulated CPEs did with the knocks' datagrams (accepted, replayed
            # id, stale ts, bad signature, rate limited...): why a knock brought no session
            "cpe_udp": {
                d: n
                for (k, d), n in sorted((Counter(fleet.counters) - before).items())
                if k == "udp_connection_request"
            },
            "nudged": nudged,
            # from the first call until the sessions were counted (lower bounds: a
            # process that started or ended meanwhile is not, or only partly, counted)
            "acs_cpu_s": acs_cpu.seconds,
            "pg_cpu_s": pg_cpu.seconds,
            "load": os.getloadavg(),
        }
    finally:
        await fleet.stop()
        await pool.close()
        await http.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    common.raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="acs-bench-knock-"))
    dsn = await common.fresh_database(args.database)
    stun_port = args.port + 3
    try:
        extra = {
            "ACS_STUN_PORT": str(stun_port),
            "ACS_PUBLIC_HOST": "127.0.0.1",
            # the whole simulated fleet comes from 127.0.0.1 with one credential
            "ACS_MAX_SESSIONS_PER_WORKER": str(max(500, args.devices)),
            "ACS_MAX_SESSIONS_PER_ADDRESS": str(max(500, args.devices)),
            "ACS_MAX_SESSIONS_PER_CREDENTIAL": str(max(500, args.devices)),
            # one source address sends every device's keep-alives
            "ACS_STUN_RATE_PER_SOURCE": "100000",
        }
        # the knock settings stay the defaults unless asked (a comparison run)
        if args.concurrency is not None:
            extra["ACS_CONNECTION_REQUEST_CONCURRENCY"] = str(args.concurrency)
        if args.timeout is not None:
            extra["ACS_CONNECTION_REQUEST_TIMEOUT_S"] = str(args.timeout)
        serve = ["--workers", str(args.workers)] if args.workers else []
        with common.running_acs(dsn, args.port, work / "acs", *serve, **extra) as acs:
            return await measure(acs, args.devices, stun_port)
    finally:
        if not args.keep:
            await common.drop_database(args.database)
            shutil.rmtree(work, ignore_errors=True)


def row_of(r: dict[str, Any]) -> dict[str, Any]:
    met = r["p99"] is not None and r["sessions"] == r["devices"] and r["p99"] <= GOAL_P99_S
    measured = (
        f"p50 {r['p50'] * 1000:.0f} ms, p99 {r['p99'] * 1000:.0f} ms; "
        f"{r['sessions']}/{r['devices']} sessions started"
        if r["p99"] is not None
        else f"no session started ({r['outcomes']})"
    )
    return {
        "target": f"UDP knock on {r['devices']:,} NATed CPEs at once: API call to session start",
        "goal": f"every session, p99 <= {GOAL_P99_S:g} s",
        "measured": measured,
        "value": None if r["p99"] is None else round(r["p99"], 3),
        "met": met,
        "notes": (
            f"one POST .../connection-request per device, all at once; session start = the "
            f"ACS's last_inform of the knock's session; all calls answered in {r['wall_s']:.1f} s "
            f"(max {(r['max'] or 0) * 1000:.0f} ms); API outcomes {r['outcomes']}; "
            f"bindings set up by the STUN policy in {r['setup_s']:.0f} s"
            f" ({r['nudged']} nudges of stalled setup sessions); "
            f"ACS_CONNECTION_REQUEST_CONCURRENCY={r['concurrency']}, _TIMEOUT_S={r['timeout']}; "
            f"the CPEs' UDP connection requests during the knocks {r['cpe_udp']}; "
            f"ACS workers {r['workers']}; ACS CPU {r['acs_cpu_s']:.1f} s, PostgreSQL CPU "
            f"{r['pg_cpu_s']:.1f} s (its backends at the first call) from the first call until "
            f"the sessions were counted; load average {r['load'][0]:.1f}"
        ),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="50 devices")
    ap.add_argument("--port", type=int, default=38700)
    ap.add_argument("--database", default="bench_knock")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--workers", type=int, default=None, help="acs serve --workers N")
    ap.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="ACS_CONNECTION_REQUEST_CONCURRENCY (default: the ACS's)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="ACS_CONNECTION_REQUEST_TIMEOUT_S (default: the ACS's)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.devices = min(args.devices, 50)
    os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    r = asyncio.run(main_async(args))
    r["workers"] = args.workers or 1
    defaults = Settings()
    r["concurrency"] = args.concurrency or f"{defaults.connection_request_concurrency} (default)"
    r["timeout"] = (
        f"{args.timeout:g}"
        if args.timeout
        else f"{defaults.connection_request_timeout_s:g} (default)"
    )
    print(f"{r['knocked']} knocks, {r['sessions']} sessions, UDP accepted {r['udp_accepted']}")
    print(f"API outcomes: {r['outcomes']}")
    print(f"ACS CPU {r['acs_cpu_s']:.2f} s, PostgreSQL CPU {r['pg_cpu_s']:.2f} s, load {r['load']}")
    print(f"the CPEs' UDP connection requests during the knocks: {r['cpe_udp']}")
    row = row_of(r)
    print(f"| {row['target']} | {row['measured']} |")
    common.emit(SCENARIO, [row])


if __name__ == "__main__":
    main()
