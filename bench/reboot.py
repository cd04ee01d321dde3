"""The reboot storm, and what an in-flight session holds: against a real ACS.

1. reboot storm: a regional power cut ends and every CPE comes back with
   `1 BOOT` within seconds. N devices are bootstrapped first (full discovery
   and the shipped policies; not measured), the simulator is stopped, then a
   new simulator process brings the same N back at once, already known to the
   ACS (`no-bootstrap`: `1 BOOT` only), every session allowed in flight at
   once. Done when every device has completed a session after the power came
   back. Counted: sessions per second, ACS and PostgreSQL CPU per session, HTTP
   answers by status (503 with Retry-After is the only acceptable sign of
   overload: no 500, no timeout), peak RSS of each ACS process.
2. memory per in-flight session: a fresh ACS, warmed up with a few bootstraps,
   then M new CPEs bootstrap at once while each waits a few seconds before
   every answer (profile `slow`): M sessions parked mid-discovery. That first
   storm takes the ACS to the high-water mark its allocators keep (the RSS a
   storm of M costs, in the notes); then a second storm of 2M new CPEs, and
   its RSS growth divided by the M sessions more than the first held is what
   one more in-flight session holds: what raising the per-worker limit costs.
   (The first storm's growth divided by M over-counts: a third storm of M on
   the same ACS grows by nothing, the memory is reused, not held.)

Prints a table and, as its last line, the JSON rows the runner collects.

    python -m bench.reboot --devices 10000
    python -m bench.reboot --quick         # 500 devices, 150 parked sessions
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import asyncpg

from acs.config import Settings
from bench import common
from bench import known_fleet as seeding
from cpe_simulator.fleet import Fleet, FleetConfig
from cpe_simulator.profiles import Timing

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "reboot"
HELD_GOAL_KB = 100.0  # per in-flight session (issue 19: the admission limit rises tenfold)
OK_STATUSES = ("200", "204", "401", "503")


# --------------------------------------------------------------------------- /proc


def server_pids(data_dir: str) -> list[int]:
    """The postmaster of ``data_dir`` and its children: that server's CPU only,
    not every PostgreSQL on a machine others share."""
    try:
        postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        # not readable from here: every server's CPU (on a shared machine, more)
        return common.postgres_pids()
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # the field after the parenthesised command is the state, then the ppid
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(entry.name))
    return pids


class ServerCpu:
    """CPU seconds of one PostgreSQL server between start() and stop(), counting
    the backends it starts meanwhile (a pool grows in a storm) from zero."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self._start: dict[int, float] = {}

    def start(self) -> ServerCpu:
        self._start = {p: common.cpu_seconds(p) for p in server_pids(self.data_dir)}
        return self

    def stop(self) -> float:
        now = {p: common.cpu_seconds(p) for p in server_pids(self.data_dir)}
        return sum(cpu - self._start.get(p, 0.0) for p, cpu in now.items())


async def postgres_cpu(dsn: str) -> ServerCpu:
    conn = await asyncpg.connect(dsn)
    try:
        data_dir = await conn.fetchval("SHOW data_directory")
    finally:
        await conn.close()
    return ServerCpu(data_dir)


def rss_by_process(acs: common.AcsProcess) -> list[float]:
    return [common.rss_mb(p) for p in acs.pids()]


# --------------------------------------------------------------------------- simulator


async def start_sim(
    acs: common.AcsProcess, devices: int, cr_port: int, faults: str, concurrent: int, *more: str
) -> Any:
    return await asyncio.create_subprocess_exec(
        *[
            str(common.BIN / "cpe-sim"),
            "--acs-url",
            acs.cwmp_url,
            "--devices",
            str(devices),
            "--username",
            common.CPE_USERNAME,
            "--password",
            common.CPE_PASSWORD,
            "--ramp",
            "0",
            "--max-concurrent",
            str(concurrent),
            "--cr-port",
            str(cr_port),
            "--retry-min-wait",
            "1",  # a CPE refused with 503 comes back soon: the storm stays a storm
            "--summary-every",
            "10",
            "--json-summary",
            *(("--faults", faults) if faults else ()),
            *more,
        ],
        stdout=asyncio.subprocess.PIPE,
    )


