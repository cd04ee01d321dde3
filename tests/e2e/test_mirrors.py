"""Region mirrors end to end (issue 18 item 5): a device tagged for a region
downloads its image from that region's mirror (a small file server of the
test's own), the others from the ACS's file server, and the explanation names
the URL each was given."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from acs.web.server import Running
from cpe_simulator.firmware import make_image
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_campaigns import ok, wait_campaign
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db


class MirrorServer:
    """A region's CDN: serves the files it was given under /fw/, counts the GETs."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.gets: list[str] = []
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def serve(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.gets.append(name)
        if name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name], content_type="application/octet-stream")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/fw/{name}", self.serve)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}/fw/"


@pytest.fixture
async def mirror() -> AsyncIterator[MirrorServer]:
    server = MirrorServer()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


@pytest.fixture
async def fw_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        campaign_tick_s=0.3,
        connection_request_username="cr",
        connection_request_password="cr-secret",
    )


@pytest.fixture
async def admin(fw_acs: Running, db_pool: asyncpg.Pool, unique_serial: Any) -> Any:
    client = Client(fw_acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


async def test_a_device_tagged_for_a_region_downloads_from_its_mirror(
    fw_acs: Running, admin: Client, mirror: MirrorServer, unique_serial: Any
) -> None:
    product = unique_serial("MIR")
    eu = await fleet_of(fw_acs, unique_serial("ME"), 1, periodic_interval=1, product_class=product)
    home = await fleet_of(
        fw_acs, unique_serial("MH"), 1, periodic_interval=1, product_class=product
    )
    try:
        everyone = [*eu.devices.values(), *home.devices.values()]
        await eu.wait_for(lambda: all(c.sessions_ok for c in everyone))
        eu_dev = dev_id(eu, next(iter(eu.devices)))
        home_dev = dev_id(home, next(iter(home.devices)))
        region = unique_serial("eu-")
        await ok(admin, "POST", f"/devices/{eu_dev}/tags", json={"tags": [region]})

        name = f"fw-{unique_serial()}-2.0.0.bin"
        data = make_image("2.0.0", 20_000)
        mirror.files[name] = data
        await ok(admin, "PUT", f"/files/{name}", 201, data=data)
        image = await ok(
            admin,
            "POST",
            "/firmware/images",
            201,
            json={
                "file": name,
                "oui": "ACDE48",
                "productClass": product,
                "hardwareVersions": ["HW1.0"],
                "version": "2.0.0",
            },
        )
        path = f"/firmware/images/{image['id']}/mirrors"
        nowhere = 'DeviceID.SerialNumber = "nobody"'
        mirrors = [{"baseUrl": "https://apac.example.net/fw", "filter": nowhere}]
        mirrors.append({"baseUrl": mirror.base, "tag": region})
        body = await ok(admin, "PUT", path, json={"mirrors": mirrors})
        assert [m["example"] for m in body["mirrors"]] == [
            f"https://apac.example.net/fw/{name}",
            mirror.base + name,
        ]
        assert body["default"] == image["url"]
        assert (await ok(admin, "GET", path)) == body

        # the explanation names the URL each device would be given
        async def offered_url(dev: str) -> str:
            why = await ok(admin, "GET", f"/devices/{dev}/firmware")
            return str(next(i for i in why["images"] if i["image"] == image["id"])["downloadUrl"])

        assert await offered_url(eu_dev) == mirror.base + name
        assert await offered_url(home_dev) == image["url"]

        spec = {
            "name": unique_serial("mirror-"),
            "image": image["id"],
            "filter": f'DeviceID.ProductClass = "{product}"',
            "stages": [{"size": "100%"}],
        }
        cid = (await ok(admin, "POST", "/campaigns", 201, json=spec))["id"]
        await ok(admin, "POST", f"/campaigns/{cid}/start")
        done = await wait_campaign(admin, cid, lambda b: b["status"] == "completed")
        assert done["totals"] == {"succeeded": 2}
        assert all(c.tree.software_version == "2.0.0" for c in everyone)
        assert mirror.gets == [name]  # the tagged device, and only it, used the mirror

        # ... and the URL each was given
        async def given_url(dev: str) -> str:
            why = await ok(admin, "GET", f"/devices/{dev}/firmware")
            return str(next(c for c in why["campaigns"] if c["campaign"] == cid)["downloadUrl"])

        assert await given_url(eu_dev) == mirror.base + name
        assert await given_url(home_dev) == image["url"]
    finally:
        await eu.stop()
        await home.stop()


async def test_mirror_bad_input_is_refused_naming_the_position(
    fw_acs: Running, admin: Client, unique_serial: Any
) -> None:
    name = f"fw-{unique_serial()}-2.0.0.bin"
    await ok(admin, "PUT", f"/files/{name}", 201, data=make_image("2.0.0", 2_000))
    image = await ok(
        admin,
        "POST",
        "/firmware/images",
        201,
        json={
            "file": name,
            "oui": "ACDE48",
            "productClass": unique_serial("MIB"),
            "hardwareVersions": ["HW1.0"],
            "version": "2.0.0",
        },
    )
    path = f"/firmware/images/{image['id']}/mirrors"
    good = {"baseUrl": "https://eu.example.net/fw/", "tag": "eu"}

    async def refused(mirror: dict[str, Any], status: int = 400) -> dict[str, Any]:
        got, body = await admin.call("PUT", path, json={"mirrors": [good, mirror]})
        assert got == status, body
        return dict(body["error"])

    err = await refused({"baseUrl": "ftp://eu.example.net/fw/", "tag": "eu"})
    assert (
        err["errors"] == [{"path": "mirrors[1].baseUrl", "message": err["errors"][0]["message"]}]
        and "http" in err["message"]
    )
    err = await refused({"baseUrl": "https://eu.example.net/", "filter": 'tag = "eu" AND'})
    assert err["errors"][0]["path"] == "mirrors[1].filter"
    assert "does not compile at position" in err["message"]
    err = await refused({"baseUrl": "https://eu.example.net/", "filter": 'tag LIKE "e%"'})
    assert err["errors"][0]["path"] == "mirrors[1].filter"  # parses; only SQL refuses it
    err = await refused({"baseUrl": "https://u:secret@eu.example.net/", "tag": "eu"})
    assert "credentials" in err["message"] and "secret" not in err["message"]
    err = await refused({"baseUrl": "https://eu.example.net/", "tag": "eu", "filter": "tag = 1"})
    assert err["errors"][0]["path"] == "mirrors[1]"
    err = await refused({"baseUrl": "https://eu.example.net/", "tag": "not a tag"})
    assert err["errors"][0]["path"] == "mirrors[1].tag"
    # nothing half-written: the image still has no mirror
    assert (await ok(admin, "GET", path))["mirrors"] == []
    got, _ = await admin.call("PUT", "/firmware/images/999999999/mirrors", json={"mirrors": []})
    assert got == 404
    got, _ = await admin.call("GET", "/firmware/images/999999999/mirrors")
    assert got == 404
