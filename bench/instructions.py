"""Instructions the ACS executes per periodic session, counted by callgrind.

The CPU figures of bench.fleet move by a quarter from one run to the next on a
shared machine (BENCHMARKS.md, run 15: the same code measured 0.66 and 1.05 ms
per session), so a change of a few percent cannot be seen in them. Valgrind's
callgrind counts the instructions a process executes instead: the same code on
the same inputs gives the same count (two runs of one commit here: 0.16 %
apart), whatever else the machine is doing. Instructions are not time (a cache
miss costs more than an add), but for Python code on the same interpreter they
move with it, which makes this the figure to compare two commits by.

The ACS runs under `valgrind --tool=callgrind --instr-atstart=no` (30-45 sessions
a second here, hence the small load); the devices are seeded by COPY
(bench/seed.py) and each sends one Inform that rewrites its tree; after a
warm-up, instrumentation is switched on (`callgrind_control -i on`) for a counted
phase of periodic sessions (bench/loadgen.py: Inform with Digest, empty POST,
204) and off again, and the count is divided by the sessions completed in that
phase. What a session's batches cost is shared by fewer sessions than at the
fleet bench's 32 connections, so the figure is a per-session cost at low
concurrency, for comparisons, not a CPU time.

    python -m bench.instructions              # 400 devices, 4 connections, 60 s
    python -m bench.instructions --quick      # 50 devices, 2 connections, 5 s

Needs valgrind (Debian's package); without it the row says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import common, loadgen, seed

SCENARIO = "instructions"
# the regression guard: run 15's count on this machine class, with a margin for
# the interpreter and library versions a fresh install may bring
GOAL = 2_350_000


def callgrind_total(out: Path, pid: int) -> int:
    """The instructions in the dumps callgrind wrote for ``pid``."""
    total = 0
    for dump in out.glob(f"cg.{pid}*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


async def measure(
    devices: int, connections: int, seconds: float, port: int, name: str
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="acs-bench-instructions-"))
    dsn = await common.fresh_database(name)
    command = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={work}/cg.%p",
        str(common.BIN / "python"),
        str(common.BIN / "acs"),
    ]
    try:
        with common.running_acs(dsn, port, work / "acs", command=command) as acs:
            await seed.seed_fleet(dsn, devices, acs.cwmp_url)
            bodies = loadgen.inform_bodies(devices, "SIM", acs.cwmp_url)
            load: dict[str, Any] = {
                "bodies": bodies,
                "connections": connections,
                "username": common.CPE_USERNAME,
                "password": common.CPE_PASSWORD,
            }
            # each device's first Inform rewrites its seeded tree: not a steady session
            await loadgen.run("127.0.0.1", acs.cwmp_port, duration=0, warmup=0, once=True, **load)
            tally = await loadgen.run(
                "127.0.0.1",
                acs.cwmp_port,
                duration=seconds,
                warmup=max(2.0, seconds / 6),
                on_counted_start=lambda: control("-i", "on", str(acs.proc.pid)),
                **load,
            )
            control("-i", "off", str(acs.proc.pid))
            control("-d", str(acs.proc.pid))
            pid = acs.proc.pid
        # the last dump is written as the process ends, after the block above
        total = callgrind_total(work, pid)
    finally:
        await common.drop_database(name)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "devices": devices,
        "connections": connections,
        "sessions": tally.sessions,
        "errors": dict(tally.errors),
        "instructions": total,
        "per_session": total / tally.sessions if tally.sessions else None,
    }


def row_of(result: dict[str, Any]) -> dict[str, Any]:
    target = "periodic Inform session: instructions the ACS executes (callgrind)"
    goal = f"<= {GOAL / 1e6:.2f} M per session (regression guard)"
    if "missing" in result:
        return {"target": target, "goal": goal, "measured": result["missing"], "met": False}
    per = result["per_session"]
    if per is None:
        return {"target": target, "goal": goal, "measured": "no session counted", "met": False}
    return {
        "target": target,
        "goal": goal,
        "measured": f"{per / 1e6:.3f} M instructions per session",
        "value": per,
        "met": not result["errors"] and per <= GOAL,
        "notes": (
            f"{result['sessions']:,} sessions counted, {result['devices']} devices over "
            f"{result['connections']} connections; errors {result['errors'] or 'none'}; "
            "the same code counts the same within a fraction of a percent, whatever the "
            "machine's noise"
        ),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 devices, 2 connections, 5 s")
    ap.add_argument("--devices", type=int, default=400)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--port", type=int, default=38700)
    ap.add_argument("--database", default="bench_instructions")
    args = ap.parse_args(argv)
    if args.quick:
        args.devices, args.connections, args.seconds = 50, 2, 5
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        result: dict[str, Any] = {"missing": "valgrind is not installed (Debian: valgrind)"}
    else:
        result = asyncio.run(
            measure(args.devices, args.connections, args.seconds, args.port, args.database)
        )
    print(json.dumps({"raw": result}))
    common.emit(SCENARIO, [row_of(result)])


if __name__ == "__main__":
    main()