async def stop_sim(sim: Any) -> dict[str, Any]:
    sim.send_signal(signal.SIGINT)
    raw, _ = await asyncio.wait_for(sim.communicate(), 120)
    lines = raw.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}


async def known_fleet(
    acs: common.AcsProcess, devices: int, cr_port: int, data_dir: Path, limit_s: float
) -> tuple[float, Path]:
    """Every device known to the ACS as after its bootstrap (bench.known_fleet: two
    real bootstraps, the rest seeded from them and checked against the second);
    (seconds it took, the simulator's --state file)."""
    started = time.monotonic()
    config = FleetConfig(
        acs_url=acs.cwmp_url,
        devices=devices,
        username=common.CPE_USERNAME,
        password=common.CPE_PASSWORD,
        cr_port=cr_port,
    )
    ref, other = devices, max(1, devices - 1)  # the last two serials, bootstrapped for real
    real = Fleet(
        dataclasses.replace(config, devices=ref - other + 1, first_serial=other, ramp_s=0.0)
    )
    await real.start()
    try:
        await real.wait_for(lambda: all(c.sessions_ok >= 1 for c in real.devices.values()), limit_s)
    finally:
        await real.stop()
    await asyncio.sleep(0.5)  # the sessions' last writes (session log) land
    _, state = await seeding.seed(acs.dsn, config, cr_port, data_dir, ref, other)
    if len(state) != devices:
        raise RuntimeError(f"{len(state)} of {devices} devices seeded")
    file = data_dir / "cpe-state.json"
    file.write_text(json.dumps(state))
    return time.monotonic() - started, file


async def reboot_storm(
    acs: common.AcsProcess, devices: int, cr_port: int, data_dir: Path, limit_s: float
) -> dict[str, Any]:
    setup_s, state = await known_fleet(acs, devices, cr_port, data_dir, limit_s)
    pool = await asyncpg.create_pool(acs.dsn, min_size=1, max_size=1)
    async with pool.acquire() as conn:
        await conn.execute("VACUUM ANALYZE")  # the bootstrap's dead rows are not the storm's
        await conn.execute("CHECKPOINT")
        power_on = await conn.fetchval("SELECT now()")
    pg_cpu = (await postgres_cpu(acs.dsn)).start()
    acs_cpu = common.CpuMeter(acs.pids()).start()
    started = time.monotonic()
    # all at once: the ACS, not the simulator, decides who waits
    sim = await start_sim(acs, devices, cr_port, "", devices, "--state", str(state))
    peak: list[float] = []
    served = 0
    try:
        while time.monotonic() - started < limit_s:
            await asyncio.sleep(1)
            now_rss = rss_by_process(acs)
            peak = [max(a, b) for a, b in zip(peak, now_rss, strict=True)] if peak else now_rss
            async with pool.acquire() as conn:
                # a session is over when its lease is given back after the power came on
                served = await conn.fetchval(
                    "SELECT count(*) FROM devices d JOIN device_sessions s ON s.device_id = d.id"
                    " WHERE d.last_boot >= $1 AND s.session_id IS NULL AND s.last_inform >= $1",
                    power_on,
                )
            if served >= devices:
                break
        elapsed = time.monotonic() - started
        cpu, pg = acs_cpu.stop(), pg_cpu.stop()
    finally:
        summary = await stop_sim(sim)
    async with pool.acquire() as conn:
        bootstrapped_again = await conn.fetchval(
            "SELECT count(*) FROM devices WHERE last_bootstrap >= $1", power_on
        )
    await pool.close()
    return {
        "devices": devices,
        "setup_s": setup_s,
        "served": served,
        "elapsed_s": elapsed,
        "acs_cpu_s": cpu,
        "pg_cpu_s": pg,
        "acs_peak_rss_mb": peak,
        "sessions_ok": summary.get("sessions_ok"),
        "sessions_failed": summary.get("sessions_failed"),
        "http": summary.get("http", {}),
        "sim_faults": summary.get("faults", {}),
        "acs_rpcs": summary.get("acs_rpcs", {}),
        "bootstrapped_again": bootstrapped_again,
    }


