"""FOTA check-in end to end: terminals without TR-069 against the real ACS.

A terminal is played by a plain aiohttp client speaking Digest, as a modem's
FOTA agent would; the catalog and campaigns are driven through the API.
Every test uses its own product class, so images other tests add to the
shared catalog never change what a terminal here is offered.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.store import credentials
from acs.store.ids import device_id
from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import catalog_image, ok, wait_campaign

pytestmark = pytest.mark.db

OUI = "ACDE48"  # the OUI catalog_image() gives images


@pytest.fixture
async def fota_acs(start_acs: StartAcs) -> Running:
    """Digest with the shared CPE credential, as a deployed ACS would ask; a fast
    campaign tick so a campaign completes within a test."""
    return await start_acs(
        cpe_auth="digest", cpe_username="cpe", cpe_password="cpe-pw", campaign_tick_s=0.3
    )


@pytest.fixture
async def admin_api(
    fota_acs: Running, db_pool: asyncpg.Pool, unique_serial: Callable[..., str]
) -> AsyncIterator[Client]:
    client = Client(fota_acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


class Terminal:
    """A USB modem's FOTA agent: checks in, downloads, reports."""

    def __init__(
        self,
        acs: Running,
        serial: str,
        product: str,
        build: str,
        *,
        hardware: str = "HW1.0",
        login: tuple[str, str] | None = ("cpe", "cpe-pw"),
    ) -> None:
        self.base = f"http://127.0.0.1:{acs.ports['cwmp']}"
        self.serial, self.product, self.build, self.hardware = serial, product, build, hardware
        middlewares = () if login is None else (aiohttp.DigestAuthMiddleware(*login),)
        self.http = aiohttp.ClientSession(middlewares=middlewares)

    @property
    def device_id(self) -> str:
        return device_id(OUI, self.product, self.serial)

    async def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.post(self.base + path, **kw) as resp:
            assert resp.content_type == "application/json", (resp.status, await resp.text())
            return resp.status, await resp.json()

    async def check(self, status: int = 200, **fields: Any) -> Any:
        body = {
            "serial": self.serial,
            "oui": OUI,
            "product": self.product,
            "hardware": self.hardware,
            "build": self.build,
        } | fields
        got, answer = await self.post("/fota/v1/check", json=body)
        assert got == status, answer
        return answer

    async def report(self, campaign: int, result: str, status: int = 200, **fields: Any) -> Any:
        body = {
            "serial": self.serial,
            "oui": OUI,
            "product": self.product,
            "campaign": campaign,
            "result": result,
        } | fields
        got, answer = await self.post("/fota/v1/report", json=body)
        assert got == status, answer
        return answer

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def terminal(
    fota_acs: Running, unique_serial: Callable[..., str]
) -> AsyncIterator[Callable[..., Terminal]]:
    made: list[Terminal] = []

    def make(build: str = "1.0.0", **kw: Any) -> Terminal:
        kw.setdefault("product", unique_serial("FOTA"))
        t = Terminal(fota_acs, unique_serial("IMEI"), build=build, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        await t.close()


async def campaign_for(client: Client, t: Terminal, image_id: int, unique_serial: Any) -> int:
    """A started one-stage campaign aimed at this terminal alone."""
    created = await ok(
        client,
        "POST",
        "/campaigns",
        201,
        json={
            "name": unique_serial("fota-"),
            "image": image_id,
            "filter": f'DeviceID.SerialNumber = "{t.serial}"',
            "stages": [{"size": "100%"}],
        },
    )
    started = await ok(client, "POST", f"/campaigns/{created['id']}/start")
    assert started["audience"] == 1, started
    return int(created["id"])


async def member_of(client: Client, cid: int) -> dict[str, Any]:
    page = await ok(client, "GET", f"/campaigns/{cid}/devices")
    assert len(page["items"]) == 1, page
    return dict(page["items"][0])


# --------------------------------------------------------------------------- authentication


async def test_a_check_without_credentials_gets_a_digest_challenge(
    fota_acs: Running, terminal: Callable[..., Terminal]
) -> None:
    t = terminal(login=None)
    answer = await t.check(401)
    assert answer["error"]["code"] == "unauthenticated"
    async with t.http.post(t.base + "/fota/v1/report", json={}) as resp:
        assert resp.status == 401
        assert "Digest" in resp.headers["WWW-Authenticate"]


async def test_a_wrong_password_is_refused(terminal: Callable[..., Terminal]) -> None:
    t = terminal(login=("cpe", "wrong"))
    assert (await t.check(401))["error"]["code"] == "unauthenticated"


async def test_a_per_device_credential_speaks_for_its_own_device_only(
    terminal: Callable[..., Terminal], db_pool: asyncpg.Pool, unique_serial: Any
) -> None:
    username = unique_serial("user-")
    owner = terminal(login=(username, "pw"))
    async with db_pool.acquire() as conn:
        await credentials.set_credential(conn, username, "pw", "acs", owner.device_id)
    assert (await owner.check())["update"] is False
    thief = terminal(product=owner.product, login=(username, "pw"))
    assert (await thief.check(403))["error"]["code"] == "forbidden"


# --------------------------------------------------------------------------- a whole upgrade


async def test_a_terminal_is_upgraded_by_a_campaign_and_verified(
    fota_acs: Running, admin_api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    t = terminal("1.0.0")
    first = await t.check(region="EU", manufacturer="Acme")
    assert first == {
        "update": False,
        "code": "no_image",
        "reason": f"the catalog has no image for {OUI}/{t.product}",
    }
    dev = await ok(admin_api, "GET", f"/devices/{t.device_id}")
    assert (dev["softwareVersion"], dev["hardwareVersion"]) == ("1.0.0", "HW1.0")
    assert (dev["provisioningCode"], dev["manufacturer"]) == ("EU", "Acme")
    assert dev["lastInform"] is not None

    image = await catalog_image(
        admin_api, unique_serial, "2.0.0", productClass=t.product, releaseNotes="faster LTE attach"
    )
    waiting = await t.check()
    assert waiting["code"] == "no_campaign" and "2.0.0" in waiting["reason"]

    cid = await campaign_for(admin_api, t, image["id"], unique_serial)
    offer = await t.check()
    assert offer == {
        "update": True,
        "image": {
            "version": "2.0.0",
            "url": image["url"],
            "size": image["size"],
            "sha256": image["sha256"],
            "releaseNotes": "faster LTE attach",
        },
        "campaign": cid,
        "reportUrl": "/fota/v1/report",
    }
    # a terminal that lost the answer asks again: same image, not a second attempt
    assert await t.check() == offer
    member = await member_of(admin_api, cid)
    assert (member["state"], member["attempts"]) == ("downloading", 1)
    assert (member["fromVersion"], member["targetVersion"]) == ("1.0.0", "2.0.0")

    async with aiohttp.ClientSession() as files, files.get(offer["image"]["url"]) as resp:
        assert resp.status == 200
        payload = await resp.read()
    assert len(payload) == offer["image"]["size"]
    assert hashlib.sha256(payload).hexdigest() == offer["image"]["sha256"]

    assert (await t.report(cid, "downloaded"))["state"] == "installing"
    # downloaded but not installed: a check proves nothing yet, and changes nothing
    assert await t.check() == offer
    assert (await member_of(admin_api, cid))["state"] == "installing"
    assert (await t.report(cid, "installed"))["state"] == "verifying"
    assert (await t.report(cid, "installed"))["state"] == "verifying"  # a retried report

    t.build = "2.0.0"
    assert await t.check() == {
        "update": False,
        "code": "verified",
        "reason": "verified: now on 2.0.0",
    }
    done = await wait_campaign(admin_api, cid, lambda b: b["status"] == "completed")
    assert done["totals"] == {"succeeded": 1}
    member = await member_of(admin_api, cid)
    assert member["state"] == "succeeded" and "2.0.0" in member["reason"]
    # the report comes too late now: the download is over
    late = await t.report(cid, "installed", 409)
    assert late["error"]["code"] == "not_in_flight"
    again = await t.check()
    assert again["code"] == "same_version"
    assert again["reason"] == "up to date: the device already runs 2.0.0"


async def test_checks_at_once_start_one_download(
    fota_acs: Running, admin_api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    """An impatient agent firing checks in parallel gets one download, counted once."""
    t = terminal("1.0.0")
    await t.check()
    image = await catalog_image(admin_api, unique_serial, "2.0.0", productClass=t.product)
    cid = await campaign_for(admin_api, t, image["id"], unique_serial)
    answers = await asyncio.gather(*(t.check() for _ in range(6)))
    assert all(a["update"] and a["image"]["version"] == "2.0.0" for a in answers), answers
    member = await member_of(admin_api, cid)
    assert (member["state"], member["attempts"]) == ("downloading", 1)


async def test_a_channel_campaign_climbs_a_stepping_stone_in_one_check(
    fota_acs: Running, admin_api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    t = terminal("1.0.0")
    await t.check()
    await catalog_image(admin_api, unique_serial, "2.0.0", productClass=t.product)
    await catalog_image(
        admin_api, unique_serial, "3.0.0", productClass=t.product, minVersion="2.0.0"
    )
    created = await ok(
        admin_api,
        "POST",
        "/campaigns",
        201,
        json={
            "name": unique_serial("fota-"),
            "channel": "stable",
            "filter": f'DeviceID.SerialNumber = "{t.serial}"',
            "stages": [{"size": "100%"}],
        },
    )
    cid = created["id"]
    await ok(admin_api, "POST", f"/campaigns/{cid}/start")
    assert (await t.check())["image"]["version"] == "2.0.0"
    await t.report(cid, "installed")
    t.build = "2.0.0"
    # verified on the stepping stone, and the next hop is offered at once
    assert (await t.check())["image"]["version"] == "3.0.0"
    await t.report(cid, "installed")
    t.build = "3.0.0"
    assert (await t.check())["code"] == "verified"
    done = await wait_campaign(admin_api, cid, lambda b: b["status"] == "completed")
    assert done["totals"] == {"succeeded": 1}


async def test_coming_back_on_the_old_build_fails_the_device(
    fota_acs: Running, admin_api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    t = terminal("1.0.0")
    await t.check()
    image = await catalog_image(admin_api, unique_serial, "2.0.0", productClass=t.product)
    cid = await campaign_for(admin_api, t, image["id"], unique_serial)
    assert (await t.check())["update"] is True
    await t.report(cid, "installed")
    answer = await t.check()  # still on 1.0.0
    reason = "came back on version 1.0.0 instead of 2.0.0 after installing"
    assert answer == {"update": False, "code": "old_version", "reason": reason}
    member = await member_of(admin_api, cid)
    assert (member["state"], member["reason"]) == ("failed", reason)


# --------------------------------------------------------------------------- failures


async def test_a_failed_download_fails_the_device_with_its_code(
    fota_acs: Running, admin_api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    t = terminal("1.0.0")
    await t.check()
    image = await catalog_image(admin_api, unique_serial, "2.0.0", productClass=t.product)
    cid = await campaign_for(admin_api, t, image["id"], unique_serial)
    assert (await t.check())["update"] is True
    # 9019 (file authentication failure) is about the image: no retry
    reported = await t.report(cid, "download_failed", code=9019, message="checksum mismatch")
    assert reported["state"] == "failed"
    assert reported["reason"] == "download failed: error 9019: checksum mismatch"
    member = await member_of(admin_api, cid)
    assert (member["state"], member["faultCode"]) == ("failed", 9019)
    assert "9019" in member["reason"]
    # one failed device of one crosses the stage's failure threshold
    halted = await wait_campaign(admin_api, cid, lambda b: b["status"] == "paused")
    assert "failure threshold" in halted["statusReason"]
    paused = await t.check()
    assert paused["update"] is False


async def test_a_transient_failure_is_retried_after_the_backoff(
    fota_acs: Running, admin_api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    t = terminal("1.0.0")
    await t.check()
    image = await catalog_image(admin_api, unique_serial, "2.0.0", productClass=t.product)
    cid = await campaign_for(admin_api, t, image["id"], unique_serial)
    assert (await t.check())["update"] is True
    reported = await t.report(cid, "download_failed", code=9010, message="connection reset")
    assert reported["state"] == "pending"
    assert "attempt 1 failed: download failed: error 9010" in reported["reason"]
    held = await t.check()
    assert held["update"] is False and held["code"] == "retry_backoff"


async def test_an_up_to_date_terminal_is_told_why(
    fota_acs: Running, admin_api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    t = terminal("2.0.0")
    await catalog_image(admin_api, unique_serial, "2.0.0", productClass=t.product)
    await catalog_image(admin_api, unique_serial, "1.5.0", productClass=t.product)
    assert await t.check() == {
        "update": False,
        "code": "same_version",
        "reason": "up to date: the device already runs 2.0.0",
    }


async def test_other_hardware_is_told_why(
    fota_acs: Running, admin_api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    t = terminal("1.0.0", hardware="HW2.0")
    await catalog_image(admin_api, unique_serial, "2.0.0", productClass=t.product)
    answer = await t.check()
    assert answer["update"] is False and answer["code"] == "hardware_mismatch"
    assert "'HW2.0'" in answer["reason"]


async def test_another_region_is_told_why(
    fota_acs: Running, admin_api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    t = terminal("1.0.0")
    region = {"name": "Americas", "source": "provisioningCode", "values": ["US"]}
    await catalog_image(admin_api, unique_serial, "2.0.0", productClass=t.product, region=region)
    answer = await t.check(region="EU")
    assert answer["code"] == "region_mismatch" and "'EU'" in answer["reason"]
    assert (await t.check(region="US"))["code"] == "no_campaign"


# --------------------------------------------------------------------------- bad requests


async def test_bad_requests_get_json_errors(
    fota_acs: Running, terminal: Callable[..., Terminal]
) -> None:
    t = terminal()
    status, body = await t.post("/fota/v1/check", data=b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = await t.post("/fota/v1/check", json=["a", "list"])
    assert status == 400 and body["error"]["code"] == "invalid_body"

    missing = await t.check(400, hardware=None)
    assert missing["error"]["code"] == "invalid_body"
    body = {"serial": t.serial, "product": t.product, "build": "1.0"}
    status, missing = await t.post("/fota/v1/check", json=body)
    assert status == 400 and "hardware" in missing["error"]["message"]
    assert {"path": "hardware", "message": "Field required"} in missing["error"]["errors"]

    extra = await t.check(400, colour="blue")
    assert "colour" in extra["error"]["message"]
    nul = await t.check(400, serial="abc\x00def")
    assert "serial" in nul["error"]["message"]
    long = await t.check(400, build="9" * 200)
    assert "build" in long["error"]["message"]

    hostile = [
        b"[" * 20_000,  # nesting deep enough to exhaust a recursive parser
        b'{"serial": "\\ud800", "product": "p", "hardware": "h", "build": "1"}',
        b"1" * 5000,  # an integer longer than Python converts by default
        b"\xff\xfe{}",
        b"",
        b"null",
    ]
    for raw in hostile:
        status, body = await t.post("/fota/v1/check", data=raw)
        assert status == 400, (raw[:40], body)

    status, body = await t.post("/fota/v1/check", data=b" " * (65 * 1024))
    assert status == 413 and body["error"]["code"] == "body_too_large"

    async with t.http.get(t.base + "/fota/v1/check") as resp:
        assert resp.status == 405


async def test_reports_about_unknown_things_are_refused(
    fota_acs: Running, terminal: Callable[..., Terminal]
) -> None:
    t = terminal()
    unknown_device = await t.report(1, "downloaded", 404)
    assert unknown_device["error"]["code"] == "unknown_device"
    await t.check()
    unknown = await t.report(2**62, "downloaded", 404)
    assert unknown["error"]["code"] == "unknown_campaign"
    assert str(2**62) in unknown["error"]["message"]
    bad = await t.report(1, "exploded", 400)
    assert "result" in bad["error"]["message"]


async def test_a_cwmp_job_for_a_terminal_is_refused_with_the_reason(
    terminal: Callable[..., Terminal], admin_api: Client
) -> None:
    """A terminal never opens a CWMP session, so a job for it would wait for ever."""
    modem = terminal()
    await modem.check()
    for job in ({"name": "reboot"}, {"name": "factoryReset"}, {"name": "getRPCMethods"}):
        got, body = await admin_api.call(
            "POST",
            f"/devices/{modem.device_id}/tasks",
            params={"connection_request": "true", "timeout": "1"},
            json=job,
        )
        assert got == 409, body
        assert body["error"]["code"] == "never_runs"
        message = body["error"]["message"]
        assert modem.device_id in message and "never opened a CWMP session" in message
        assert job["name"] in message
    got, body = await admin_api.call("GET", f"/devices/{modem.device_id}/tasks")
    assert got == 200 and body["items"] == []
