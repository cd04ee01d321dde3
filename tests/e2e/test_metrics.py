"""/metrics, /healthz and /readyz on the API port: simulated CPEs, real PostgreSQL, real HTTP."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from acs.cwmp import messages as m
from acs.store import credentials, tasks
from acs.store.db import drop_database, ensure_database, migrate
from acs.store.ids import device_id
from acs.web.server import Running, running_acs
from tests.e2e.conftest import StartAcs, cwmp_url, make_settings
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import catalog_image, ok, serial_filter, wait_campaign
from tests.e2e.test_simulator_fleet import dev_id, fleet_of, queue_and_run

pytestmark = pytest.mark.db

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(acs: Running, headers: dict[str, str] | None = None) -> Samples:
    async with (
        aiohttp.ClientSession() as http,
        http.get(acs.url("api", "/metrics"), headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/plain"
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@pytest.fixture
async def metered_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        connection_request_username="cr",
        connection_request_password="cr-secret",
        session_timeout_s=3.0,
        # the database gauges are read again at nearly every scrape, so the
        # tests see changes at once and the storm test reads them under load
        metrics_db_cache_s=0.1,
        campaign_tick_s=0.3,
    )


async def test_counters_move_with_a_fleets_sessions(
    metered_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    before = await scrape(metered_acs)
    assert value(before, "acs_cwmp_sessions_total", outcome="completed") == 0
    assert value(before, "acs_cwmp_sessions_in_flight") == 0
    assert value(before, "acs_db_pool_size") >= 1
    assert value(before, "acs_database_up") == 1

    fleet = await fleet_of(metered_acs, unique_serial("M"), 3)
    try:
        cpes = list(fleet.devices.values())
        await fleet.wait_for(lambda: all(c.sessions_ok >= 1 for c in cpes), 60)
        booted = await scrape(metered_acs)
        assert value(booted, "acs_cwmp_sessions_total", outcome="completed") == 3
        assert value(booted, "acs_cwmp_inform_events_total", event="0 BOOTSTRAP") == 3
        assert value(booted, "acs_cwmp_inform_events_total", event="1 BOOT") == 3
        # discovery of an unknown tree opens with GetParameterNames, then reads the values
        assert value(booted, "acs_cwmp_rpcs_total", method="GetParameterNames") >= 3
        assert value(booted, "acs_cwmp_rpcs_total", method="GetParameterValues") >= 3
        assert value(booted, "acs_cwmp_session_duration_seconds_count", outcome="completed") == 3
        assert value(booted, "acs_cwmp_session_duration_seconds_sum", outcome="completed") > 0
        assert value(booted, "acs_cwmp_sessions_in_flight") == 0
        for outcome in ("abandoned", "refused", "rejected", "db_unavailable"):
            assert value(booted, "acs_cwmp_sessions_total", outcome=outcome) == 0, outcome

        # a job the CPE refuses: its fault, by method and code, and the job's end
        serial = next(iter(fleet.devices))
        job = await queue_and_run(
            db_pool,
            fleet,
            serial,
            "getParameterValues",
            {"parameterNames": ["Device.NoSuchThing."]},
        )
        assert job.status == "fault" and job.fault_code == 9005
        # an operator's knock, through the API
        admin = Client(metered_acs, await token(db_pool, "admin", unique_serial))
        try:
            status, body = await admin.call(
                "POST", f"/devices/{dev_id(fleet, serial)}/connection-request"
            )
            assert status == 200 and body["ok"], body
        finally:
            await admin.close()
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 3)
        after = await scrape(metered_acs)
        assert (
            value(after, "acs_cwmp_cpe_faults_total", method="GetParameterValues", code="9005") == 1
        )
        assert value(after, "acs_jobs_finished_total", state="fault") == 1
        assert value(after, "acs_connection_requests_total", outcome="accepted") == 1
        assert value(after, "acs_cwmp_inform_events_total", event="6 CONNECTION REQUEST") == 2
        assert value(after, "acs_cwmp_sessions_total", outcome="completed") == 5
    finally:
        await fleet.stop()


async def test_every_way_a_session_ends_is_counted_once(
    metered_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    url = cwmp_url(metered_acs)
    first = CpeDouble(url, unique_serial(), digest=("cpe", "cpe-pw"))
    # the device's own credential, not the shared one that opened the session: under
    # the shared one the twin's Inform would be the same CPE restarting, and would
    # end the waiting session (tests/e2e/test_session_restarts.py) instead of 8005
    serial = first.identity.serial_number
    async with db_pool.acquire() as conn:
        await credentials.set_credential(
            conn, serial, "twin-pw", "acs", device_id("ACDE48", "HGW", serial)
        )
    twin = CpeDouble(url, serial, digest=(serial, "twin-pw"))
    stranger = CpeDouble(url, unique_serial())  # no credential
    try:
        opened = await first.post(first.inform_message(["1 BOOT"]))
        assert opened.status == 200
        during = await scrape(metered_acs)
        assert value(during, "acs_cwmp_sessions_in_flight") == 1
        # the same device again while its session is open, under another credential: 8005
        refused = await twin.post(twin.inform_message(["1 BOOT"]))
        assert isinstance(refused.message, m.Fault) and refused.message.fault_code == 8005
        # a message that breaks the open session: it is abandoned (and not also "rejected")
        broken = await first.post_raw(b"<not-xml")
        assert broken.status == 400
        # no session at all: without credentials the challenge (the handshake, not an
        # outcome), and with them a 400
        stray = await stranger.post(m.GetRPCMethods())
        assert stray.status == 401
        lost = CpeDouble(url, unique_serial(), digest=("cpe", "cpe-pw"))
        try:
            assert (await lost.post(m.GetRPCMethods())).status == 400
        finally:
            await lost.close()
        unauthenticated = await stranger.post(stranger.inform_message(["1 BOOT"]))
        assert unauthenticated.status == 401  # the challenge: the handshake, not an outcome
        wrong = CpeDouble(url, unique_serial(), digest=("cpe", "wrong"))
        try:
            assert (await wrong.post(wrong.inform_message(["1 BOOT"]))).status == 401
        finally:
            await wrong.close()
        after = await scrape(metered_acs)
        assert value(after, "acs_cwmp_sessions_total", outcome="refused") == 1
        assert value(after, "acs_cwmp_sessions_total", outcome="abandoned") == 1
        assert value(after, "acs_cwmp_sessions_total", outcome="rejected") == 2
        assert value(after, "acs_cwmp_sessions_total", outcome="completed") == 0
        assert value(after, "acs_cwmp_session_duration_seconds_count", outcome="abandoned") == 1
        assert value(after, "acs_cwmp_sessions_in_flight") == 0
    finally:
        for cpe in (first, twin, stranger):
            await cpe.close()


async def test_scrapes_stay_fast_and_never_fail_during_a_boot_storm(
    metered_acs: Running, unique_serial
) -> None:
    fleet = await fleet_of(metered_acs, unique_serial("S"), 200, max_concurrent=200)
    latencies: list[float] = []
    in_flight_seen: list[float] = []
    try:
        cpes = list(fleet.devices.values())
        async with aiohttp.ClientSession() as http:
            url = metered_acs.url("api", "/metrics")
            deadline = time.monotonic() + 150
            while not all(c.sessions_ok >= 1 for c in cpes):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the fleet never finished booting: {fleet.summary()}")
                start = time.monotonic()
                async with http.get(url) as resp:
                    assert resp.status == 200, await resp.text()
                    text = await resp.text()
                latencies.append(time.monotonic() - start)
                for family in text_string_to_metric_families(text):
                    if family.name == "acs_cwmp_sessions_in_flight":
                        in_flight_seen.append(family.samples[0].value)
                await asyncio.sleep(0.05)
        assert len(latencies) >= 5, "the storm ended before it could be scraped"
        # each scrape waits at most ~1 s for the database, whatever the storm does
        assert max(latencies) < 3.0, sorted(latencies)[-5:]
        assert max(in_flight_seen) > 1, "no scrape saw the storm's sessions"
        settled = await scrape(metered_acs)
        assert value(settled, "acs_cwmp_sessions_in_flight") == 0
        assert value(settled, "acs_cwmp_inform_events_total", event="0 BOOTSTRAP") == 200
        assert value(settled, "acs_cwmp_sessions_total", outcome="db_unavailable") == 0
        assert value(settled, "acs_db_pool_size") <= value(settled, "acs_db_pool_max_size")
    finally:
        await fleet.stop()


async def test_jobs_and_campaign_progress_come_from_the_database(
    metered_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(metered_acs, unique_serial("J"), 2)
    admin = Client(metered_acs, await token(db_pool, "admin", unique_serial))
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 60)
        before = value(await scrape(metered_acs), "acs_jobs", state="pending")
        serial = next(iter(fleet.devices))
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(conn, dev_id(fleet, serial), "reboot", {})
        await asyncio.sleep(0.15)  # past the gauges' cache
        assert value(await scrape(metered_acs), "acs_jobs", state="pending") == before + 1
        status, _ = await admin.call("DELETE", f"/tasks/{job.id}")
        assert status == 200
        await asyncio.sleep(0.15)
        assert value(await scrape(metered_acs), "acs_jobs", state="pending") == before

        image = await catalog_image(admin, unique_serial, "2.0.0")
        campaign = await ok(
            admin,
            "POST",
            "/campaigns",
            201,
            json={
                "name": unique_serial("metrics-"),
                "image": image["id"],
                "filter": serial_filter(fleet),
                "stages": [{"size": "100%"}],
                # no window opens during the test: the members stay pending
                "windows": [{"cron": "0 3 1 1 *", "durationMinutes": 1, "timezone": "UTC"}],
            },
        )
        cid = str(campaign["id"])
        await ok(admin, "POST", f"/campaigns/{campaign['id']}/start")
        await asyncio.sleep(0.15)
        members = {
            dict(labels)["state"]: v
            for labels, v in series(await scrape(metered_acs), "acs_campaign_devices").items()
            if dict(labels)["campaign"] == cid
        }
        assert members == {"pending": 2}
        await ok(admin, "POST", f"/campaigns/{campaign['id']}/cancel")
        await wait_campaign(admin, campaign["id"], lambda b: b["status"] == "cancelled")
        await asyncio.sleep(0.15)
        gone = series(await scrape(metered_acs), "acs_campaign_devices")
        assert not [labels for labels in gone if dict(labels)["campaign"] == cid]
    finally:
        await admin.close()
        await fleet.stop()


async def test_metrics_token_when_configured(start_acs: StartAcs) -> None:
    acs = await start_acs(metrics_token="s3cret-scraper")
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-scraper"}):
            async with http.get(acs.url("api", "/metrics"), headers=headers) as resp:
                assert resp.status == 401, headers
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        # health stays open: load balancers carry no token
        async with http.get(acs.url("api", "/healthz")) as resp:
            assert resp.status == 200
    samples = await scrape(acs, {"Authorization": "Bearer s3cret-scraper"})
    assert value(samples, "acs_database_up") == 1


async def test_readyz_and_metrics_when_the_database_goes_away(
    pg_admin_url: str, tmp_path: Any, unique_serial
) -> None:
    """A database of its own, dropped under the running ACS: the real thing a load
    balancer must notice, and nothing answers 500."""
    name = f"acs_test_gone_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    settings = make_settings(data_dir=tmp_path, metrics_db_cache_s=0.1)
    try:
        async with running_acs(settings, url) as acs, aiohttp.ClientSession() as http:
            async with http.get(acs.url("api", "/readyz")) as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "ready"

            await drop_database(pg_admin_url, name)

            async with http.get(acs.url("api", "/readyz")) as resp:
                assert resp.status == 503
                assert (await resp.json())["status"] == "database unavailable"
            async with http.get(acs.url("api", "/healthz")) as resp:
                assert resp.status == 200  # the process itself is fine: do not restart it
            cpe = CpeDouble(cwmp_url(acs), unique_serial())
            try:
                reply = await cpe.post(cpe.inform_message(["1 BOOT"]))
            finally:
                await cpe.close()
            assert reply.status == 503 and reply.headers["Retry-After"]
            # past ten times the cache: the last numbers read are too old to show
            await asyncio.sleep(1.2)
            samples = await scrape(acs)
            assert value(samples, "acs_database_up") == 0
            assert value(samples, "acs_cwmp_sessions_total", outcome="db_unavailable") == 1
            names = {n for n, _ in samples}
            assert "acs_jobs" not in names and "acs_db_pool_max_size" in names
    finally:
        await drop_database(pg_admin_url, name)
