"""The web UI in a real browser: Debian's Chromium driven by Playwright, against
the real ACS and simulated CPEs.

Skipped, with the reason, where /usr/bin/chromium or the playwright package is
missing (a fresh machine running `make test`); .ci/run installs both.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
import pytest_asyncio

from acs.web.server import Running
from cpe_simulator.firmware import make_image
from cpe_simulator.software import make_package
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import ok
from tests.e2e.test_nat_loopback import natted_device
from tests.e2e.test_simulator_fleet import dev_id, fleet_of, queue_and_run
from tests.e2e.test_ui_http import PASSWORD, make_user

CHROMIUM = Path("/usr/bin/chromium")
playwright_api = pytest.importorskip(
    "playwright.async_api",
    reason="the playwright package is not installed (pip install playwright)",
)
expect = playwright_api.expect

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: `apt-get install -y chromium` runs the browser tests",
    ),
]

# the simulated fleet answers within a second or two; a UI step that takes
# longer than this is a failure worth seeing
STEP_MS = 30_000


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def ui_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        connection_request_username="cr",
        connection_request_password="cr-secret",
        session_timeout_s=5.0,
        campaign_tick_s=0.3,
        history_flush_s=0.3,
    )


class Person:
    """A browser context signed in as one user, failing the test on any script error."""

    def __init__(self, context: Any, base: str) -> None:
        self.context = context
        self.base = base
        self.page: Any = None
        self.errors: list[str] = []

    async def open(self) -> Any:
        self.page = await self.context.new_page()
        self.page.set_default_timeout(STEP_MS)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        return self.page

    async def sign_in(self, username: str, password: str = PASSWORD) -> None:
        page = self.page
        await page.goto(self.base + "/ui/")
        await expect(page).to_have_url(re.compile(r"/ui/login"))
        await page.get_by_label("Username", exact=True).fill(username)
        await page.get_by_label("Password", exact=True).fill(password)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Overview")).to_be_visible()

    async def goto(self, path: str) -> Any:
        return await self.page.goto(self.base + path)


@pytest_asyncio.fixture(loop_scope="session")
async def person(browser: Any, ui_acs: Running) -> AsyncIterator[Any]:
    made: list[Person] = []

    async def make() -> Person:
        p = Person(await browser.new_context(), f"http://127.0.0.1:{ui_acs.ports['api']}")
        await p.open()
        made.append(p)
        return p

    yield make
    for p in made:
        await p.context.close()
    assert not [e for p in made for e in p.errors], "the page's script failed"


async def test_sign_in_and_every_page_renders(
    person: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    admin = await person()
    name = await make_user(db_pool, unique_serial, "admin")
    page = admin.page
    await admin.goto("/ui/")
    await page.get_by_label("Username", exact=True).fill(name)
    await page.get_by_label("Password", exact=True).fill("wrong password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    await admin.sign_in(name)
    for link, heading in (
        ("Devices", "Devices"),
        ("Jobs", "Jobs"),
        ("Bulk jobs", "Bulk jobs"),
        ("Faults", "Open faults"),
        ("Files & firmware", "Files & firmware catalog"),
        ("Campaigns", "Firmware campaigns"),
        ("Policies", "Provisioning policies"),
        ("Audit", "Audit log"),
        ("Webhooks", "Webhooks"),
        ("Admin", "Admin"),
        ("Overview", "Overview"),
    ):
        await nav(page, link).click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/ui/login"))


async def test_an_operator_finds_a_device_and_changes_a_parameter(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("U"), 2)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        serial = sorted(fleet.devices)[0]
        cpe = fleet.devices[serial]
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await nav(page, "Devices").click()
        await page.get_by_test_id("filter").fill(f'DeviceID.SerialNumber = "{serial}"')
        await page.get_by_test_id("filter").press("Enter")
        await expect(page.get_by_role("heading", level=1)).to_contain_text("(1 matching)")
        await page.get_by_role("link", name=serial).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(dev_id(fleet, serial))

        # browse down the tree to the SSID, as an operator would
        for step in ("Device.", "WiFi.", "SSID.", "1."):
            await page.locator("ul.objects").get_by_role("link", name=step, exact=True).click()
        row = page.locator('tr[data-path="Device.WiFi.SSID.1.SSID"]')
        await expect(row.locator("td.value")).to_have_text(
            cpe.tree.value("Device.WiFi.SSID.1.SSID")
        )
        await row.get_by_text("Edit").click()
        await row.get_by_label("New value of Device.WiFi.SSID.1.SSID", exact=True).fill(
            "set-from-the-ui"
        )
        await row.get_by_role("button", name="Set").click()

        # the job ran in a session the connection request opened; the page reloads with it
        await expect(page.locator("#notice .msg-ok")).to_contain_text("is done")
        await expect(row.locator("td.value")).to_have_text("set-from-the-ui")
        job = page.get_by_test_id("jobs").locator("tbody tr").first
        await expect(job).to_have_attribute("data-status", "done")
        await expect(job).to_contain_text("setParameterValues")
        assert cpe.tree.value("Device.WiFi.SSID.1.SSID") == "set-from-the-ui"

        # search the subtree for the value just set
        await page.get_by_test_id("param-search").fill("set-from-the")
        await page.get_by_test_id("param-search").press("Enter")
        await expect(page.get_by_test_id("params").locator("tbody tr")).to_have_count(1)
    finally:
        await fleet.stop()


async def test_bulk_tagging_and_export_from_the_device_list(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial, tmp_path: Path
) -> None:
    # "HGW-AX": the id escapes the dash (ACDE48-HGW%2DAX-...), which every link must keep
    fleet = await fleet_of(ui_acs, unique_serial("K"), 3, product_class="HGW-AX")
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        prefix = fleet.config.serial_prefix
        await op.goto(f"/ui/devices?filter=DeviceID.SerialNumber%20LIKE%20%22{prefix}%25%22")
        await expect(page.get_by_role("heading", level=1)).to_contain_text("(3 matching)")
        boxes = page.locator('input[name="sel"]')
        await boxes.nth(0).check()
        await boxes.nth(2).check()
        await page.get_by_text("Bulk action…").click()
        form = page.get_by_test_id("bulk-form")
        await form.locator('select[name="action"]').select_option("tag-add")
        await form.locator('input[name="tag"]').fill("ui-bulk")
        page.once("dialog", lambda d: d.accept())
        await form.get_by_role("button", name="Queue").click()
        await expect(form.locator(".out")).to_contain_text("2 of 2 device(s) done")
        await op.goto("/ui/devices?filter=tag%20%3D%20%22ui-bulk%22")
        await expect(page.get_by_role("heading", level=1)).to_contain_text("(2 matching)")

        async with page.expect_download() as download:
            await page.get_by_role("link", name="Export CSV").click()
        saved = tmp_path / "devices.csv"
        await (await download.value).save_as(saved)
        lines = saved.read_text().splitlines()
        assert lines[0].startswith("Serial number,Product") and len(lines) == 3
        assert all("ui-bulk" in line for line in lines[1:])
        first = sorted(fleet.devices)[0]
        await page.get_by_role("link", name=first).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(dev_id(fleet, first))
        await expect(page.locator("p.tags")).to_contain_text("ui-bulk")
    finally:
        await fleet.stop()


async def test_a_bulk_job_is_created_from_a_filter_and_finishes(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("B"), 3, periodic_interval=1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await nav(page, "Bulk jobs").click()
        form = page.get_by_test_id("bulk-job-form")
        name = unique_serial("ui-bulk-")
        await form.get_by_label("Name", exact=True).fill(name)
        prefix = fleet.config.serial_prefix
        # the match count follows the filter as it is typed
        await form.get_by_test_id("bulk-job-filter").fill(f'DeviceID.SerialNumber LIKE "{prefix}%')
        await expect(page.get_by_test_id("bulk-match")).to_contain_text("unterminated string")
        await form.get_by_test_id("bulk-job-filter").fill(f'DeviceID.SerialNumber LIKE "{prefix}%"')
        await expect(page.get_by_test_id("bulk-match")).to_contain_text("3 device(s) match")
        await form.locator('select[name="action"]').select_option("set")
        await form.get_by_role("textbox", name="Parameter").fill(
            "Device.ManagementServer.PeriodicInformInterval"
        )
        await form.get_by_role("textbox", name="Value").fill("77")
        await form.get_by_label("Devices a minute").fill("600")
        await form.get_by_role("button", name="Preview (dry run)").click()
        await expect(page.get_by_test_id("bulk-job-out")).to_contain_text("would reach 3 device(s)")
        await form.get_by_role("button", name="Create and start").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(f"Bulk job {name}")
        # the page follows the job: every device's job ran at its next periodic Inform
        status = page.get_by_test_id("bulk-status")
        await expect(status).to_have_attribute("data-status", "completed", timeout=90_000)
        await expect(page.get_by_test_id("bulk-counts")).to_contain_text("done 3")
        await expect(page.get_by_test_id("bulk-devices").locator("tbody tr")).to_have_count(3)
        assert all(c.tree.periodic_inform_interval == 77 for c in fleet.devices.values())
        # and it is listed with its numbers
        await nav(page, "Bulk jobs").click()
        row = page.get_by_test_id("bulk-jobs").locator("tbody tr", has_text=name)
        await expect(row).to_contain_text("3 of 3 queued")
    finally:
        await fleet.stop()


async def test_a_bulk_job_scheduled_for_later_waits_for_its_start(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("S"), 1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        serial = next(iter(fleet.devices))
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await nav(page, "Bulk jobs").click()
        form = page.get_by_test_id("bulk-job-form")
        name = unique_serial("ui-later-")
        await form.get_by_label("Name", exact=True).fill(name)
        await form.get_by_test_id("bulk-job-filter").fill(f'DeviceID.SerialNumber = "{serial}"')
        # an hour from now, in the browser's own time
        later = await page.evaluate(
            "() => { const d = new Date(Date.now() + 3600e3);"
            " d.setMinutes(d.getMinutes() - d.getTimezoneOffset());"
            " return d.toISOString().slice(0, 16); }"
        )
        await form.get_by_label(re.compile("Start at")).fill(later)
        await form.get_by_label(re.compile("Window")).fill("0 2 * * *")
        await form.get_by_role("button", name="Create and start").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(f"Bulk job {name}")
        status = page.get_by_test_id("bulk-status")
        await expect(status).to_have_attribute("data-status", "running")
        await expect(page.get_by_test_id("bulk-counts")).to_contain_text("0 of 1 queued")
        await expect(page.locator("dl.kv")).to_contain_text("0 2 * * *")
        page.once("dialog", lambda d: d.accept())
        await page.get_by_role("button", name="Cancel…").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("Bulk job cancelled")
        # a window that can never open is refused with its reason, nothing created
        await nav(page, "Bulk jobs").click()
        form = page.get_by_test_id("bulk-job-form")
        await form.get_by_label("Name", exact=True).fill(name + "-bad")
        await form.get_by_test_id("bulk-job-filter").fill(f'DeviceID.SerialNumber = "{serial}"')
        await form.get_by_label(re.compile("Window")).fill("0 2 31 2 *")  # 31 February
        await form.get_by_role("button", name="Create and start").click()
        await expect(page.locator(".msg-error").first).to_be_visible()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Bulk jobs")
    finally:
        await fleet.stop()


async def test_the_device_lists_all_matching_action_is_one_bulk_job(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("M"), 2, periodic_interval=1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        prefix = fleet.config.serial_prefix
        await op.goto(f"/ui/devices?filter=DeviceID.SerialNumber%20LIKE%20%22{prefix}%25%22")
        await page.get_by_text("Bulk action…").click()
        form = page.get_by_test_id("bulk-form")
        await form.get_by_label(re.compile("all 2 matching")).check()
        await form.locator('select[name="action"]').select_option("reboot")
        page.once("dialog", lambda d: d.accept())
        await form.get_by_role("button", name="Queue").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Bulk job Reboot")
        await expect(page.get_by_test_id("bulk-status")).to_have_attribute(
            "data-status", "completed", timeout=90_000
        )
        await expect(page.get_by_test_id("bulk-counts")).to_contain_text("done 2")
    finally:
        await fleet.stop()


async def test_a_small_campaign_is_built_started_and_finishes_in_the_ui(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("F"), 3, periodic_interval=1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        admin = await person()
        await admin.sign_in(await make_user(db_pool, unique_serial, "admin"))
        page = admin.page

        # the image: uploaded and put in the catalog from the Files page
        file_name = f"fw-{unique_serial()}.bin"
        await nav(page, "Files & firmware").click()
        await page.get_by_text("Upload a file", exact=True).click()
        upload = page.get_by_test_id("upload-form")
        await upload.get_by_label("File", exact=True).set_input_files(
            {
                "name": file_name,
                "mimeType": "application/octet-stream",
                "buffer": make_image("2.0.0", 20_000),
            }
        )
        await upload.get_by_label("Version", exact=True).fill("2.0.0")
        await upload.get_by_role("button", name="Upload").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text(f"Uploaded {file_name}")
        await page.get_by_text("Add an image to the catalog", exact=True).click()
        image_form = page.get_by_test_id("image-form")
        await image_form.locator('select[name="file"]').select_option(file_name)
        await image_form.get_by_label("OUI", exact=True).fill("ACDE48")
        await image_form.get_by_label("Product class", exact=True).fill("HGW")
        await image_form.get_by_label("Hardware versions it fits", exact=True).fill("HW1.0")
        await image_form.get_by_label("Version it installs", exact=True).fill("2.0.0")
        await image_form.get_by_role("button", name="Add to catalog").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("is in the catalog")
        image_id = re.search(r"Image #(\d+)", await page.locator("#notice").inner_text())
        assert image_id is not None

        # the campaign: previewed, created, started
        await nav(page, "Campaigns").click()
        form = page.get_by_test_id("campaign-form")
        name = unique_serial("ui-camp-")
        await form.get_by_label("Name", exact=True).fill(name)
        await form.locator('select[name="image"]').select_option(image_id.group(1))
        await form.get_by_label("Devices (filter)", exact=True).fill(
            f'DeviceID.SerialNumber LIKE "{fleet.config.serial_prefix}%"'
        )
        await form.get_by_label("Stage sizes", exact=True).fill("50%, 100%")
        await form.get_by_role("button", name="Preview (dry run)").click()
        preview = page.get_by_test_id("preview")
        await expect(preview).to_contain_text("Dry run: 3 devices would take part")
        await expect(preview.locator("tbody tr")).to_have_count(2)
        await expect(preview).not_to_contain_text("null")  # nothing beyond the last stage
        await form.get_by_role("button", name="Create draft").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(f"Campaign {name}")
        # the target as operators name it, not a catalog row number
        target = page.get_by_test_id("campaign-target")
        await expect(target).to_contain_text("ACDE48 HGW 2.0.0")
        await expect(target).to_contain_text(file_name)
        await page.get_by_role("button", name="Start").click()
        status = page.get_by_test_id("campaign-status")
        await expect(status).to_have_attribute("data-status", "completed", timeout=90_000)
        await expect(page.get_by_test_id("totals")).to_have_text("succeeded 3")
        await expect(page.get_by_test_id("failed")).to_have_count(0)
        assert all(c.tree.software_version == "2.0.0" for c in fleet.devices.values())
    finally:
        await fleet.stop()


async def test_a_stage_gate_offers_approve_only_and_the_last_stage_no_approve(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    from tests.e2e.test_campaigns import catalog_image

    fleet = await fleet_of(ui_acs, unique_serial("Q"), 2, periodic_interval=1)
    admin_api = Client(ui_acs, await token(db_pool, "admin", unique_serial))
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        image = await catalog_image(admin_api, unique_serial, "2.0.0")
        campaign = await ok(
            admin_api,
            "POST",
            "/campaigns",
            201,
            json={
                "name": unique_serial("gate-"),
                "image": image["id"],
                "filter": f'DeviceID.SerialNumber LIKE "{fleet.config.serial_prefix}%"',
                "stages": [{"size": "50%", "onSuccess": "pause"}, {"size": "100%"}],
                "connectionRequest": True,
            },
        )
        cid = campaign["id"]
        await ok(admin_api, "POST", f"/campaigns/{cid}/start")
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await op.goto(f"/ui/campaigns/{cid}")
        # the gate: stage 1 reached its threshold and waits for approval
        for _ in range(120):
            await page.reload()
            if await page.get_by_role("button", name="Approve stage 2").count():
                break
            await page.wait_for_timeout(500)
        await expect(page.get_by_role("button", name="Approve stage 2")).to_be_visible()
        await expect(page.get_by_role("button", name="Resume")).to_have_count(0)
        await page.get_by_role("button", name="Approve stage 2").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("Next stage started")
        # on the last stage there is nothing to approve
        await expect(page.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
        await expect(page.get_by_role("button", name="Pause")).to_be_visible()
    finally:
        await admin_api.close()
        await fleet.stop()


async def test_the_knock_button_brings_a_waiting_campaign_in(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    """A campaign that does not knock, devices that would come in an hour: the
    campaign page's button knocks them, says how it went, and they update."""
    fleet = await fleet_of(ui_acs, unique_serial("KU"), 2, periodic_interval=3600)
    api = Client(ui_acs, await token(db_pool, "admin", unique_serial))
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        name = f"fw-{unique_serial()}.bin"
        await ok(api, "PUT", f"/files/{name}", 201, data=make_image("2.0.0", 20_000))
        image = await ok(
            api,
            "POST",
            "/firmware/images",
            201,
            json={
                "file": name,
                "oui": "ACDE48",
                "productClass": "HGW",
                "hardwareVersions": ["HW1.0"],
                "version": "2.0.0",
            },
        )
        campaign = await ok(
            api,
            "POST",
            "/campaigns",
            201,
            json={
                "name": unique_serial("ui-knock-"),
                "image": image["id"],
                "filter": f'DeviceID.SerialNumber LIKE "{fleet.config.serial_prefix}%"',
                "stages": [{"size": "100%"}],
                "connectionRequest": False,
            },
        )
        await ok(api, "POST", f"/campaigns/{campaign['id']}/start")
        operator = await person()
        await operator.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = operator.page
        await operator.goto(f"/ui/campaigns/{campaign['id']}")
        await expect(page.get_by_test_id("totals")).to_have_text("pending 2")
        await page.get_by_role("button", name="Knock waiting devices").click()
        await expect(page.locator(".msg-ok")).to_have_text(
            "Knocked 2 of 2 waiting devices (http: 2 accepted); 2 open a session now."
        )
        status = page.get_by_test_id("campaign-status")
        await expect(status).to_have_attribute("data-status", "completed", timeout=30_000)
        assert all(c.tree.software_version == "2.0.0" for c in fleet.devices.values())
    finally:
        await api.close()
        await fleet.stop()