# --------------------------------------------------------------------------- memory


def snapshot(acs: common.AcsProcess, out: Path) -> tracemalloc.Snapshot:
    """The traced ACS's heap now (bench.traced_acs writes it on SIGUSR1)."""
    n = len(list(out.glob("snapshot-*.done"))) + 1
    os.kill(acs.pid, signal.SIGUSR1)
    done = out / f"snapshot-{n}.done"
    deadline = time.monotonic() + 300
    while not done.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the traced ACS wrote no snapshot")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(str(out / f"snapshot-{n}"))


def heap_growth(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, held: int
) -> dict[str, Any]:
    """KB per session the heap grew by, and the biggest growths by traceback
    (the innermost frames of the ACS and its libraries say which object it is)."""
    stats = after.compare_to(before, "traceback")
    total = sum(s.size_diff for s in stats)
    top = []
    for s in sorted(stats, key=lambda s: -s.size_diff)[:25]:
        frames = list(s.traceback)[-6:]
        where = " < ".join(
            f"{f.filename.rsplit('site-packages/', 1)[-1].rsplit('/memstorm/', 1)[-1]}:{f.lineno}"
            for f in reversed(frames)
        )
        top.append(
            {"kb_per_session": s.size_diff / 1024 / held, "count": s.count_diff, "at": where}
        )
    return {"kb_per_session": total / 1024 / held if held else float("nan"), "top": top}


