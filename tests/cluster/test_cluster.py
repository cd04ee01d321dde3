"""Two ACS hosts behind HAProxy, PostgreSQL under Patroni: the cluster as it runs.

One rig for the module (building it is most of the cost: Patroni's bootstrap
and a synchronous standby), the tests in an order that leaves it usable: the
primary is killed last. The CPEs are the simulator in the root namespace,
given only the load balancer's address; what is checked is what they saw
(``requests_seen``, the flashes counted on the CPE side) and what PostgreSQL
holds. Select with ``-m cluster``; skipped with the reason when not root or a
package is missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from acs.store import tokens
from acs.store.db import connect
from acs.store.ids import device_id
from acs.web.host_relay import host_id_of
from cpe_simulator.firmware import make_image
from cpe_simulator.fleet import Fleet, FleetConfig
from tests.cluster.rig import (
    CPE_PASSWORD,
    CPE_USER,
    ROOT_IP,
    Rig,
    RigUnavailable,
    make_rig,
    metrics_of,
    sessions_completed,
    wait_until,
)
from tests.e2e.test_simulator_fleet import FAST
from tests.e2e.test_survival import SideEffects

pytestmark = pytest.mark.cluster

ACS_HOSTS = ("acs1", "acs2")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rig() -> AsyncIterator[Rig]:
    try:
        the_rig = make_rig(
            acs_env={
                "ACS_CAMPAIGN_TICK_S": "0.5",
                "ACS_BULK_TICK_S": "0.5",
                # a dead host's leases expire soon, so its CPEs' next Informs are served
                "ACS_SESSION_TIMEOUT_S": "5",
            }
        )
    except RigUnavailable as exc:
        pytest.skip(str(exc))
    try:
        await the_rig.up()
    except RigUnavailable as exc:
        the_rig.close()
        pytest.skip(str(exc))
    except BaseException:
        the_rig.close()
        raise
    try:
        yield the_rig
    finally:
        the_rig.close()  # ACSRIG_KEEP_LOGS=1 keeps the servers' logs in /tmp/acsrig


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(rig: Rig) -> AsyncIterator[Any]:
    """A caller of the operator API through the load balancer (an admin token)."""
    conn = await connect(rig.dsn())
    try:
        secret = await tokens.create_token(conn, "cluster-test", "admin")
    finally:
        await conn.close()
    http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"})

    async def call(method: str, path: str, status: int = 200, **kw: Any) -> Any:
        async with http.request(method, f"{rig.api_url}/api/v1{path}", **kw) as resp:
            body = await resp.json()
            assert resp.status == status, (method, path, resp.status, body)
            return body

    yield call
    await http.close()


def fleet_of(rig: Rig, prefix: str, devices: int, **kw: Any) -> Fleet:
    return Fleet(
        FleetConfig(
            acs_url=rig.cwmp_url,  # the load balancer only
            devices=devices,
            serial_prefix=prefix,
            username=CPE_USER,
            password=CPE_PASSWORD,
            timing=FAST,
            cr_host=ROOT_IP,  # the ACS hosts knock here, across the bridge
            **kw,
        )
    )


def dev(fleet: Fleet, serial: str) -> str:
    return device_id(fleet.config.oui, fleet.config.product_class, serial)


async def readyz(rig: Rig, host: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{rig.host_api(host)}/readyz") as resp:
            assert resp.status == 200, resp.status
            body: dict[str, Any] = await resp.json()
            return body


async def completed_by_host(rig: Rig, hosts: tuple[str, ...] = ACS_HOSTS) -> dict[str, int]:
    return {h: sessions_completed(await metrics_of(rig.host_api(h))) for h in hosts}


async def test_fleet_through_the_load_balancer_is_served_by_both_hosts(rig: Rig, api: Any) -> None:
    before = await completed_by_host(rig)
    # half the CPEs open a new TCP connection for every POST: only the session
    # cookie (HAProxy's stick table) keeps their sessions on one host
    fleet = fleet_of(rig, "CLSPREAD", 30, periodic_interval=3600, faults="new-connection:0.5")
    try:
        await fleet.start()
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 90)
        # a job per device, through the API on whichever host the LB picks, and a knock
        for serial in fleet.devices:
            key = f"spread-{serial}"
            body = {
                "name": "setParameterValues",
                "parameterValues": [["Device.WiFi.SSID.1.SSID", key]],
                "parameterKey": key,
            }
            await api("POST", f"/devices/{dev(fleet, serial)}/tasks", 201, json=body)
            answer = await api("POST", f"/devices/{dev(fleet, serial)}/connection-request")
            assert answer["ok"], answer

        def jobs_ran() -> bool:
            return all(c.requests_seen["SetParameterValues"] >= 1 for c in fleet.devices.values())

        await fleet.wait_for(jobs_ran, 90)
        # the job's session has ended on the CPE side; the host counts it as it
        # closes the session, a moment later
        await fleet.wait_for(lambda: all(c.sessions_ok >= 2 for c in fleet.devices.values()), 30)
        served: dict[str, int] = {}

        async def counted() -> bool:
            after = await completed_by_host(rig)
            served.update({h: after[h] - before[h] for h in ACS_HOSTS})
            return sum(served.values()) >= 2 * len(fleet.devices)

        await wait_until(counted, 15, "both sessions of every CPE counted by a host")
        # both hosts served this fleet's sessions, and no session broke on the way
        assert served["acs1"] > 0 and served["acs2"] > 0, served
        assert sum(served.values()) >= 2 * len(fleet.devices), served
        for serial, cpe in fleet.devices.items():
            assert cpe.requests_seen["SetParameterValues"] == 1, (serial, cpe.requests_seen)
            assert cpe.tree.value("Device.WiFi.SSID.1.SSID") == f"spread-{serial}"
        assert not [k for k in fleet.counters if k[0] in ("session_failed", "session_crashed")], (
            fleet.counters
        )
        assert ("http", "500") not in fleet.counters, fleet.counters
    finally:
        await fleet.stop()


async def test_acs_host_killed_mid_storm_its_cpes_finish_on_the_other(rig: Rig) -> None:
    # "slow": each CPE waits before each POST, so a session acs1 holds when it is
    # found busy is still open (waiting for its CPE) when it is killed a moment later
    fleet = fleet_of(rig, "CLSTORM", 60, periodic_interval=3600, max_concurrent=60, faults="slow")
    try:
        await fleet.start()  # every CPE boots at once: a storm through the LB

        async def acs1_busy() -> bool:
            text = await metrics_of(rig.host_api("acs1"))
            return sessions_completed(text) > 0 and any(
                line.startswith("acs_cwmp_sessions_in_flight ") and float(line.split()[-1]) > 0
                for line in text.splitlines()
            )

        await wait_until(acs1_busy, 60, "acs1 in the middle of the storm", poll=0.05)
        # acs2's count first: a CPE not done at the kill may finish on acs2 while
        # the count is fetched, and must still fall after it
        acs2_before = (await completed_by_host(rig, ("acs2",)))["acs2"]
        failed_at_kill = {s: c.sessions_failed for s, c in fleet.devices.items()}
        done_at_kill = sum(1 for c in fleet.devices.values() if c.sessions_ok)
        rig.kill_host("acs1")
        # the CPEs acs1 held retry (TR-069's back-off) and the LB sends them to acs2
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 120)
        assert done_at_kill < len(fleet.devices)  # the kill did fall mid-storm
        # a CPE whose session failed after the kill can only have ended it on acs2
        # (a 204 that left acs1 just before the kill may still reach its CPE after
        # it, through the LB: such a CPE ends on acs1 and is not counted here)
        cut = sorted(s for s, c in fleet.devices.items() if c.sessions_failed > failed_at_kill[s])
        assert cut, "no CPE saw its session cut: the kill missed the storm"

        async def acs2_served_the_cut() -> bool:
            # a host counts a session as it closes, just after its CPE saw the end
            after = (await completed_by_host(rig, ("acs2",)))["acs2"]
            return after - acs2_before >= len(cut)

        await wait_until(acs2_served_the_cut, 10, "acs2 counted every CPE whose session acs1 cut")
        conn = await connect(rig.dsn())
        try:
            stuck = await conn.fetchval(
                "SELECT count(*) FROM device_sessions WHERE session_expires_at < now()"
                " AND session_id IS NOT NULL"
            )
            # each cut CPE's session log shows its completed session on acs2
            served_on_acs2 = await conn.fetch(
                "SELECT DISTINCT device_id FROM session_logs WHERE device_id = ANY($1::text[])"
                " AND outcome = 'completed' AND session_key LIKE $2",
                [dev(fleet, s) for s in cut],
                host_id_of("acs2") + "%",
            )
        finally:
            await conn.close()
        assert stuck == 0
        assert sorted(r["device_id"] for r in served_on_acs2) == sorted(dev(fleet, s) for s in cut)
    finally:
        await fleet.stop()
        # back to two hosts for the tests that follow
        rig.start_acs("acs1")
        await rig.wait_acs("acs1")
        await rig.wait_lb(2)


async def test_ticks_run_once_with_two_hosts(rig: Rig, api: Any) -> None:
    """A bulk job's tick on both hosts must still queue and knock each device once."""
    fleet = fleet_of(rig, "CLTICK", 20, periodic_interval=3600)
    try:
        await fleet.start()
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 90)
        spec = {
            "name": "reboot across the cluster",
            "task": {"name": "reboot"},
            "filter": 'DeviceID.SerialNumber LIKE "CLTICK%"',
            "ratePerMinute": 600,
            "connectionRequest": True,
        }
        # cluster-core's leases: the bulk-job tick is held by exactly one of the two hosts
        holders = []
        for host in ACS_HOSTS:
            ready = await readyz(rig, host)
            assert ready["host"] == host, ready
            holders += [host] if "bulk_jobs" in ready["leases"] else []
        assert len(holders) == 1, holders
        job = await api("POST", "/bulk-jobs", 201, json=spec)

        async def finished() -> bool:
            body = await api("GET", f"/bulk-jobs/{job['id']}")
            return bool(body["status"] == "completed")

        await wait_until(finished, 120, "bulk job completed", poll=0.5)
        done = await api("GET", f"/bulk-jobs/{job['id']}")
        assert done["queued"] == 20 and done["progress"]["done"] == 20, done
        await fleet.wait_for(lambda: all(c.state == "up" for c in fleet.devices.values()), 30)
        for serial, cpe in fleet.devices.items():
            assert cpe.requests_seen["Reboot"] == 1, (serial, cpe.requests_seen)
        conn = await connect(rig.dsn())
        try:
            per_device = await conn.fetch(
                "SELECT device_id, count(*) AS n FROM tasks WHERE name = 'reboot'"
                " AND device_id LIKE '%CLTICK%' GROUP BY device_id"
            )
        finally:
            await conn.close()
        assert len(per_device) == 20 and all(r["n"] == 1 for r in per_device), per_device
    finally:
        await fleet.stop()


