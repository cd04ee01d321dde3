"""The health soak on the UI's campaign page and overview, in a real browser."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from acs.web.server import Running
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import wait_campaign
from tests.e2e.test_health_soak import halted, sim, soak_campaign
from tests.e2e.test_ui import browser, expect, person, ui_acs
from tests.e2e.test_ui_http import make_user

pytestmark = pytest.mark.db

__all__ = ["browser", "person", "ui_acs"]  # fixtures used by name


async def test_the_campaign_page_shows_the_soak_the_gate_and_the_report(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial: Any, tmp_path: Path
) -> None:
    fleet = await sim(ui_acs, unique_serial("UH"), 4, faults="reboot-after-upgrade:1")
    api = Client(ui_acs, await token(db_pool, "admin", unique_serial))
    try:
        cid = await soak_campaign(
            api, unique_serial, [fleet], {"reboots": 0, "missedInforms": None}, soak=60
        )
        body = await wait_campaign(api, cid, halted, within_s=90)
        unhealthy = body["health"]["stages"][0]["unhealthyDevices"]
        viewer = await person()
        await viewer.sign_in(await make_user(db_pool, unique_serial, "viewer"))
        page = viewer.page
        await expect(page.get_by_test_id("unhealthy-tile")).not_to_have_text(
            "0 unhealthy after an upgrade"
        )
        await viewer.goto(f"/ui/campaigns/{cid}")
        stage = page.get_by_test_id("health-stage-1")
        await expect(stage).to_contain_text(f"unhealthy {len(unhealthy)}")
        await expect(stage.locator("tbody tr").first).to_contain_text("reboots")
        await expect(page.get_by_test_id("health-gates")).to_contain_text("pause at stage 1")
        row = page.get_by_test_id("report").locator(f'tr[data-device="{unhealthy[0]}"]')
        await expect(row).to_contain_text("1.0.0 → 2.0.0")
        await expect(row).to_contain_text("unhealthy")
        await expect(row).to_contain_text("reboots")
        async with page.expect_download() as download:
            await page.get_by_test_id("report-csv").click()
        saved = tmp_path / "report.csv"
        await (await download.value).save_as(saved)
        rows = list(csv.DictReader(saved.open()))
        assert len(rows) == 4
        assert {r["device"] for r in rows if r["health"] == "unhealthy"} == set(unhealthy)
    finally:
        await api.close()
        await fleet.stop()
