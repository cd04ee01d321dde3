"""Live updates in a real browser: pages follow the fleet through server-sent
events (GET /api/v1/events) without a reload and without a polling timer."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from acs.web.server import Running
from tests.e2e import test_ui
from tests.e2e.test_api import Client, token
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.e2e.test_ui_http import make_user

# the browser, the ACS and the signed-in people of the browser tests
browser = test_ui.browser
ui_acs = test_ui.ui_acs
person = test_ui.person
expect = test_ui.expect
pytestmark = test_ui.pytestmark

LIVE_READY = "html[data-live-state=ready]"


async def tile_number(page: Any) -> int:
    text = await page.get_by_test_id("tiles").locator(".tile").first.inner_text()
    return int(re.match(r"\s*(\d+)", text).group(1))  # type: ignore[union-attr]


async def test_the_overview_and_a_device_page_follow_the_fleet_without_reload(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    viewer = await person()
    await viewer.sign_in(await make_user(db_pool, unique_serial, "viewer"))
    page = viewer.page
    await page.wait_for_selector(LIVE_READY, state="attached")
    before = await tile_number(page)
    # a mark in this page's memory: a reload would lose it
    await page.evaluate("window.__sameDocument = true")
    fleet = await fleet_of(ui_acs, unique_serial("LV"), 2)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        # the two new devices' first sessions were heard: the tile counts them
        await page.wait_for_function(
            "n => parseInt(document.querySelector('[data-testid=tiles] .tile .big').textContent)"
            " >= n",
            arg=before + 2,
        )
        assert await page.evaluate("window.__sameDocument") is True
        assert int(await page.evaluate("document.documentElement.dataset.liveUpdates")) >= 1
        # a device's page shows a job queued elsewhere (here: by a script) as it happens
        serial = next(iter(fleet.devices))
        device = dev_id(fleet, serial)
        await viewer.goto(f"/ui/devices/{device}")
        await page.wait_for_selector(LIVE_READY, state="attached")
        await page.evaluate("window.__sameDocument = true")
        jobs = page.locator("section#jobs")
        await expect(jobs).not_to_contain_text("getParameterNames")
        script = Client(ui_acs, await token(db_pool, "operator", unique_serial))
        try:
            status, job = await script.call(
                "POST",
                f"/devices/{device}/tasks",
                json={
                    "name": "getParameterNames",
                    "parameterPath": "Device.DeviceInfo.",
                    "nextLevel": True,
                },
            )
            assert status == 201, job
        finally:
            await script.close()
        await expect(page.locator("section#jobs")).to_contain_text("getParameterNames")
        assert await page.evaluate("window.__sameDocument") is True
    finally:
        await fleet.stop()


async def test_no_page_polls_any_more(person: Any, db_pool: asyncpg.Pool, unique_serial) -> None:
    viewer = await person()
    await viewer.sign_in(await make_user(db_pool, unique_serial, "viewer"))
    page = viewer.page
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if r.resource_type == "fetch" else None)
    await page.wait_for_selector(LIVE_READY, state="attached")
    # a quiet fleet, a page left open: nothing is fetched (the stream is an EventSource)
    await page.wait_for_timeout(3000)
    assert fetched == []
