"""GET /api/v1/events, the live updates' stream, over real HTTP: who may
listen, what a bad topic gets, and a real CPE session heard as it ends."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest

from acs.web.server import Running
from tests.e2e.test_api import dev_id_of, registered, token

pytestmark = pytest.mark.db


async def events(
    resp: aiohttp.ClientResponse, until: str, wait_s: float = 20
) -> list[dict[str, str]]:
    """The stream's events (id, event, data) up to the first whose data or
    event is ``until``."""
    seen: list[dict[str, str]] = []
    current: dict[str, str] = {}

    async def read() -> None:
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if "event" in current:  # not the opening "retry:" advice
                    seen.append(dict(current))
                    if until in (current.get("event"), current.get("data")):
                        return
                current.clear()
                continue
            if line.startswith(":"):
                continue  # a heartbeat
            field, _, value = line.partition(": ")
            current[field] = value

    await asyncio.wait_for(read(), wait_s)
    return seen


async def test_a_viewer_hears_a_session_end_and_a_bad_topic_is_a_400(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    base = f"http://127.0.0.1:{acs.ports['api']}/api/v1/events"
    viewer = {"Authorization": f"Bearer {await token(db_pool, 'viewer', unique_serial)}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(base, params={"topics": "overview"}) as resp:
            assert resp.status == 401
        for bad, says in (
            ("everything", "unknown topic"),
            ("campaign:x", "names its number"),
            (",".join(f"campaign:{i}" for i in range(1, 30)), "at most 20 topics"),
        ):
            async with http.get(base, params={"topics": bad}, headers=viewer) as resp:
                body = await resp.json()
                assert resp.status == 400, body
                assert says in body["error"]["message"]
                assert body["error"]["errors"][0]["path"] == "topics"
        cpe = await registered(acs, unique_serial())
        dev = dev_id_of(cpe)
        try:
            params = {"topics": f"device:{dev},devices"}
            async with http.get(base, params=params, headers=viewer) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                [ready] = await events(resp, "ready")
                assert ready["data"] == f"device:{dev},devices"
                await cpe.session(["2 PERIODIC"])  # a real session, ended by the ACS
                heard = await events(resp, f"device:{dev}")
                assert {"event": "change", "data": f"device:{dev}"} in [
                    {k: e[k] for k in ("event", "data")} for e in heard
                ]
                last_id = heard[-1]["id"]
            # a browser coming back says where it was: told to re-fetch what it missed
            again = {**viewer, "Last-Event-ID": last_id}
            async with http.get(base, params=params, headers=again) as resp:
                got = await events(resp, "resync")
                assert [e["event"] for e in got] == ["ready", "resync"]
        finally:
            await cpe.close()


async def test_the_stream_ends_when_the_ui_session_does(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    from tests.e2e.test_ui_http import Browserless, make_user

    person = Browserless(acs)
    try:
        name = await make_user(db_pool, unique_serial, "viewer")
        assert (await person.login(name)).status == 303
        url = f"{person.base}/api/v1/events"
        async with person.http.get(url, params={"topics": "jobs"}) as resp:
            assert resp.status == 200
            await events(resp, "ready")
            async with db_pool.acquire() as conn:
                # signed out everywhere (an admin's "end their sessions")
                await conn.execute("DELETE FROM ui_sessions WHERE username = $1", name)
            # the next heartbeat finds the session gone and ends the stream
            rest = await asyncio.wait_for(resp.content.read(), 40)
            assert b"event: change" not in rest
    finally:
        await person.close()
