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


async def test_a_live_update_keeps_the_message_the_open_form_and_what_was_typed(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("LK"), 1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        device = dev_id(fleet, next(iter(fleet.devices)))
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await op.goto(f"/ui/devices/{device}")
        await page.wait_for_selector(LIVE_READY, state="attached")
        await page.evaluate("window.__sameDocument = true")
        # the operator opens the job form, sends a broken document and is told so
        await page.get_by_text("Queue another job", exact=True).click()
        form = page.locator('form[data-action="task"]').filter(has=page.locator("textarea"))
        await form.locator('select[name="name"]').select_option("getParameterValues")
        await form.locator("textarea").fill('{"parameterNames": ["Device.')
        await form.get_by_role("button", name="Queue").click()
        error = page.locator("#jobs .notice .msg-error")
        await expect(error).to_contain_text("The arguments: not valid JSON")
        # meanwhile a script queues a job on the same device: the jobs part is redrawn live
        script = Client(ui_acs, await token(db_pool, "operator", unique_serial))
        try:
            status, job = await script.call(
                "POST", f"/devices/{device}/tasks", json={"name": "reboot", "commandKey": "lk"}
            )
            assert status == 201, job
        finally:
            await script.close()
        await expect(page.locator(f'#jobs tr[data-job="{job["id"]}"]')).to_be_visible()
        assert await page.evaluate("window.__sameDocument") is True
        # what the operator had in hand is still there
        await expect(error).to_contain_text("The arguments: not valid JSON")
        await expect(page.locator("#jobs details")).to_have_attribute("open", "")
        await expect(form.locator("textarea")).to_have_value('{"parameterNames": ["Device.')
        await expect(form.locator('select[name="name"]')).to_have_value("getParameterValues")
    finally:
        await fleet.stop()
