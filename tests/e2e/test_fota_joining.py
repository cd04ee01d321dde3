"""The FOTA check-in and the explanation agree (issue 18, second bug): both come
from acs.services.joining for a device about to join a continuous campaign,
and from rollout.gate for a member that waits.

The campaign tick is an hour here, so a device the filter starts to match is
still "joining" when it checks in: only the check-in can admit it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import catalog_image, ok
from tests.e2e.test_fota import Terminal

pytestmark = pytest.mark.db


@pytest.fixture
async def slow_tick_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest", cpe_username="cpe", cpe_password="cpe-pw", campaign_tick_s=3600
    )


@pytest.fixture
async def api(
    slow_tick_acs: Running, db_pool: asyncpg.Pool, unique_serial: Callable[..., str]
) -> AsyncIterator[Client]:
    client = Client(slow_tick_acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


@pytest.fixture
async def terminal(
    slow_tick_acs: Running, unique_serial: Callable[..., str]
) -> AsyncIterator[Callable[..., Terminal]]:
    made: list[Terminal] = []

    def make(product: str) -> Terminal:
        t = Terminal(slow_tick_acs, unique_serial("IMEI"), product, "1.0.0")
        made.append(t)
        return t

    yield make
    for t in made:
        await t.close()


async def explained(api: Client, t: Terminal, cid: int) -> dict[str, Any]:
    body = await ok(api, "GET", f"/devices/{t.device_id}/firmware")
    return next(c for c in body["campaigns"] if c["campaign"] == cid)


async def campaign(api: Client, unique_serial: Any, image: int, flt: str, **extra: Any) -> int:
    spec = {
        "name": unique_serial("join-"),
        "image": image,
        "filter": flt,
        "stages": [{"size": "100%"}],
    } | extra
    cid = int((await ok(api, "POST", "/campaigns", 201, json=spec))["id"])
    await ok(api, "POST", f"/campaigns/{cid}/start")
    return cid


async def test_a_joining_terminal_is_offered_the_image_the_explanation_promises(
    api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    product = unique_serial("FJ")
    t = terminal(product)
    assert (await t.check())["code"] == "no_image"  # registered
    image = await catalog_image(api, unique_serial, "2.0.0", productClass=product)
    tag = unique_serial("joinme-")
    cid = await campaign(api, unique_serial, image["id"], f'tag = "{tag}"', membership="continuous")
    assert (await ok(api, "GET", f"/campaigns/{cid}"))["audience"] == 0
    await ok(api, "POST", f"/devices/{t.device_id}/tags", json={"tags": [tag]})
    before = await explained(api, t, cid)
    assert (before["code"], before["state"]) == ("joining", None)
    # the same decision: the check-in joins it and offers the image at once
    # (before the fix: "no_campaign", and the phone waited a day)
    offer = await t.check()
    assert offer["update"] is True and offer["campaign"] == cid, offer
    assert offer["image"]["version"] == "2.0.0"
    after = await explained(api, t, cid)
    assert (after["code"], after["state"]) == ("in_progress", "downloading")


async def test_the_check_in_and_the_explanation_give_the_same_reason(
    api: Client, terminal: Callable[..., Terminal], unique_serial: Any
) -> None:
    product = unique_serial("FV")
    image = await catalog_image(api, unique_serial, "2.0.0", productClass=product)

    async def agree(t: Terminal, cid: int, code: str) -> None:
        answer = await t.check()
        why = await explained(api, t, cid)
        assert answer["update"] is False, answer
        assert (answer["code"], answer["reason"]) == (why["code"], why["reason"]), (answer, why)
        assert answer["code"] == code

    # joining a paused continuous campaign: joins when it runs again, both say
    joiner = terminal(product)
    await joiner.check()
    tag = unique_serial("later-")
    paused = await campaign(
        api, unique_serial, image["id"], f'tag = "{tag}"', membership="continuous"
    )
    await ok(api, "POST", f"/campaigns/{paused}/pause")
    await ok(api, "POST", f"/devices/{joiner.device_id}/tags", json={"tags": [tag]})
    await agree(joiner, paused, "joining")

    def only(t: Terminal) -> str:
        return f'DeviceID.SerialNumber = "{t.serial}"'

    # a member of a paused campaign
    held = terminal(product)
    await held.check()
    halted = await campaign(api, unique_serial, image["id"], only(held))
    await ok(api, "POST", f"/campaigns/{halted}/pause")
    await agree(held, halted, "campaign_paused")

    # a member of a campaign that starts tomorrow
    early = terminal(product)
    await early.check()
    tomorrow = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    later = await campaign(api, unique_serial, image["id"], only(early), startAt=tomorrow)
    await agree(early, later, "campaign_scheduled")

    # a member outside its maintenance window
    night = terminal(product)
    await night.check()
    hour = (time.gmtime().tm_hour + 12) % 24
    window = {"cron": f"0 {hour} * * *", "durationMinutes": 60, "timezone": "UTC"}
    closed = await campaign(api, unique_serial, image["id"], only(night), windows=[window])
    await agree(night, closed, "outside_window")
