"""Screenshots of the web UI's main pages for the README: `make screenshots`.

Runs only when ACS_SCREENSHOTS names the folder to write (the Makefile sets
docs/screenshots); a normal test run skips it. A small lab is set up first —
two products, a catalog image, a campaign, a faulted job, a policy — so the
pictures show the pages doing their work.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest

from acs.store import tasks
from acs.web.server import Running
from tests.e2e import test_ui
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import catalog_image, ok, wait_campaign
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.e2e.test_ui import CHROMIUM, playwright_api
from tests.e2e.test_ui_http import make_user

OUT = os.environ.get("ACS_SCREENSHOTS")
# the browser and the ACS of the browser tests
browser = test_ui.browser
ui_acs = test_ui.ui_acs

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(not OUT, reason="set ACS_SCREENSHOTS=<folder> (make screenshots)"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium"),
]

expect = playwright_api.expect


async def test_screenshots_of_the_main_pages(
    browser: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    assert OUT is not None
    out = Path(OUT)
    out.mkdir(parents=True, exist_ok=True)
    admin_api = Client(ui_acs, await token(db_pool, "admin", unique_serial))
    fleets = [
        await fleet_of(ui_acs, "GW", 9, periodic_interval=2),
        await fleet_of(ui_acs, "GX", 4, product_class="HGW-AX", software_version="3.1.2"),
        await fleet_of(ui_acs, "GO", 3, software_version="0.9.8"),
    ]
    try:
        everyone = [c for f in fleets for c in f.devices.values()]
        await fleets[0].wait_for(lambda: all(c.sessions_ok for c in everyone), 60)
        image = await catalog_image(admin_api, unique_serial, "2.0.0", releaseNotes="Wi-Fi fixes")
        await ok(
            admin_api,
            "PUT",
            "/files/hgw-config-v7.cfg",
            201,
            data=b"config",
            params={"fileType": "3 Vendor Configuration File", "version": "7"},
        )
        campaign = await ok(
            admin_api,
            "POST",
            "/campaigns",
            201,
            json={
                "name": "hgw-2.0.0-rollout",
                "image": image["id"],
                "filter": 'DeviceID.SerialNumber LIKE "GW%"',
                "stages": [
                    {"size": "30%", "successThreshold": "90%"},
                    {"size": "100%", "successThreshold": "90%"},
                ],
                "connectionRequest": True,
            },
        )
        await ok(admin_api, "POST", f"/campaigns/{campaign['id']}/start")
        await wait_campaign(admin_api, campaign["id"], lambda b: b["status"] == "completed", 90)
        policy = await ok(
            admin_api,
            "POST",
            "/policies",
            201,
            json={
                "name": "wifi-defaults",
                "priority": 10,
                "precondition": 'DeviceID.ProductClass = "HGW-AX"',
                "events": ["0 BOOTSTRAP", "1 BOOT"],
                "parameters": [
                    {"path": "WiFi.SSID.1.SSID", "value": "home-{DeviceID.SerialNumber[-4:]}"},
                    {
                        "path": "ManagementServer.PeriodicInformInterval",
                        "value": "3600",
                        "type": "xsd:unsignedInt",
                    },
                ],
                "objects": [{"path": "WiFi.SSID.", "keys": {"SSID": "guest"}}],
                "attributes": [{"path": "DeviceInfo.SoftwareVersion", "notification": 2}],
                "tags": {"add": ["managed"]},
            },
        )
        for serial in sorted(fleets[1].devices)[:3]:
            tagged = f"/devices/{quote(dev_id(fleets[1], serial), safe='')}/tags"
            await ok(admin_api, "POST", tagged, json={"tags": ["lab", "wifi7-pilot"]})
        # one job the CPE refuses, so the overview has an open fault to show
        gw = fleets[0]
        serial = sorted(gw.devices)[0]
        async with db_pool.acquire() as conn:
            await tasks.enqueue(
                conn,
                dev_id(gw, serial),
                "setParameterValues",
                {"parameterValues": [["Device.NoSuch.Parameter", "1"]]},
            )
        await gw.trigger(serial)
        await asyncio.sleep(1)
        # a bulk job over the 0.9.8 fleet and a webhook, so their pages have rows
        bulk = await ok(
            admin_api,
            "POST",
            "/bulk-jobs",
            201,
            json={
                "name": "reboot the 0.9.8 units",
                "task": {"name": "reboot"},
                "filter": 'DeviceID.SerialNumber LIKE "GO%"',
                "ratePerMinute": 60,
            },
        )
        hook = await ok(
            admin_api,
            "POST",
            "/webhooks",
            201,
            json={
                "url": "http://127.0.0.1:9/hooks/acs",
                "events": ["job.finished", "campaign.state_changed"],
                "secret": "a webhook signing secret",
            },
        )
        gw_id = quote(dev_id(gw, serial), safe="")
        logs = await ok(admin_api, "GET", f"/devices/{gw_id}/sessions")
        session_id = logs["items"][0]["id"]

        name = await make_user(db_pool, unique_serial, "admin")
        context = await browser.new_context(viewport={"width": 1360, "height": 900})
        page = await context.new_page()
        base = f"http://127.0.0.1:{ui_acs.ports['api']}"
        await page.goto(base + "/ui/login")
        await page.screenshot(path=out / "login.png")
        await page.get_by_label("Username", exact=True).fill(name)
        await page.get_by_label("Password", exact=True).fill("a long enough secret")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        shots = [("overview", "/ui/")]
        shots.append(
            (
                "devices",
                "/ui/devices?col=serialNumber&col=productClass&col=softwareVersion"
                "&col=lastInform&col=tags&params=Device.WiFi.SSID.1.SSID",
            )
        )
        device = f"/ui/devices/{dev_id(gw, serial)}"
        shots += [
            ("device", device),
            ("device-parameters", device + "?prefix=Device.WiFi.SSID.1.#parameters"),
            ("campaign", f"/ui/campaigns/{campaign['id']}"),
            ("campaigns", "/ui/campaigns"),
            ("files", "/ui/files"),
            ("policies", "/ui/policies"),
            ("policy", f"/ui/policies/{policy['id']}"),
            ("admin", "/ui/admin"),
            ("jobs", "/ui/jobs"),
            ("faults", "/ui/faults"),
            ("bulk-jobs", "/ui/bulk-jobs"),
            ("bulk-job", f"/ui/bulk-jobs/{bulk['id']}"),
            ("sessions", device + "/sessions"),
            ("session-log", f"{device}/sessions/{session_id}"),
            ("audit", "/ui/audit"),
            ("webhooks", "/ui/webhooks"),
        ]
        for shot, path in shots:
            await page.goto(base + path)
            if shot == "files":
                await page.get_by_text("Add an image to the catalog", exact=True).click()
            if shot == "device-parameters":
                await page.locator('tr[data-path="Device.WiFi.SSID.1.SSID"] summary').click()
            await page.screenshot(path=out / f"{shot}.png", full_page=shot != "admin")
        await context.close()
        written = sorted(p.name for p in out.glob("*.png"))
        assert {f"{s}.png" for s, _ in shots} | {"login.png"} <= set(written)
        assert all((out / w).stat().st_size > 10_000 for w in written)
        await ok(admin_api, "DELETE", f"/webhooks/{hook['id']}", 204)
    finally:
        for f in fleets:
            await f.stop()
        await admin_api.close()
