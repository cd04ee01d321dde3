"""Two ACS hosts behind HAProxy: periodic sessions per second with one host and with two.

The cluster rig (tests/cluster/rig.py: network namespaces, HAProxy, Patroni +
etcd, deploy/cluster/*) with one ACS host, then the second started beside it;
the same simulated fleet (this process, in the root namespace) sends periodic
Informs through the load balancer as fast as the ACS answers. Each window
counts the sessions the hosts completed (their own /metrics) and the CPU every
process of the rig spent (/proc, by namespace), so the scaling can be read
even when the machine's cores, not the ACS, are the bound: on 2 cores, two ACS
hosts, HAProxy, two PostgreSQL servers and the simulator share them.

    python -m bench.cluster            # 200 CPEs, 30 s windows
    python -m bench.cluster --quick    # 60 CPEs, 6 s windows: does it all work

Root only (network namespaces); without it the row says why it was skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from bench import common
from cpe_simulator.fleet import Fleet, FleetConfig
from cpe_simulator.profiles import Timing
from tests.cluster import rig as cluster

SCENARIO = "cluster"
ROLES = {
    "ACS hosts": ("acs1", "acs2"),
    "HAProxy": ("lb",),
    "PostgreSQL + Patroni": ("pg1", "pg2"),
    "etcd": ("etcd",),
}


def rig_pids() -> dict[str, list[int]]:
    pids = {
        role: [p for h in hosts for p in cluster.namespace_pids(h)] for role, hosts in ROLES.items()
    }
    pids["simulator (this process)"] = [os.getpid()]
    return pids


async def completed(hosts: tuple[str, ...], rig: cluster.Rig) -> int:
    total = 0
    for host in hosts:
        total += cluster.sessions_completed(await cluster.metrics_of(rig.host_api(host)))
    return total


async def window(rig: cluster.Rig, hosts: tuple[str, ...], seconds: float) -> dict[str, Any]:
    """Sessions per second and CPU seconds per role over one window."""
    meters = {role: common.CpuMeter(pids).start() for role, pids in rig_pids().items()}
    before, started = await completed(hosts, rig), time.monotonic()
    await asyncio.sleep(seconds)
    after, elapsed = await completed(hosts, rig), time.monotonic() - started
    cpu = {role: meter.stop() for role, meter in meters.items()}
    return {
        "rate": (after - before) / elapsed,
        "sessions": after - before,
        "cpu": cpu,
        "s": elapsed,
    }


async def run(devices: int, seconds: float) -> dict[str, Any]:
    rig = cluster.make_rig(
        acs_env={
            "ACS_LOG_LEVEL": "WARNING",
            # the whole fleet is one address and one credential: no per-CPE limit applies
            "ACS_MAX_SESSIONS_PER_ADDRESS": str(devices),
            "ACS_MAX_SESSIONS_PER_CREDENTIAL": str(devices),
        }
    )
    fleet = Fleet(
        FleetConfig(
            acs_url=rig.cwmp_url,
            devices=devices,
            serial_prefix="BCL",
            username=cluster.CPE_USER,
            password=cluster.CPE_PASSWORD,
            periodic_interval=1,  # as often as the ACS lets them: the load is what it can take
            cr_host=cluster.ROOT_IP,
            max_concurrent=devices,
            timing=Timing(slow_s=0.0, reboot_s=0.2, retry_min_wait_s=0.5, retry_multiplier=1.5),
        )
    )
    try:
        await rig.up(acs_hosts=1)
        await fleet.start()
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 400)
        await asyncio.sleep(seconds / 3)  # past the boot sessions: periodic ones only
        one = await window(rig, ("acs1",), seconds)
        rig.start_acs("acs2")
        await rig.wait_acs("acs2")
        await rig.wait_lb(2)
        await asyncio.sleep(seconds / 3)
        two = await window(rig, ("acs1", "acs2"), seconds)
        failed = {f"{k}:{d}": n for (k, d), n in fleet.counters.items() if "fail" in k}
    finally:
        await fleet.stop()
        rig.close()
    return {"one": one, "two": two, "failed": failed}


def split(w: dict[str, Any]) -> str:
    total = sum(w["cpu"].values()) or 1.0
    parts = [
        f"{role} {sec / w['s']:.2f} cores ({sec / total:.0%})" for role, sec in w["cpu"].items()
    ]
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    target = "Cluster: periodic sessions/s through HAProxy, two ACS hosts vs one"
    reason = cluster.why_not()
    if reason is not None:
        print(f"skipped: {reason}")
        common.emit(
            SCENARIO,
            [
                {
                    "target": target,
                    "goal": "ratio > 1",
                    "measured": "skipped",
                    "met": False,
                    "notes": f"skipped: {reason}",
                }
            ],
        )
        return
    common.raise_fd_limit()
    devices, seconds = (60, 6.0) if args.quick else (args.devices, args.seconds)
    r = asyncio.run(run(devices, seconds))
    one, two = r["one"], r["two"]
    ratio = two["rate"] / one["rate"] if one["rate"] else 0.0
    print(f"{devices} CPEs, periodic interval 1 s, {seconds:.0f} s windows, one machine")
    print("| ACS hosts | sessions/s | CPU split (cores busy; share) |")
    print("|---|---|---|")
    print(f"| 1 | {one['rate']:,.1f} | {split(one)} |")
    print(f"| 2 | {two['rate']:,.1f} | {split(two)} |")
    print(f"ratio two/one: {ratio:.2f}; sessions that failed on the CPE side: {r['failed']}")
    assert one["sessions"] > 0 and two["sessions"] > 0  # both windows saw real sessions
    common.emit(
        SCENARIO,
        [
            {
                "target": target,
                "goal": "> 1.0 (on 2 cores bounded by the cores: read the CPU split)",
                "measured": f"{one['rate']:,.1f}/s with one host, {two['rate']:,.1f}/s with two",
                "value": round(two["rate"], 1),
                "ratio": f"{ratio:.2f}",
                "met": ratio > 1.0,
                "notes": (
                    f"{devices} CPEs through the LB, {seconds:.0f} s windows; one host: "
                    f"{split(one)}. Two hosts: {split(two)}"
                ),
            }
        ],
    )


if __name__ == "__main__":
    main()