async def test_primary_killed_mid_campaign_patroni_fails_over_and_it_completes(
    rig: Rig, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    effects = SideEffects(monkeypatch)
    lb_log_start = len(rig.log_tail("haproxy", 10**9))
    fleet = fleet_of(rig, "CLFAIL", 20, periodic_interval=2)
    try:
        await fleet.start()
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 90)
        await api("PUT", "/files/fw-cl-2.0.0.bin", 201, data=make_image("2.0.0", 2_000_000))
        image = await api(
            "POST",
            "/firmware/images",
            201,
            json={
                "file": "fw-cl-2.0.0.bin",
                "oui": "ACDE48",
                "productClass": "HGW",
                "hardwareVersions": ["HW1.0"],
                "version": "2.0.0",
            },
        )
        spec = {
            "name": "failover-mid-campaign",
            "image": image["id"],
            "filter": 'DeviceID.SerialNumber LIKE "CLFAIL%"',
            "stages": [{"size": "25%"}, {"size": "100%"}],
            "maxInFlight": 5,
            "maxAttempts": 3,
            "retryBackoffS": 0.5,
            "verifyTimeoutS": 40,
        }
        cid = (await api("POST", "/campaigns", 201, json=spec))["id"]
        await api("POST", f"/campaigns/{cid}/start")

        def states(body: dict[str, Any]) -> Counter[str]:
            total: Counter[str] = Counter()
            for stage in body["stages"]:
                total.update(stage["states"])
            return total

        async def mid_campaign() -> bool:
            now = states(await api("GET", f"/campaigns/{cid}"))
            return now["succeeded"] >= 2

        await wait_until(mid_campaign, 90, "a campaign under way", poll=0.2)
        old = await rig.primary()
        assert old is not None
        rig.kill_host(old)  # the database host crashes: Patroni's leader key expires
        new = await rig.wait_primary(60, not_host=old)
        assert new != old

        async def completed() -> bool:
            try:
                body = await api("GET", f"/campaigns/{cid}")
            except (AssertionError, aiohttp.ClientError):
                return False  # 503 while the ACS finds the new primary
            return bool(body["status"] == "completed")

        await wait_until(completed, 180, "campaign completed after the failover", poll=0.5)
        done = await api("GET", f"/campaigns/{cid}")
        assert done["totals"] == {"succeeded": 20}, done["totals"]
        assert all(c.tree.software_version == "2.0.0" for c in fleet.devices.values())
        # each device flashed once, counted on the CPE side
        assert effects.flashes == Counter(dict.fromkeys(fleet.devices, 1)), effects.flashes
        conn = await connect(rig.dsn())
        try:
            rows = await conn.fetch(
                "SELECT cd.device_id, cd.attempts, count(t.id) AS downloads,"
                " count(t.id) FILTER (WHERE t.status = 'done') AS done"
                " FROM campaign_devices cd"
                " LEFT JOIN tasks t ON t.device_id = cd.device_id AND t.name = 'download'"
                "  AND t.args->>'commandKey' LIKE $2"
                " WHERE cd.campaign_id = $1 GROUP BY cd.device_id, cd.attempts",
                cid,
                f"campaign-{cid}-%",
            )
            left_running = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE status = 'running' AND device_id LIKE '%CLFAIL%'"
            )
        finally:
            await conn.close()
        assert len(rows) == 20
        # every Download job ran exactly once to completion
        assert all(r["done"] == 1 for r in rows), [dict(r) for r in rows]
        assert left_running == 0
        assert not [k for k in fleet.counters if k[0] == "session_crashed"], fleet.counters
        # while the ACS looked for the new primary it answered 503 (and HAProxy,
        # with no host passing /readyz, its own 503): never a 500, by HAProxy's log
        statuses = lb_statuses(rig.log_tail("haproxy", 10**9)[lb_log_start:])
        assert statuses["503"] > 0, statuses  # the failover was seen by the CPEs
        assert not [code for code in statuses if code.startswith("5") and code != "503"], statuses
    finally:
        await fleet.stop()


def lb_statuses(log: str) -> Counter[str]:
    """HTTP status of every request in HAProxy's log (option httplog: the 6th field)."""
    found: Counter[str] = Counter()
    for line in log.splitlines():
        fields = line.split()
        if line.startswith("10.77.") and len(fields) > 5:
            found[fields[5]] += 1
    return found
