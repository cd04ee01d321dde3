"""Fair admission: one client address or one CPE credential cannot take every session
slot. Past its limit a new Inform gets 503 with Retry-After before any database
work, counted in the metrics, while other clients go on being served."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import asyncpg
import pytest

from acs.store import credentials
from acs.store.ids import device_id
from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_survival import inform_envelope

pytestmark = pytest.mark.db


class Client:
    """One CPE on its own loopback address (127.0.0.0/8 is all ours on Linux)."""

    def __init__(
        self, running: Running, address: str, basic: tuple[str, str] | None = None
    ) -> None:
        self.url = f"http://127.0.0.1:{running.ports['cwmp']}/"
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0)),
            cookie_jar=aiohttp.DummyCookieJar(),  # every Inform opens a session of its own
            headers={"Authorization": aiohttp.encode_basic_auth(*basic)} if basic else None,
            timeout=aiohttp.ClientTimeout(total=20),
        )

    async def inform(self, serial: str) -> tuple[int, str | None, bytes]:
        async with self.http.post(
            self.url, data=inform_envelope(serial), headers={"Content-Type": "text/xml"}
        ) as resp:
            return resp.status, resp.headers.get("Retry-After"), await resp.read()

    async def close(self) -> None:
        await self.http.close()


def metric(text: str, outcome: str) -> float:
    found = re.search(rf'^acs_cwmp_sessions_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M)
    assert found, text[:2000]
    return float(found.group(1))


async def rows(pool: asyncpg.Pool, serial: str) -> int:
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval("SELECT count(*) FROM devices WHERE serial_number = $1", serial)
        )


async def test_one_address_cannot_take_every_slot(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    running = await start_acs(max_sessions_per_worker=10, max_sessions_per_address=3)
    greedy = Client(running, "127.0.0.2")
    other = Client(running, "127.0.0.3")
    try:
        for _ in range(3):  # each Inform opens a session that stays in flight
            status, _, body = await greedy.inform(unique_serial("ADM"))
            assert status == 200 and b"InformResponse" in body
        refused = unique_serial("ADMX")
        status, retry_after, body = await greedy.inform(refused)
        assert status == 503, body
        assert retry_after is not None and 10 <= int(retry_after) <= 40
        assert b"from this address" in body
        assert await rows(db_pool, refused) == 0  # refused before the database

        # another address is served meanwhile
        status, _, body = await other.inform(unique_serial("ADM"))
        assert status == 200 and b"InformResponse" in body
        assert running.cwmp.admission.sessions_at("127.0.0.2") == 3

        # a session that ends gives its slot back
        live = next(s for s in running.cwmp.by_id.values() if s.remote == "127.0.0.2")
        await running.cwmp._drop(live, "test: the CPE went away")
        assert running.cwmp.admission.sessions_at("127.0.0.2") == 2
        status, _, _ = await greedy.inform(refused)
        assert status == 200 and await rows(db_pool, refused) == 1

        text = (await running.metrics.render()).decode()
        assert metric(text, "limited_address") == 1
        assert metric(text, "limited_credential") == 0
        assert metric(text, "overloaded") == 0
    finally:
        await greedy.close()
        await other.close()


async def test_the_shared_credential_cannot_starve_per_device_ones(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    running = await start_acs(
        cpe_auth="basic",
        cpe_username="cpe",
        cpe_password="shared-pw",
        max_sessions_per_worker=10,
        max_sessions_per_address=10,
        max_sessions_per_credential=2,
    )
    shared = ("cpe", "shared-pw")
    own_serial = unique_serial("ADMOWN")
    async with db_pool.acquire() as conn:
        await credentials.set_credential(
            conn, own_serial, "own-pw", "acs", device_id("ACDE48", "PROBE", own_serial)
        )
    clients = [Client(running, f"127.0.0.{10 + i}", shared) for i in range(3)]
    own = Client(running, "127.0.0.10", (own_serial, "own-pw"))
    wrong = Client(running, "127.0.0.20", ("cpe", "not-the-password"))
    try:
        # the shared credential from two addresses: its limit, though neither
        # address is near its own
        for client in clients[:2]:
            status, _, _ = await client.inform(unique_serial("ADM"))
            assert status == 200
        refused = unique_serial("ADMX")
        status, retry_after, body = await clients[2].inform(refused)
        assert status == 503 and b"with this credential" in body
        assert retry_after is not None and 10 <= int(retry_after) <= 40
        assert await rows(db_pool, refused) == 0

        # a CPE with a credential of its own is served, even from a busy address
        status, _, body = await own.inform(own_serial)
        assert status == 200 and b"InformResponse" in body
        assert running.cwmp.admission.sessions_of(own_serial) == 1

        # claiming the shared name without its password uses none of its slots
        assert running.cwmp.admission.sessions_of("cpe") == 2
        status, _, _ = await wrong.inform(unique_serial("ADM"))
        assert status == 503  # told to wait like the others, never let in
        assert running.cwmp.admission.sessions_of("cpe") == 2

        text = (await running.metrics.render()).decode()
        assert metric(text, "limited_credential") == 2
        assert metric(text, "limited_address") == 0
    finally:
        for client in (*clients, own, wrong):
            await client.close()


async def test_a_failed_handshake_gives_its_slot_back(start_acs: StartAcs, unique_serial) -> None:
    """The 401 of a Digest challenge (and any refused Inform) holds no slot."""
    running = await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="pw",
        max_sessions_per_worker=10,
        max_sessions_per_address=1,
    )
    client = Client(running, "127.0.0.30")
    try:
        for _ in range(3):
            status, _, _ = await client.inform(unique_serial("ADM"))
            assert status == 401
        assert running.cwmp.admission.sessions_at("127.0.0.30") == 0
    finally:
        await client.close()


async def test_a_burst_from_one_address_gets_exactly_its_share(
    start_acs: StartAcs, unique_serial
) -> None:
    """Informs arriving together cannot all pass the check before the first is counted."""
    running = await start_acs(max_sessions_per_worker=50, max_sessions_per_address=3)
    clients = [Client(running, "127.0.0.40") for _ in range(12)]
    try:
        results = await asyncio.gather(*(c.inform(unique_serial("ADMB")) for c in clients))
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200] * 3 + [503] * 9, statuses
        assert running.cwmp.admission.sessions_at("127.0.0.40") == 3
    finally:
        for client in clients:
            await client.close()
