"""Overload: past ACS_MAX_SESSIONS_PER_WORKER sessions in flight a new Inform gets
503 with Retry-After, nothing is written for its device, and the sessions
already running finish normally."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.cwmp import messages as m
from cpe_simulator.cpe import SimulatedCpe
from tests.e2e.conftest import StartAcs
from tests.e2e.test_simulator_fleet import fleet_of
from tests.e2e.test_survival import inform_envelope

pytestmark = pytest.mark.db


async def post_inform(url: str, serial: str) -> tuple[int, str | None, bytes]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.post(
            url, data=inform_envelope(serial), headers={"Content-Type": "text/xml"}
        ) as resp:
            return resp.status, resp.headers.get("Retry-After"), await resp.read()


def metric(text: str, outcome: str) -> float:
    found = re.search(rf'^acs_cwmp_sessions_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M)
    assert found, text[:2000]
    return float(found.group(1))


async def test_inform_past_the_limit_gets_503_and_open_sessions_finish(
    start_acs: StartAcs,
    db_pool: asyncpg.Pool,
    unique_serial: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the fleet shares one address: only the worker-wide limit is under test here
    running = await start_acs(
        max_sessions_per_worker=3, max_sessions_per_address=10, max_sessions_per_credential=10
    )
    url = f"http://127.0.0.1:{running.ports['cwmp']}/"
    # the three CPEs stop at the first RPC the ACS sends them (discovery of a new
    # device) until released: their sessions are open and in flight
    release = asyncio.Event()
    held: set[str] = set()
    answer = SimulatedCpe.answer

    async def holding(cpe: SimulatedCpe, request: m.Message) -> m.Message:
        held.add(cpe.serial)
        await release.wait()
        return await answer(cpe, request)

    monkeypatch.setattr(SimulatedCpe, "answer", holding)
    prefix = unique_serial("OVL")
    fleet = await fleet_of(running, prefix, 3, periodic_interval=3600)
    try:
        await fleet.wait_for(lambda: len(held) == 3, 30)
        assert len(running.cwmp.by_id) == 3

        fourth = unique_serial("OVLX")
        status, retry_after, _ = await post_inform(url, fourth)
        assert status == 503
        assert retry_after is not None and 10 <= int(retry_after) <= 40
        async with db_pool.acquire() as conn:
            written = await conn.fetchval(
                "SELECT count(*) FROM devices WHERE serial_number = $1", fourth
            )
        assert written == 0  # refused before the database: no device row, no lock

        # the sessions in flight were not touched: released, they complete
        release.set()
        await fleet.wait_for(lambda: all(c.sessions_ok == 1 for c in fleet.devices.values()), 30)
        assert not [k for k in fleet.counters if k[0] == "session_failed"], fleet.counters
        assert running.cwmp.by_id == {}

        # with room again, the same CPE's Inform is served
        status, _, body = await post_inform(url, fourth)
        assert status == 200 and b"InformResponse" in body, body[:300]

        text = (await running.metrics.render()).decode()
        assert metric(text, "overloaded") == 1
        assert metric(text, "completed") == 3
    finally:
        release.set()
        await fleet.stop()
