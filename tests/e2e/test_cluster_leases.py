"""Two independent `acs serve` hosts on one database: each periodic tick runs on one of
them only, and when that host is SIGKILLed the other takes its leases over once they
run out (by the database's clock). What is counted: the ticks each host says it ran
(``acs_cluster_ticks_total``), against the runs PostgreSQL recorded under the leases."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from acs.services import leases
from acs.store.db import connect
from tests.e2e.test_survival import (  # noqa: F401  (fresh_database is a fixture)
    AcsProcess,
    free_ports,
    fresh_database,
    wait_until,
)

pytestmark = pytest.mark.db

LEASE_S = 3
TICKED = (leases.CAMPAIGNS, leases.BULK_JOBS)


def ticks(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        match = re.match(r'^acs_cluster_ticks_total\{lease="([^"]+)"\} (\S+)$', line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def host_env(database: str, workdir: Path, name: str) -> dict[str, str]:
    cwmp_port, api_port, files_port = free_ports(3)
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
        "ACS_LEASE_DURATION_S": str(LEASE_S),
        "ACS_CAMPAIGN_TICK_S": "0.5",
        "ACS_BULK_TICK_S": "0.5",
        "ACS_SECRETS_KEY": "k" * 40,  # one key for both hosts, as a cluster needs
        "ACS_CPE_AUTH": "none",
        "ACS_DEFAULT_POLICIES": "false",
        "ACS_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


async def test_two_hosts_tick_once_and_the_survivor_takes_over_a_killed_leader(
    fresh_database: str,  # noqa: F811
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="acs-cluster-leases-"))
    a = AcsProcess(host_env(fresh_database, workdir, "host-a"), workdir / "a.log")
    b = AcsProcess(host_env(fresh_database, workdir, "host-b"), workdir / "b.log")
    http = aiohttp.ClientSession()

    async def get(acs: AcsProcess, path: str) -> Any:
        async with http.get(f"{acs.api}{path}") as resp:
            return resp.status, (await resp.json() if path == "/readyz" else await resp.text())

    async def runs() -> dict[str, int]:
        conn = await connect(fresh_database)
        try:
            rows = await conn.fetch("SELECT name, runs FROM cluster_leases")
        finally:
            await conn.close()
        return {r["name"]: r["runs"] for r in rows}

    try:
        await a.start()  # first, so that it takes every lease
        await b.start()
        status, ready_a = await get(a, "/readyz")
        assert status == 200 and ready_a["host"] == "host-a"
        assert set(ready_a["leases"]) == set(leases.ALL)
        _, ready_b = await get(b, "/readyz")
        assert ready_b == {"status": "ready", "host": "host-b", "leases": []}

        async def a_ticked_a_few() -> bool:
            counted = ticks((await get(a, "/metrics"))[1])
            return all(counted.get(name, 0) >= 4 for name in TICKED)

        await wait_until(a_ticked_a_few, 60, "host-a ticking")
        metrics_a, metrics_b = (await get(a, "/metrics"))[1], (await get(b, "/metrics"))[1]
        in_db = await runs()
        # b's scheduler fired as often as a's, and ran nothing
        assert all(v == 0 for v in ticks(metrics_b).values()), ticks(metrics_b)
        for name in TICKED:
            # the database counted each of a's runs, and nobody else's (a may have
            # run one more between the two reads)
            assert ticks(metrics_a)[name] <= in_db[name] <= ticks(metrics_a)[name] + 1
        assert 'acs_host_info{host="host-a"} 1.0' in metrics_a
        assert 'acs_cluster_lease_held{lease="campaigns"} 1.0' in metrics_a
        assert 'acs_cluster_lease_held{lease="campaigns"} 0.0' in metrics_b

        conn = await connect(fresh_database)
        try:
            a.kill()  # no release: b must wait for the leases to run out
            killed_at = await conn.fetchval("SELECT now()")
            # each lease by itself: a tick extends its own lease, so they run out apart
            held_until = {
                r["name"]: r["expires_at"]
                for r in await conn.fetch(
                    "SELECT name, expires_at FROM cluster_leases WHERE holder = 'host-a'"
                )
            }

            async def b_leads() -> bool:
                _, ready = await get(b, "/readyz")
                return set(ready["leases"]) == set(leases.ALL)

            # the lease time, a renewal period of b's and room for a loaded machine
            await wait_until(b_leads, LEASE_S * 10, "host-b taking over")
            taken = await conn.fetch("SELECT name, since FROM cluster_leases")
        finally:
            await conn.close()
        assert set(held_until) == set(leases.ALL)
        assert max(held_until.values()) - killed_at <= timedelta(seconds=LEASE_S + 1)
        for row in taken:
            assert row["since"] >= held_until[row["name"]], (
                f"{row['name']} taken before a's lease ran out"
            )

        async def b_ticks() -> bool:
            counted = ticks((await get(b, "/metrics"))[1])
            return all(counted.get(name, 0) >= 2 for name in TICKED)

        await wait_until(b_ticks, 60, "host-b ticking")
    finally:
        await http.close()
        a.stop()
        b.stop()
        shutil.rmtree(workdir, ignore_errors=True)