async def test_a_viewer_sees_but_cannot_change(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("V"), 1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        serial = next(iter(fleet.devices))
        viewer = await person()
        await viewer.sign_in(await make_user(db_pool, unique_serial, "viewer"))
        page = viewer.page
        await expect(
            page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin")
        ).to_have_count(0)
        await viewer.goto(f"/ui/devices/{dev_id(fleet, serial)}?prefix=Device.WiFi.SSID.1.")
        await expect(page.get_by_test_id("params")).to_be_visible()
        # no control that would change anything is offered
        await expect(page.get_by_text("Edit", exact=True)).to_have_count(0)
        await expect(page.get_by_title("writable")).to_have_count(0)  # no edit affordance
        await expect(page.get_by_role("button", name="Reboot now")).to_have_count(0)
        await expect(page.get_by_test_id("refresh-subtree")).to_have_count(0)
        await viewer.goto("/ui/devices")
        await expect(page.get_by_text("Bulk action…")).to_have_count(0)
        response = await viewer.goto("/ui/admin")
        assert response.status == 403
        await expect(page.get_by_role("alert")).to_contain_text("needs the admin role")

        # and the API refuses what the page does not offer, with the reason
        refused = await page.evaluate(
            """async (path) => {
                const csrf = document.querySelector('meta[name="csrf-token"]').content;
                const r = await fetch(path, {method: "POST", headers: {"X-CSRF-Token": csrf,
                    "Content-Type": "application/json"}, body: JSON.stringify({name: "reboot"})});
                return [r.status, await r.json()];
            }""",
            f"/api/v1/devices/{dev_id(fleet, serial)}/tasks",
        )
        assert refused[0] == 403
        assert refused[1]["error"]["message"] == (
            "role 'viewer' may not do this; it needs 'operator' or above"
        )
    finally:
        await fleet.stop()


async def test_on_a_phone_every_page_and_sign_out_stay_reachable(
    browser: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone = Person(context, f"http://127.0.0.1:{ui_acs.ports['api']}")
        page = await phone.open()
        await phone.sign_in(await make_user(db_pool, unique_serial, "admin"))
        links = page.get_by_role("navigation", name="Main").get_by_role("link")
        names = await links.all_inner_texts()
        assert {"Devices", "Jobs", "Faults", "Campaigns", "Policies", "Admin"} <= set(names)
        for name in ("Campaigns", "Policies", "Admin"):
            link = nav(page, name)
            await link.scroll_into_view_if_needed()
            box = await link.bounding_box()
            # inside the screen once scrolled to, so a tap reaches it
            assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= 390, (name, box)
            await link.click()
            await expect(page.get_by_role("heading", level=1)).to_be_visible()
        sign_out = page.get_by_role("button", name="Sign out")
        box = await sign_out.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390, box
        # the page itself does not scroll sideways: wide tables scroll in their card
        await phone.goto("/ui/jobs")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        await sign_out.click()
        await expect(page).to_have_url(re.compile(r"/ui/login"))
        assert not phone.errors
    finally:
        await context.close()


async def test_a_session_log_is_read_in_the_viewer_with_secrets_masked(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("L"), 1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        serial = next(iter(fleet.devices))
        secret = "wpa-" + unique_serial().lower()
        job = await queue_and_run(
            db_pool,
            fleet,
            serial,
            "setParameterValues",
            {"parameterValues": [["Device.WiFi.AccessPoint.1.Security.KeyPassphrase", secret]]},
        )
        assert job.status == "done"
        viewer = await person()
        await viewer.sign_in(await make_user(db_pool, unique_serial, "viewer"))
        page = viewer.page
        await viewer.goto(f"/ui/devices/{dev_id(fleet, serial)}")
        await page.get_by_role("link", name="Session logs").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Sessions")
        # the newest session is the one that set the passphrase
        await page.get_by_test_id("sessions").get_by_role("link", name="Open").first.click()
        timeline = page.get_by_test_id("timeline")
        await expect(timeline).to_contain_text("Inform")
        await expect(timeline).to_contain_text("SetParameterValues")
        messages = page.get_by_test_id("message")
        for i in range(await messages.count()):
            await messages.nth(i).locator("summary").click()
        body = await page.locator("main").inner_text()
        assert "KeyPassphrase" in body and "********" in body
        assert secret not in body
        # one element per line: the XML is shown indented
        assert "\n  <soap" in body or "\n  <SOAP" in body or "\n  <soapenv" in body, body[:2000]
        async with page.expect_download() as got:
            await page.get_by_role("link", name="Download as a file").click()
        path = await (await got.value).path()
        text = Path(path).read_text()
        assert "=== ACS -> CPE" in text and "SetParameterValues" in text
        assert secret not in text
    finally:
        await fleet.stop()


async def test_webhooks_and_the_audit_log_have_their_pages(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    admin = await person()
    await admin.sign_in(await make_user(db_pool, unique_serial, "admin"))
    page = admin.page
    url = f"http://127.0.0.1:9/{unique_serial('hook-').lower()}"  # nobody listens on port 9
    try:
        await nav(page, "Webhooks").click()
        form = page.get_by_test_id("webhook-form")
        await form.get_by_label("URL").fill(url)
        await form.get_by_label("device.registered").check()
        await form.get_by_role("button", name="Add webhook").click()
        await expect(page.locator(".out .msg-ok")).to_contain_text("signing secret, shown once")
        async with db_pool.acquire() as conn:
            hook_id = await conn.fetchval("SELECT id FROM webhooks WHERE url = $1", url)
        # an event for it: a new device; its delivery fails, and is given up on here
        fleet = await fleet_of(ui_acs, unique_serial("W"), 1)
        try:
            await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        finally:
            await fleet.stop()
        async with db_pool.acquire() as conn:
            for _ in range(100):
                if await conn.fetchval(
                    "SELECT count(*) FROM webhook_outbox WHERE webhook_id = $1", hook_id
                ):
                    break
                await asyncio.sleep(0.1)
            await conn.execute(
                "UPDATE webhook_outbox SET state = 'abandoned', attempts = 9, finished_at = now(),"
                " last_error = 'connection refused' WHERE webhook_id = $1",
                hook_id,
            )
        await admin.goto("/ui/webhooks")
        await page.get_by_test_id("webhooks").get_by_role("link", name=f"#{hook_id}").click()
        row = page.get_by_test_id("deliveries").locator("tbody tr").first
        await expect(row).to_have_attribute("data-state", "abandoned")
        await expect(row).to_contain_text("connection refused")
        await row.get_by_role("button", name="Redeliver").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("is due again")
        async with db_pool.acquire() as conn:
            state, attempts = await conn.fetchrow(
                "SELECT state, attempts FROM webhook_outbox WHERE webhook_id = $1", hook_id
            )
        assert (state, attempts) == ("pending", 0) or attempts >= 1  # due again (or tried)

        # the audit log shows both changes, filtered by action
        await nav(page, "Audit").click()
        search = page.get_by_test_id("audit-search")
        await search.get_by_label("Action").fill("webhook.redeliver")
        await search.get_by_label("Object type").fill("webhook")
        await search.get_by_label("Object", exact=True).fill(str(hook_id))
        await search.get_by_role("button", name="Search").click()
        entries = page.get_by_test_id("audit").locator("tbody tr")
        await expect(entries).to_have_count(1)
        await expect(entries.first).to_contain_text("webhook.redeliver")
        await expect(entries.first).to_contain_text("202")
    finally:
        async with db_pool.acquire() as conn:
            await conn.execute("DELETE FROM webhooks WHERE url = $1", url)


async def test_history_charts_are_drawn_from_real_sessions(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("H"), 2, periodic_interval=1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok >= 3 for c in fleet.devices.values()))
        served = sum(c.sessions_ok for c in fleet.devices.values())
        await asyncio.sleep(1.0)  # a flush of the ACS's counts (every 0.3 s here)
        viewer = await person()
        await viewer.sign_in(await make_user(db_pool, unique_serial, "viewer"))
        page = viewer.page
        chart = page.get_by_test_id("history").locator('figure[data-metric="sessions"] svg')
        label = await chart.get_attribute("aria-label")
        total = int(re.search(r"(\d+) in all", label or "").group(1))  # type: ignore[union-attr]
        assert total >= served, (label, served)  # this run's other tests add theirs
        assert await chart.locator("rect.s0").count() >= 1  # at least one column drawn
        await page.get_by_role("link", name="last 30 days, per day").click()
        await expect(page.get_by_test_id("history").locator("figure")).to_have_count(5)
        # one device's own sessions per day, from its session logs
        serial = next(iter(fleet.devices))
        await viewer.goto(f"/ui/devices/{dev_id(fleet, serial)}")
        own = page.get_by_test_id("device-history").locator('figure[data-metric="sessions"]')
        await expect(own).to_contain_text("Sessions")
        label = await own.locator("svg").get_attribute("aria-label")
        assert int(re.search(r"(\d+) in all", label or "").group(1)) >= 3  # type: ignore[union-attr]
    finally:
        await fleet.stop()


async def test_what_a_device_reports_on_its_own_shows_as_its_events(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("EV"), 1, faults="autonomous-transfer")
    try:
        cpe = next(iter(fleet.devices.values()))
        # after its first session the CPE takes an image on its own and reports it
        await fleet.wait_for(lambda: cpe.sessions_ok >= 2 and not cpe.cpe_requests, 60)
        viewer = await person()
        await viewer.sign_in(await make_user(db_pool, unique_serial, "viewer"))
        await viewer.goto(f"/ui/devices/{dev_id(fleet, cpe.serial)}")
        row = viewer.page.get_by_test_id("device-events").locator(
            'tr[data-kind="AutonomousTransferComplete"]'
        )
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("1 Firmware Upgrade Image")
    finally:
        await fleet.stop()


async def test_a_post_without_the_csrf_token_is_refused(
    person: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    op = await person()
    await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
    page = op.page
    # what a forged request from another page could send: the cookie, not the token
    forged = await page.evaluate(
        """async () => {
            const r = await fetch("/api/v1/tokens", {method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({name: "forged", role: "viewer"})});
            return [r.status, await r.json()];
        }"""
    )
    assert forged[0] == 403 and forged[1]["error"]["code"] == "csrf"
    logout = await op.context.request.post(op.base + "/ui/logout", form={"x": "1"}, max_redirects=0)
    assert logout.status == 403
    await op.goto("/ui/")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()  # still signed in


async def test_jobs_are_queued_retried_and_cancelled_from_the_device_page(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("J"), 1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await op.goto(f"/ui/devices/{dev_id(fleet, next(iter(fleet.devices)))}")
        await page.get_by_text("Queue another job", exact=True).click()
        form = page.locator('form[data-action="task"]').filter(has=page.locator("textarea"))
        await form.locator('select[name="name"]').select_option("setParameterValues")
        await form.locator("textarea").fill('{"parameterValues": [["Device.No.Such", "1"]]}')
        await form.get_by_label("now (connection request, wait up to 30 s)").check()
        await form.get_by_role("button", name="Queue").click()
        # the CPE refuses the name: the fault is said, and shown on the job
        await expect(page.locator("#notice .msg-error")).to_contain_text(
            "failed: CPE fault 9003 Invalid arguments"
        )
        job = page.get_by_test_id("jobs").locator("tbody tr").first
        await expect(job).to_have_attribute("data-status", "fault")
        await job.get_by_role("button", name="Retry").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("is pending again")
        job = page.get_by_test_id("jobs").locator("tbody tr").first
        await expect(job).to_have_attribute("data-status", "pending")
        await job.get_by_role("button", name="Cancel").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("cancelled")
        await expect(page.get_by_test_id("jobs").locator("tbody tr").first).to_have_attribute(
            "data-status", "cancelled"
        )
        # a broken argument document is caught before anything is sent
        await page.get_by_text("Queue another job", exact=True).click()
        await form.locator("textarea").fill("{not json")
        await form.get_by_role("button", name="Queue").click()
        await expect(page.locator("#jobs .notice .msg-error")).to_contain_text(
            "The arguments: not valid JSON"
        )
    finally:
        await fleet.stop()


async def test_a_fault_group_is_found_retried_in_bulk_and_dismissed(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    klass = unique_serial("UF")
    fleet = await fleet_of(ui_acs, unique_serial("G"), 2, product_class=klass)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        for serial in fleet.devices:  # each gateway refuses to set a read-only parameter
            job = await queue_and_run(
                db_pool,
                fleet,
                serial,
                "setParameterValues",
                {"parameterValues": [["Device.DeviceInfo.SoftwareVersion", "9"]]},
            )
            assert job.status == "fault"
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await nav(page, "Faults").click()
        await page.locator('input[name="filter"]').fill(f'DeviceID.ProductClass = "{klass}"')
        await page.get_by_role("button", name="Show").click()
        [group] = await page.get_by_test_id("fault-groups").locator("tbody tr").all()
        # the 9003 wrapper is shown with what really went wrong
        await expect(group).to_contain_text("Device.DeviceInfo.SoftwareVersion: 9008")
        await expect(group).to_contain_text(klass)
        page.once("dialog", lambda d: d.accept())
        await group.get_by_role("button", name="Retry").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("2 jobs retried")
        # both jobs run again at the gateways' next sessions and fault again
        for serial in fleet.devices:
            await fleet.trigger(serial)
        await op.goto("/ui/faults?filter=" + quote(f'DeviceID.ProductClass = "{klass}"'))
        group = page.get_by_test_id("fault-groups").locator("tbody tr").first
        await expect(group).to_contain_text("9008")
        # drill into the group: the Jobs page lists its jobs; select one and dismiss the rest
        await group.get_by_role("link").first.click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text("2 matching")
        rows = page.get_by_test_id("jobs").locator("tbody tr")
        await expect(rows).to_have_count(2)
        await expect(rows.first).to_contain_text("9008")
        await rows.first.get_by_role("checkbox").check()
        await page.get_by_test_id("retry-selected").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("1 job retried")
        await op.goto("/ui/faults?filter=" + quote(f'DeviceID.ProductClass = "{klass}"'))
        page.once("dialog", lambda d: d.accept())
        await page.get_by_test_id("fault-groups").get_by_role("button", name="Dismiss").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("1 job dismissed")
        await expect(page.get_by_test_id("fault-groups")).to_contain_text("No open fault.")
    finally:
        await fleet.stop()


async def test_a_policy_is_written_and_dry_run_in_the_ui(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("P"), 1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        serial = next(iter(fleet.devices))
        before = fleet.devices[serial].tree.value("Device.WiFi.SSID.1.SSID")
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await nav(page, "Policies").click()
        await page.get_by_role("link", name="New policy").click()
        name = unique_serial("pol-")
        doc = (
            f'{{"name": "{name}", "enabled": false,'
            f' "precondition": "DeviceID.SerialNumber = \\"{serial}\\"",'
            ' "parameters": [{"path": "WiFi.SSID.1.SSID", "value": "net-{DeviceID.SerialNumber}"}]}'
        )
        await page.get_by_role("button", name="JSON", exact=True).click()  # the experts' view
        editor = page.get_by_label("Policy JSON")
        await editor.fill('{"name": ""}')
        await page.get_by_role("button", name="Create").click()
        # the API's own complaint, with the path of the bad field
        await expect(page.locator(".msg-error")).to_contain_text("name:")
        await editor.fill(doc)
        await page.get_by_role("button", name="Create").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(f"Policy {name}")
        await page.get_by_label("Device ID", exact=True).fill(dev_id(fleet, serial))
        await page.get_by_role("button", name="Dry run").click()
        result = page.get_by_test_id("dry-run")
        await expect(result).to_contain_text("The device matches the precondition now.")
        await expect(result).to_contain_text(f"Device.WiFi.SSID.1.SSID: {before} → net-{serial}")
        await nav(page, "Policies").click()
        await expect(page.get_by_test_id("policies")).to_contain_text(name)
    finally:
        await fleet.stop()


async def test_a_policy_is_built_in_the_form_checked_as_typed_and_dry_run_unsaved(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    fleet = await fleet_of(ui_acs, unique_serial("PF"), 1)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        serial = next(iter(fleet.devices))
        device = dev_id(fleet, serial)
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await op.goto("/ui/policies/new")
        form = page.locator("#policy-form")
        name = unique_serial("form-")
        await form.get_by_label("Name", exact=True).fill(name)
        # the example ticks BOOTSTRAP and BOOT: this one applies at BOOT only
        await form.get_by_label("0 BOOTSTRAP", exact=True).uncheck()
        await form.get_by_label("1 BOOT", exact=True).check()
        pre = form.get_by_label("Precondition")
        check = page.get_by_test_id("precondition-check")
        # checked by the API's filter parser as it is typed
        await pre.fill('DeviceID.SerialNumber = "unterminated')
        await expect(check).to_contain_text("unterminated string")
        await pre.fill(f'DeviceID.SerialNumber = "{serial}"')
        await expect(check).to_have_text("Valid: 1 device(s) match now.")
        # the example's parameter row, then one typed
        rows = form.locator('[data-rows="parameters"] .pe-row')
        await expect(rows).to_have_count(1)
        await rows.nth(0).get_by_role("button", name="Remove").click()
        await form.get_by_role("button", name="Add a parameter").click()
        await (
            rows.nth(0)
            .get_by_label("Parameter path")
            .fill("ManagementServer.PeriodicInformInterval")
        )
        await rows.nth(0).get_by_label("Value").fill("321")
        await rows.nth(0).get_by_label("Type").select_option("xsd:unsignedInt")
        await form.get_by_role("button", name="Add an object").click()
        obj = form.locator('[data-rows="objects"] .pe-row').nth(0)
        await obj.get_by_label("Object path").fill("WiFi.SSID.")
        await obj.get_by_label("Or key values").fill("SSID=guest-net")
        await obj.get_by_label("Its parameters").fill("Enable=true")
        await form.get_by_role("button", name="Add an attribute").click()
        attr = form.locator('[data-rows="attributes"] .pe-row').nth(0)
        await attr.get_by_label("Attribute path").fill("DeviceInfo.SoftwareVersion")
        await attr.get_by_label("Notification").select_option("2")
        await form.get_by_label("Add, comma-separated").fill("formed, managed")
        # the dry run takes the form as it is, unsaved
        await page.get_by_label("Device ID", exact=True).fill(device)
        await page.get_by_role("button", name="Dry run").click()
        result = page.get_by_test_id("dry-run")
        await expect(result).to_contain_text("The device matches the precondition now.")
        await expect(result).to_contain_text("Device.ManagementServer.PeriodicInformInterval:")
        await expect(result).to_contain_text("→ 321")
        # the JSON view holds the same document, and back again keeps it
        await page.get_by_role("button", name="JSON", exact=True).click()
        editor = page.get_by_label("Policy JSON")
        text = await editor.input_value()
        assert '"SSID": "guest-net"' in text and '"notification": 2' in text, text
        await editor.fill(text.replace('"321"', '"654"'))
        await page.get_by_role("button", name="Form", exact=True).click()
        await expect(rows.nth(0).get_by_label("Value")).to_have_value("654")
        await page.get_by_role("button", name="Create").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(f"Policy {name}")
        status, stored = await Client(ui_acs, await token(db_pool, "viewer", unique_serial)).call(
            "GET", "/policies"
        )
        [mine] = [p for p in stored["items"] if p["name"] == name]
        assert mine["events"] == ["1 BOOT"]
        assert mine["parameters"] == [
            {
                "path": "ManagementServer.PeriodicInformInterval",
                "value": "654",
                "type": "xsd:unsignedInt",
            }
        ]
        assert mine["objects"] == [
            {"path": "WiFi.SSID.", "keys": {"SSID": "guest-net"}, "parameters": {"Enable": "true"}}
        ]
        assert mine["attributes"] == [{"path": "DeviceInfo.SoftwareVersion", "notification": 2}]
        assert mine["tags"] == {"add": ["formed", "managed"], "remove": []}
        # the saved policy opens in the form with what was saved
        await expect(rows.nth(0).get_by_label("Parameter path")).to_have_value(
            "ManagementServer.PeriodicInformInterval"
        )
        await expect(form.get_by_label("1 BOOT", exact=True)).to_be_checked()
    finally:
        await fleet.stop()


async def test_an_admin_manages_users_and_tokens(
    person: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    admin = await person()
    await admin.sign_in(await make_user(db_pool, unique_serial, "admin"))
    page = admin.page
    await nav(page, "Admin").click()
    form = page.get_by_test_id("user-form")
    newcomer = unique_serial("new-").lower()
    await form.get_by_label("Username", exact=True).fill(newcomer)
    await form.get_by_label("Password", exact=True).fill("short")
    await form.locator('select[name="role"]').select_option("operator")
    # the browser's own check (minlength) stops it; the API would say the same
    await form.get_by_role("button", name="Create user").click()
    await expect(page.get_by_test_id("users")).not_to_contain_text(newcomer)
    await form.get_by_label("Password", exact=True).fill("long enough, surely")
    await form.get_by_role("button", name="Create user").click()
    await expect(page.locator("#notice .msg-ok")).to_contain_text(f"User {newcomer} created")
    await expect(page.get_by_test_id("users")).to_contain_text(newcomer)

    token_name = unique_serial("tok-")
    tokens_card = page.locator("section").filter(has=page.get_by_test_id("tokens"))
    await tokens_card.get_by_label("Name", exact=True).fill(token_name)
    await tokens_card.get_by_role("button", name="Create token").click()
    secret = tokens_card.locator("code.secret")
    await expect(secret).to_have_text(re.compile(r"^acs_"))
    await expect(page.get_by_test_id("tokens")).not_to_contain_text(token_name)  # until reloaded
    await page.reload()
    await expect(page.get_by_test_id("tokens")).to_contain_text(token_name)
    await expect(page.locator("table.settings")).to_contain_text("ACS_CPE_PASSWORD")
    await expect(page.locator("table.settings")).to_contain_text("********")


async def test_a_module_installed_from_the_device_page_shows_in_its_software_panel(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    admin = Client(ui_acs, await token(db_pool, "admin", unique_serial))
    name = f"clock-{unique_serial()}.du"
    await ok(admin, "PUT", f"/files/{name}", 201, data=make_package("clock", "4.2", ("tick",)))
    await admin.close()
    # ChangeDUState exists from CWMP 1.2
    fleet = await fleet_of(ui_acs, unique_serial("SWU"), 1, cwmp_version="1.4")
    try:
        cpe = next(iter(fleet.devices.values()))
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await op.goto(f"/ui/devices/{dev_id(fleet, cpe.serial)}")
        panel = page.get_by_test_id("software")
        await expect(panel).to_contain_text("No software modules installed.")
        await page.get_by_text("Queue another job", exact=True).click()
        form = page.locator('form[data-action="task"]').filter(has=page.locator("textarea"))
        await form.locator('select[name="name"]').select_option("changeDUState")
        uuid = "5d0c2f0e-8a7b-4c1d-9e2f-3a4b5c6d7e8f"
        await form.locator("textarea").fill(
            f'{{"operations": [{{"type": "Install", "fileName": "{name}", "uuid": "{uuid}"}}]}}'
        )
        await form.get_by_label("now (connection request, wait up to 30 s)").check()
        await form.get_by_role("button", name="Queue").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("(changeDUState) is done")
        # the session that closed the job re-read the device's modules before it ended
        await fleet.wait_for(lambda: not cpe.in_session and not cpe.du_reports)
        await page.reload()
        row = page.get_by_test_id("software").locator(f'tr[data-uuid="{uuid}"]')
        await expect(row).to_contain_text("clock")
        await expect(row).to_contain_text("4.2")
        await expect(row).to_contain_text("Installed")
        await expect(row.locator('[data-eu="tick"]')).to_have_text("tick: Active")
    finally:
        await fleet.stop()


async def test_config_backups_are_taken_downloaded_restored_and_deleted_on_the_device_page(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial, tmp_path: Path
) -> None:
    import hashlib

    fleet = await fleet_of(ui_acs, unique_serial("BU"), 2)
    ssid = "Device.WiFi.SSID.1.SSID"
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        serial_a, serial_b = sorted(fleet.devices)
        a, b = dev_id(fleet, serial_a), dev_id(fleet, serial_b)
        cpe_a, cpe_b = fleet.devices[serial_a], fleet.devices[serial_b]
        wanted = f"configured-on-{serial_a[-6:]}"  # an SSID has at most 32 characters
        cpe_a.tree.set_value_internal(ssid, wanted)
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await op.goto(f"/ui/devices/{a}")
        section = page.locator("#backups")
        await expect(section.get_by_test_id("backups")).to_contain_text("No backups yet.")
        await section.get_by_role("button", name="Back up now").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("is done")
        row = section.get_by_test_id("backups").locator("tbody tr").first
        await expect(row).to_contain_text("1 Vendor Configuration File")
        await expect(row).to_contain_text(cpe_a.tree.software_version)

        async with page.expect_download() as download:
            await row.get_by_role("link", name="Download").click()
        saved = tmp_path / "backup.cfg"
        await (await download.value).save_as(saved)
        content = saved.read_bytes()
        assert f"{ssid}={wanted}\n".encode() in content
        await expect(row.locator("td.mono")).to_have_attribute(
            "title", hashlib.sha256(content).hexdigest()
        )

        # the swap: restore onto B, which then runs A's configuration
        await row.locator('input[name="targetDevice"]').fill(b)
        await row.get_by_role("button", name="Restore").click()
        await expect(page.locator("#notice .msg-ok")).to_contain_text("Restore queued as job")
        await fleet.trigger(serial_b)
        await fleet.wait_for(lambda: cpe_b.tree.value(ssid) == wanted)

        page.once("dialog", lambda d: d.accept())
        await (
            section.get_by_test_id("backups")
            .locator("tbody tr")
            .first.get_by_role("button", name="Delete")
            .click()
        )
        await expect(page.locator("#notice .msg-ok")).to_contain_text("deleted")
        await expect(section.get_by_test_id("backups")).to_contain_text("No backups yet.")
    finally:
        await fleet.stop()


async def test_the_reach_panel_shows_each_channel_and_how_it_last_went(
    person: Any, ui_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    client = Client(ui_acs, await token(db_pool, "operator", unique_serial))
    # behind a (simulated) NAT with a STUN binding: UDP first, HTTP leads nowhere
    fleet, dev = await natted_device(
        ui_acs, db_pool, client, unique_serial("R"), username="cpe", password="cpe-pw"
    )
    try:
        op = await person()
        await op.sign_in(await make_user(db_pool, unique_serial, "operator"))
        page = op.page
        await op.goto(f"/ui/devices/{dev}")
        reach = page.get_by_test_id("reach")
        udp = reach.locator('tr[data-channel="udp"]')
        await expect(udp).to_have_attribute("data-usable", "yes")
        await expect(udp).to_contain_text("try #1")
        await expect(udp).to_contain_text("127.0.0.1:")  # the binding
        await expect(udp).to_have_attribute("data-last", "")
        xmpp = reach.locator('tr[data-channel="xmpp"]')
        await expect(xmpp).to_have_attribute("data-usable", "no")
        await expect(xmpp).to_contain_text("skipped: XMPP not configured")
        await expect(reach.locator('tr[data-channel="http"]')).to_contain_text("try #2")

        await page.get_by_role("button", name="Knock now").click()
        await expect(page.locator(".msg-ok").first).to_contain_text(
            "answered the connection request over UDP"
        )
        await op.goto(f"/ui/devices/{dev}")
        udp = page.get_by_test_id("reach").locator('tr[data-channel="udp"]')
        await expect(udp).to_have_attribute("data-last", "ok")
        await expect(udp).to_contain_text("accepted")
        await expect(udp).to_contain_text("session opened after")
    finally:
        await fleet.stop()
        await client.close()
