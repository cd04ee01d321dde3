"""What the HTTP layer alone costs per POST: aiohttp or a bare httptools Protocol,
on asyncio's loop or uvloop, and the ACS's lean CWMP path on uvloop.

The ACS's periodic session is two POSTs; this measures, with the load
generator and the Inform bytes of the periodic row, the CPU a server spends
per POST when it does nothing else, for each of the four combinations, in
interleaved rounds (a noisy neighbour then slows all of them alike). It is
the figure behind the choice of event loop and the case for a lean CWMP path
(BENCHMARKS.md): per session the ACS pays the framework's share twice.

    python -m bench.http_layer            # 3 rounds of 8 s each
    python -m bench.http_layer --quick    # 1 round of 2 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from collections import defaultdict

from bench import common, fleet, loadgen

SCENARIO = "http-layer"
COMBOS = [
    ("aiohttp", "asyncio"),
    ("aiohttp", "uvloop"),
    ("httptools", "asyncio"),
    ("httptools", "uvloop"),
    # the ACS's lean CWMP path (acs/web/lean.py) around the same handler as aiohttp's
    ("lean", "uvloop"),
]


async def measure(port: int, rounds: int, seconds: float, connections: int) -> dict[str, list]:
    bodies = loadgen.inform_bodies(connections, "SIM", "http://127.0.0.1/")
    found: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(rounds):
        for server, loop in COMBOS:
            rate, cpu_us = await fleet.bare_ceiling(
                port, bodies, connections, seconds, event_loop=loop, server=server
            )
            found[f"{server}+{loop}"].append((rate, cpu_us))
    return found


def rows_of(found: dict[str, list[tuple[float, float]]]) -> list[dict[str, object]]:
    base = statistics.median(cpu for _, cpu in found["aiohttp+asyncio"])
    rows = []
    for name, runs in found.items():
        cpu = statistics.median(c for _, c in runs)
        rate = statistics.median(r for r, _ in runs)
        rows.append(
            {
                "target": f"HTTP layer alone: {name}, server CPU per POST",
                "goal": "a measurement (no goal): the floor under each design",
                "measured": f"{cpu:.0f} us per POST, {rate:,.0f} POST/s",
                "value": cpu,
                "ratio": f"{cpu / base:.2f} of aiohttp+asyncio",
                # a measurement for BENCHMARKS.md, not in `make bench`'s table
                "met": None,
                "notes": f"median of {len(runs)} interleaved rounds; "
                + ", ".join(f"{c:.0f} us at {r:,.0f}/s" for r, c in runs),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--port", type=int, default=38690)
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 2
    common.raise_fd_limit()
    found = asyncio.run(measure(args.port, args.rounds, args.seconds, args.connections))
    rows = rows_of(found)
    for row in rows:
        print(f"{row['target']}: {row['measured']} ({row['ratio']}); {row['notes']}")
    print(json.dumps({"raw": found}))
    common.emit(SCENARIO, rows)


if __name__ == "__main__":
    main()
