"""The device page's Diagnostics card in a real browser (fixtures of test_ui): a
test queued from the form, run by the simulated CPE, its numbers and hop table shown."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import pytest

from acs.web.server import Running
from tests.e2e.test_api import Client, token
from tests.e2e.test_diagnostics import closed, run
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.e2e.test_ui import browser, expect, person, ui_acs  # noqa: F401 - fixtures
from tests.e2e.test_ui_http import make_user

pytestmark = pytest.mark.db


async def test_a_ping_from_the_device_page_and_a_traceroute_shown_with_its_hops(
    person: Any,  # noqa: F811
    ui_acs: Running,  # noqa: F811
    db_pool: asyncpg.Pool,
    unique_serial,
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("UD"), 1)
    api = Client(ui_acs, await token(db_pool, "operator", unique_serial))
    try:
        serial = next(iter(fleet.devices))
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1)
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await op.goto(f"/ui/devices/{dev_id(fleet, serial)}")
        card = page.locator("#diagnostics")
        await expect(card).to_contain_text("No diagnostics yet.")

        # queue a ping from the form; the knock brings the device, which runs the test
        form = page.get_by_test_id("diagnostics-form")
        args = form.locator('input[name="args"]')
        await args.fill('{"test": "ping", "host": "127.0.0.1", "count": 3}')
        await form.get_by_label("now (connection request)").check()
        await form.get_by_role("button", name="Run test").click()
        # the form's answer reloads the page with the job's outcome: seen, no later
        # navigation of the test can race that reload (it would interrupt it)
        outcome = page.locator(".msg").filter(has_text=re.compile(r"Job \d+ \(diagnostics\)"))
        await expect(outcome).to_be_visible(timeout=30_000)
        # the click returns before the form's POST is answered: wait for the job, bounded
        queued: list[dict[str, Any]] = []
        for _ in range(100):
            _, jobs = await api.call("GET", f"/devices/{dev_id(fleet, serial)}/tasks")
            queued = [j for j in jobs["items"] if j["name"] == "diagnostics"]
            if queued:
                break
            await asyncio.sleep(0.1)
        [job] = queued
        assert (await closed(api, job["id"]))["status"] == "done"
        traced = await run(api, fleet, serial, test="traceroute", host="127.0.0.1", count=2)
        assert traced["status"] == "done"

        await op.goto(f"/ui/devices/{dev_id(fleet, serial)}")
        ping = card.locator(f'[data-job="{job["id"]}"]')
        await expect(ping).to_have_attribute("data-status", "done")
        await expect(ping.get_by_test_id("success")).to_have_text("3")
        await expect(ping.get_by_test_id("failure")).to_have_text("0")
        await expect(ping.get_by_test_id("ping-numbers")).to_contain_text("µs")
        hops = card.locator(f'[data-job="{traced["id"]}"]').get_by_test_id("hops")
        await expect(hops.locator("tbody tr")).to_have_count(1)
        await expect(hops.locator("tbody tr").first).to_contain_text("127.0.0.1")
    finally:
        await fleet.stop()
        await api.close()
