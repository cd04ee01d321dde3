"""Accessibility basics on every page of the web UI, checked by axe-core in
Chromium: controls labelled, contrast AA, landmarks and names (WCAG 2.1 A
and AA rules). axe-core is vendored under tests/e2e/assets/axe-core (MPL-2.0).

The pages are enumerated from the UI's own router, so a page added later is
checked too, or this test names it as unvisited.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg

from acs.store import tasks
from acs.web.server import Running
from tests.e2e import test_ui
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import catalog_image, ok
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.e2e.test_ui_http import make_user

# the browser, the ACS and the signed-in people of the browser tests
browser = test_ui.browser
ui_acs = test_ui.ui_acs
person = test_ui.person
expect = test_ui.expect
pytestmark = test_ui.pytestmark

AXE_DIR = Path(__file__).parent / "assets" / "axe-core"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# routes that are not pages: files, fragments of a page, forms' targets
NOT_PAGES = ("/ui/static", ".csv", "/download", "/progress", "/ui/logout")

RUN_AXE = """async (tags) => {
  const r = await axe.run(document, { runOnly: { type: "tag", values: tags } });
  return r.violations.map((v) => ({
    rule: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 6).map(
      (n) => n.target.join(" ") + " :: " + n.failureSummary.replace(/\\s+/g, " ")),
  }));
}"""


def axe_source() -> str:
    raw = (AXE_DIR / "axe.min.js").read_bytes()
    # the file is what its README says it is, not a local edit
    assert hashlib.sha256(raw).hexdigest() == AXE_SHA256
    return raw.decode()


async def violations(page: Any, source: str) -> list[dict[str, Any]]:
    # evaluated, not added as a <script>: the UI's CSP allows only its own scripts
    await page.evaluate(source)
    return await page.evaluate(RUN_AXE, WCAG)


def ui_pages(running: Running) -> list[str]:
    out = []
    for route in running.api_app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        # "/ui" only sends the browser on to "/ui/"
        if route.method != "GET" or not canonical.startswith("/ui/"):
            continue
        if any(part in canonical for part in NOT_PAGES):
            continue
        out.append(canonical)
    return sorted(set(out))


async def test_every_page_passes_axe(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    source = axe_source()
    admin_api = Client(ui_acs, await token(db_pool, "admin", unique_serial))
    fleet = await fleet_of(ui_acs, unique_serial("AX"), 2)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        serial = sorted(fleet.devices)[0]
        dev = dev_id(fleet, serial)
        # a faulted job, so the faults and jobs pages have rows and groups
        async with db_pool.acquire() as conn:
            await tasks.enqueue(
                conn, dev, "setParameterValues", {"parameterValues": [["Device.NoSuch.X", "1"]]}
            )
        await fleet.trigger(serial)
        image = await catalog_image(admin_api, unique_serial, "2.0.0")
        campaign = await ok(
            admin_api,
            "POST",
            "/campaigns",
            201,
            json={
                "name": unique_serial("axe-"),
                "image": image["id"],
                "filter": f'DeviceID.ID = "{dev}"',
                "stages": [{"size": "100%"}],
            },
        )
        bulk = await ok(
            admin_api,
            "POST",
            "/bulk-jobs",
            201,
            json={
                "name": unique_serial("axe-"),
                "filter": f'DeviceID.ID = "{dev}"',
                "task": {"name": "reboot"},
            },
        )
        policy = await ok(
            admin_api,
            "POST",
            "/policies",
            201,
            json={
                "name": unique_serial("axe-"),
                "precondition": f'DeviceID.ID = "{dev}"',
                "parameters": [{"path": "WiFi.SSID.1.SSID", "value": "axe"}],
            },
        )
        hook = await ok(
            admin_api,
            "POST",
            "/webhooks",
            201,
            json={"url": "http://127.0.0.1:9/hook", "events": ["job.finished"]},
        )
        await asyncio.sleep(1)  # the faulted job's session
        sessions = await ok(admin_api, "GET", f"/devices/{quote(dev, safe='')}/sessions")
        values = {
            "device_id": quote(dev, safe=""),
            "session_id": str(sessions["items"][0]["id"]),
            "bulk_id": str(bulk["id"]),
            "campaign_id": str(campaign["id"]),
            "policy_id": str(policy["id"]),
            "webhook_id": str(hook["id"]),
        }
        admin = await person()
        page = admin.page
        found: dict[str, list[dict[str, Any]]] = {}
        # signed out first: the sign-in page
        await admin.goto("/ui/login")
        found["/ui/login"] = await violations(page, source)
        await admin.sign_in(await make_user(db_pool, unique_serial, "admin"))
        pages = ui_pages(ui_acs)
        assert "/ui/policies/{policy_id}" in pages and "/ui/jobs" in pages
        for template in pages:
            if template == "/ui/login":
                continue
            path = template.format(**values)
            resp = await admin.goto(path)
            assert resp is not None and resp.status == 200, (path, resp and resp.status)
            await expect(page.get_by_role("heading", level=1)).to_be_visible()
            found[template] = await violations(page, source)
        # the dialogs and folded parts a person opens are checked open too
        await admin.goto(f"/ui/devices/{values['device_id']}")
        for summary in await page.locator("details > summary").all():
            if await summary.is_visible():
                await summary.click()
        found["device page, every part open"] = await violations(page, source)
        bad = {where: v for where, v in found.items() if v}
        assert not bad, "\n".join(
            f"{where}: {v['rule']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"])
            for where, vs in bad.items()
            for v in vs
        )
        assert len(found) >= 20  # every page was reached and checked
    finally:
        await fleet.stop()
        await admin_api.close()
