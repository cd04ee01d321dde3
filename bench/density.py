"""Simulator density: N simulated CPEs in one process against a real ACS.

Starts `acs serve` (on ACS_DATABASE_URL, or the embedded PostgreSQL) and
`cpe-sim` as separate processes, samples both processes' RSS from /proc every
few seconds, and prints one table: devices, sessions completed and failed,
peak RSS of the simulator and of the ACS, and RSS per simulated device.

    python -m bench.density --devices 10000 --duration 600 --ramp 300
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--ramp", type=float, default=300)
    ap.add_argument("--periodic-interval", type=int, default=300)
    ap.add_argument("--port", type=int, default=37547)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="acs-bench-"))
    env = dict(
        os.environ,
        ACS_DATA_DIR=str(work),
        ACS_CWMP_PORT=str(args.port),
        ACS_API_PORT=str(args.port + 10),
        ACS_FILES_PORT=str(args.port + 20),
        ACS_STUN_PORT="0",
        ACS_CPE_USERNAME="cpe",
        ACS_CPE_PASSWORD="bench",
        ACS_LOG_LEVEL="WARNING",
    )
    acs = subprocess.Popen(
        [str(BIN / "acs"), "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert acs.stdout is not None
        for line in acs.stdout:  # wait until it listens
            if line.startswith("CWMP"):
                break
        sim = subprocess.Popen(
            [
                str(BIN / "cpe-sim"),
                "--acs-url",
                f"http://127.0.0.1:{args.port}/",
                "--devices",
                str(args.devices),
                "--username",
                "cpe",
                "--password",
                "bench",
                "--periodic-interval",
                str(args.periodic_interval),
                "--ramp",
                str(args.ramp),
                "--cr-port",
                "0",
                "--duration",
                str(args.duration),
                "--summary-every",
                "30",
                "--json-summary",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        peak_sim = peak_acs = 0
        started = time.monotonic()
        while sim.poll() is None:
            peak_sim = max(peak_sim, rss_kb(sim.pid))
            peak_acs = max(peak_acs, rss_kb(acs.pid))
            time.sleep(2)
        out = (sim.stdout.read() if sim.stdout else "").strip().splitlines()
        tally = json.loads(out[-1]) if out and out[-1].startswith("{") else {}
        elapsed = time.monotonic() - started
    finally:
        acs.terminate()
        acs.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    print(
        "| devices | wall s | sessions ok | failed | sim peak RSS MB | KB per device "
        "| ACS peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.devices} | {elapsed:.0f} | {tally.get('sessions_ok')} "
        f"| {tally.get('sessions_failed')} | {peak_sim / 1024:.0f} "
        f"| {peak_sim / args.devices:.1f} | {peak_acs / 1024:.0f} |"
    )


if __name__ == "__main__":
    main()