async def held_per_session(
    acs: common.AcsProcess,
    parked: int,
    slow_s: float,
    warmup: int,
    traces: Path | None = None,
    prefix: str = "PARK",
) -> dict[str, Any]:
    """RSS growth per session parked mid-discovery, over a warmed-up ACS; with
    ``traces`` (the ACS runs under bench.traced_acs) the Python heap's growth too."""

    def fleet_of(prefix: str, n: int, faults: str) -> Fleet:
        return Fleet(
            FleetConfig(
                acs_url=acs.cwmp_url,
                devices=n,
                serial_prefix=prefix,
                username=common.CPE_USERNAME,
                password=common.CPE_PASSWORD,
                faults=faults,
                max_concurrent=n,
                timing=Timing(slow_s=slow_s),
                # arrivals spread over the delay: the figure is what parked sessions
                # hold, not the high-water mark of all their answers parsed at once
                ramp_s=slow_s if faults else 0.0,
            )
        )

    pool = await asyncpg.create_pool(acs.dsn, min_size=1, max_size=1)

    async def in_flight(prefix: str) -> int:
        async with pool.acquire() as conn:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM devices d JOIN device_sessions s ON s.device_id = d.id"
                " WHERE s.session_id IS NOT NULL AND d.serial_number LIKE $1",
                prefix + "%",
            )
        return count

    if warmup:
        warm = fleet_of(prefix + "W", warmup, "")
        await warm.start()
        try:
            await warm.wait_for(lambda: all(c.sessions_ok >= 1 for c in warm.devices.values()), 300)
        finally:
            await warm.stop()
    await asyncio.sleep(1)
    base = sum(rss_by_process(acs))
    loop = asyncio.get_running_loop()
    before = await loop.run_in_executor(None, snapshot, acs, traces) if traces else None
    heap: dict[str, Any] = {}
    fleet = fleet_of(prefix, parked, "slow")
    samples: list[tuple[float, int]] = []
    # sessions past their first big answer (the names): the ACS has asked for the
    # values, and holds what discovery carries between the two round trips
    past_names = [0]
    await fleet.start()
    try:
        deadline = time.monotonic() + slow_s * 14
        while time.monotonic() < deadline:
            await asyncio.sleep(slow_s / 4)
            samples.append((sum(rss_by_process(acs)), await in_flight(prefix)))
            past_names.append(fleet.counters[("acs_rpc", "GetParameterValues")])
            rising = past_names[-1] > past_names[-2]
            now_held = samples[-1][1]
            if (
                before is not None
                and not heap
                and min(now_held, past_names[-1]) >= max(1, parked // 4)
                and (min(now_held, past_names[-1]) >= parked * 0.8 or not rising)
            ):
                # (nearly) every CPE in session and past its names, or as many as a
                # slowed, traced ACS holds at once: what the heap holds for them now
                # (a snapshot taken before the names came in saw a tenth of it)
                after = await loop.run_in_executor(None, snapshot, acs, traces)
                held = min(samples[-1][1], await in_flight(prefix))
                heap = heap_growth(before, after, held) | {"parked": held}
            if all(c.sessions_ok >= 1 for c in fleet.devices.values()):
                break
    finally:
        await fleet.stop()
        await pool.close()
    # the moment most sessions were parked at once (RSS only grows meanwhile)
    rss, held = max(samples, key=lambda s: (s[1], s[0])) if samples else (base, 0)
    return {
        "parked_goal": parked,
        "parked": held,
        "base_rss_mb": base,
        "rss_mb": rss,
        "kb_per_session": (rss - base) * 1024 / held if held else float("nan"),
        "slow_s": slow_s,
        "heap": heap,
    }


def more_sessions(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """What each session the second storm held beyond the first's cost in RSS."""
    extra = second["parked"] - first["parked"]
    grown = second["rss_mb"] - second["base_rss_mb"]
    return second | {
        "first": first,
        "extra": extra,
        "kb_per_session": grown * 1024 / extra if extra > 0 else float("nan"),
    }


# --------------------------------------------------------------------------- rows


def rows_of(result: dict[str, Any], workers: int, limit: int) -> list[dict[str, Any]]:
    rows = []
    if "storm" in result:
        rows.append(storm_row(result["storm"], workers, limit))
    if "memory" in result:
        rows.append(memory_row(result["memory"]))
    return rows


def storm_row(s: dict[str, Any], workers: int, limit: int) -> dict[str, Any]:
    http = s["http"]
    bad_http = {k: v for k, v in http.items() if k not in OK_STATUSES}
    timeouts = {
        k: v
        for k, v in s["sim_faults"].items()
        if k.startswith(("session_crashed", "session_failed:Time", "session_failed:Client"))
    }
    n = max(s["served"], 1)
    rate = s["served"] / s["elapsed_s"]
    storm_ok = s["served"] == s["devices"] and not bad_http and not timeouts
    peak = ", ".join(f"{mb:.0f}" for mb in s["acs_peak_rss_mb"])
    return {
        "target": f"reboot storm: {s['devices']:,} known CPEs send 1 BOOT at once",
        "goal": "all served; overload only as 503 + Retry-After (no 500, no timeout)",
        "measured": (
            f"{s['served']:,}/{s['devices']:,} served in {s['elapsed_s']:.1f} s "
            f"({rate:,.0f} sessions/s); ACS CPU {s['acs_cpu_s'] * 1000 / n:.2f} ms, "
            f"PostgreSQL CPU {s['pg_cpu_s'] * 1000 / n:.2f} ms per session"
        ),
        "value": rate,
        "met": storm_ok,
        "notes": (
            f"{workers} worker(s), ACS_MAX_SESSIONS_PER_WORKER {limit}; HTTP answers "
            f"{http}; simulator faults {s['sim_faults'] or 'none'}; ACS requests "
            f"{s['acs_rpcs'] or 'none'}; peak RSS per ACS process {peak} MB; "
            f"devices bootstrapped again {s['bootstrapped_again']} (setup: 2 real "
            f"bootstraps, {s['devices'] - 2:,} devices seeded from them, "
            f"{s['setup_s']:.0f} s, not measured)"
        ),
    }


def memory_row(mem: dict[str, Any]) -> dict[str, Any]:
    first = mem["first"]
    return {
        "target": "memory held per in-flight session (boot storm, mid-discovery)",
        "goal": f"<= {HELD_GOAL_KB:.0f} KB",
        "measured": f"{mem['kb_per_session']:.0f} KB",
        "value": mem["kb_per_session"],
        "met": mem["kb_per_session"] <= HELD_GOAL_KB,
        "notes": (
            f"a first storm: RSS {first['base_rss_mb']:.0f} MB warmed up -> "
            f"{first['rss_mb']:.0f} MB with {first['parked']} sessions in flight (the "
            f"allocators' high-water mark, {first['kb_per_session']:.0f} KB per session); "
            f"then a storm twice its size: {mem['base_rss_mb']:.0f} -> {mem['rss_mb']:.0f} MB "
            f"with {mem['parked']} in flight, {mem['extra']} more than the first (of "
            f"{mem['parked_goal']} CPEs bootstrapping, each waiting {mem['slow_s']:.0f} s "
            f"before every answer)"
            + (
                f"; tracemalloc: the Python heap grew {mem['heap']['kb_per_session']:.0f} KB"
                f" per session with {mem['heap']['parked']} parked (traced run)"
                if mem.get("heap")
                else ""
            )
        ),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    common.raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="acs-bench-reboot-"))
    result: dict[str, Any] = {}
    limit = str(args.max_sessions or Settings().max_sessions_per_worker)
    # the whole simulated fleet comes from one address with one credential: the
    # fair-admission limits, meant for one client among many, would cap the storm
    extra = {
        "ACS_MAX_SESSIONS_PER_WORKER": limit,
        "ACS_MAX_SESSIONS_PER_ADDRESS": limit,
        "ACS_MAX_SESSIONS_PER_CREDENTIAL": limit,
    }
    serve_args = ("--workers", str(args.workers)) if args.workers > 1 else ()
    try:
        if args.only in ("", "memory"):
            dsn = await common.fresh_database(args.database)
            traces = work / "traces" if args.traced else None
            command = [sys.executable, "-m", "bench.traced_acs", str(traces)] if traces else None
            # every parked session of the second storm in flight at once: the limits
            # must not turn some away (their retries would be measured instead)
            room = str(max(int(limit), 2 * args.parked))
            roomy = dict.fromkeys(extra, room)
            with common.running_acs(dsn, args.port, work / "mem", command=command, **roomy) as acs:
                first = await held_per_session(
                    acs, args.parked, args.slow, args.warmup, None, "FIRST"
                )
                await asyncio.sleep(2)
                second = await held_per_session(acs, 2 * args.parked, args.slow, 0, traces)
                result["memory"] = more_sessions(first, second)
        if args.only in ("", "storm"):
            dsn = await common.fresh_database(args.database)
            with common.running_acs(dsn, args.port, work / "acs", *serve_args, **extra) as acs:
                result["storm"] = await reboot_storm(
                    acs, args.devices, args.port + 5, work / "acs", args.storm_timeout
                )
    finally:
        if not args.keep:
            await common.drop_database(args.database)
            shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="500 devices, 150 parked sessions")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--parked",
        type=int,
        default=400,
        help="sessions parked in the memory row's first storm (twice as many in its second)",
    )
    ap.add_argument("--slow", type=float, default=6.0, help="seconds a parked CPE waits")
    ap.add_argument("--warmup", type=int, default=20, help="bootstraps before the baseline RSS")
    ap.add_argument("--storm-timeout", type=float, default=3600)
    ap.add_argument("--max-sessions", type=int, default=0, help="ACS_MAX_SESSIONS_PER_WORKER")
    ap.add_argument("--port", type=int, default=38700)
    ap.add_argument("--database", default="bench_reboot")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument(
        "--traced",
        action="store_true",
        help="memory row: the ACS under tracemalloc, the heap's growth by traceback",
    )
    ap.add_argument("--only", choices=("", "storm", "memory"), default="", help="one scenario")
    args = ap.parse_args(argv)
    if args.quick:
        args.devices = min(args.devices, 500)
        args.parked = min(args.parked, 150)
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    result = asyncio.run(main_async(args))
    limit = args.max_sessions or Settings().max_sessions_per_worker
    rows = rows_of(result, args.workers, limit)
    for row in rows:
        print(
            f"{row['target']}: {row['measured']} (goal {row['goal']}) -> "
            f"{'met' if row['met'] else 'NOT met'}\n    {row['notes']}"
        )
    for top in result.get("memory", {}).get("heap", {}).get("top", []):
        print(f"  {top['kb_per_session']:7.1f} KB/session {top['count']:+7d} blocks  {top['at']}")
    print(json.dumps({"raw": result}, default=str))
    common.emit(SCENARIO, rows)


if __name__ == "__main__":
    main()
