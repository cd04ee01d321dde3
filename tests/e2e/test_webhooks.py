"""Webhooks end to end: receivers are real aiohttp servers on 127.0.0.1, the CPEs
are simulated, the events come from the real ACS."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from acs.web.server import Running, running_acs
from tests.e2e.conftest import StartAcs, cwmp_url, make_settings
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_api import Client, dev_id_of, token
from tests.e2e.test_campaigns import catalog_image, ok
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db

SECRET = "test-hook-secret-0123456789"
SIM = {
    "cpe_auth": "digest",
    "cpe_username": "cpe",
    "cpe_password": "cpe-pw",
    "connection_request_username": "cr",
    "connection_request_password": "cr-secret",
    "session_timeout_s": 3.0,
    "webhook_poll_s": 0.1,
}


class Receiver:
    """A webhook endpoint: records every request; answers 204, or fails the first
    ``fail_first`` requests with 500, or always fails, or hangs until released."""

    def __init__(self, mode: str = "ok", fail_first: int = 0) -> None:
        self.mode = mode
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.hanging = 0
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if self.mode == "hang":
            self.hanging += 1
            await self.release.wait()
            return web.Response(status=200)
        if self.mode == "fail" or len(self.requests) <= self.fail_first:
            return web.Response(status=500, text="broken receiver")
        return web.Response(status=204)

    def documents(self, event_type: str | None = None) -> list[dict[str, Any]]:
        docs = [json.loads(body) for _, body in self.requests]
        return [d for d in docs if event_type is None or d["type"] == event_type]

    def about(self, event_type: str, **data: Any) -> list[dict[str, Any]]:
        return [
            d
            for d in self.documents(event_type)
            if all(d["data"].get(k) == v for k, v in data.items())
        ]


def assert_signed(receiver: Receiver, secret: str = SECRET) -> None:
    """Every request carries the event header and a valid HMAC of its exact body."""
    assert receiver.requests
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-ACS-Signature"], expected)
        assert headers["X-ACS-Event"] == json.loads(body)["type"]
        assert headers["Content-Type"] == "application/json"


async def eventually(predicate: Any, within_s: float = 20.0) -> float:
    """Wait for ``predicate()``; returns how long it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within_s:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
async def world(db_pool: asyncpg.Pool, unique_serial) -> Any:
    """Receivers, API clients and hooks made by a test, all gone afterwards: the
    database is shared by the whole run, and a hook left behind would get every
    later test's events."""
    receivers: list[Receiver] = []
    clients: list[Client] = []

    class World:
        async def receiver(self, mode: str = "ok", fail_first: int = 0) -> Receiver:
            r = await Receiver(mode, fail_first).start()
            receivers.append(r)
            return r

        async def client(self, acs: Running, role: str) -> Client:
            c = Client(acs, await token(db_pool, role, unique_serial))
            clients.append(c)
            return c

        async def hook(self, admin: Client, receiver: Receiver, *events: str) -> dict[str, Any]:
            status, body = await admin.call(
                "POST",
                "/webhooks",
                json={"url": receiver.url, "events": list(events), "secret": SECRET},
            )
            assert status == 201, body
            return body

    yield World()
    async with db_pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM webhooks WHERE url = ANY($1::text[])", [r.url for r in receivers]
        )
    for r in receivers:
        await r.stop()
    for c in clients:
        await c.close()


async def deliveries(admin: Client, hook: dict[str, Any], **query: Any) -> list[dict[str, Any]]:
    status, body = await admin.call("GET", f"/webhooks/{hook['id']}/deliveries", params=query)
    assert status == 200, body
    return body["items"]


async def settled(
    admin: Client, hook: dict[str, Any], done: Any, within_s: float = 10.0, **query: Any
) -> list[dict[str, Any]]:
    """The hook's deliveries once ``done(deliveries)`` holds (bounded wait): a
    receiver has a request before the ACS has the answer and records it."""
    deadline = time.monotonic() + within_s
    while not done(found := await deliveries(admin, hook, **query)):
        assert time.monotonic() < deadline, f"deliveries never settled: {found}"
        await asyncio.sleep(0.05)
    return found


async def test_device_registered_and_job_finished_arrive_signed(
    start_acs: StartAcs, world: Any, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    admin = await world.client(acs, "admin")
    operator = await world.client(acs, "operator")
    receiver = await world.receiver()
    hook = await world.hook(admin, receiver, "device.registered", "job.finished")
    assert hook["secret"] == SECRET and hook["events"] == ["device.registered", "job.finished"]
    status, listed = await admin.call("GET", "/webhooks")
    assert status == 200
    mine = next(h for h in listed["items"] if h["id"] == hook["id"])
    assert "secret" not in mine and mine["url"] == receiver.url

    fleet = await fleet_of(acs, unique_serial("W"))
    serial = next(iter(fleet.devices))
    device = dev_id(fleet, serial)
    try:
        await eventually(lambda: receiver.about("device.registered", device=device))
        [registered] = receiver.about("device.registered", device=device)
        assert registered["data"]["serialNumber"] == serial
        assert registered["data"]["oui"] == fleet.config.oui
        assert "0 BOOTSTRAP" in registered["data"]["events"]

        status, job = await operator.call(
            "POST",
            f"/devices/{device}/tasks?connection_request=true&timeout=20",
            json={"name": "getParameterValues", "parameterNames": ["Device.DeviceInfo.UpTime"]},
        )
        assert status == 200 and job["status"] == "done", job
        await eventually(lambda: receiver.about("job.finished", job=job["id"]))
        [finished] = receiver.about("job.finished", job=job["id"])
        assert finished["data"] == {
            "job": job["id"],
            "device": device,
            "name": "getParameterValues",
            "status": "done",
            "commandKey": None,
        }
        assert set(finished) == {"id", "type", "occurredAt", "data"}
        assert_signed(receiver)
        # a later session (the job's) registers nothing new
        assert len(receiver.about("device.registered", device=device)) == 1
        both = {registered["id"], finished["id"]}
        sent = await settled(
            admin, hook, lambda ds: {d["eventId"] for d in ds} >= both, state="delivered"
        )
        assert all(d["attempts"] == 1 and d["lastStatus"] == 204 for d in sent)
    finally:
        await fleet.stop()


async def test_a_failed_delivery_is_retried_and_a_hopeless_one_abandoned(
    start_acs: StartAcs, world: Any, unique_serial
) -> None:
    acs = await start_acs(
        cpe_auth="none", webhook_poll_s=0.1, webhook_retry_base_s=0.2, webhook_max_attempts=3
    )
    admin = await world.client(acs, "admin")
    flaky = await world.receiver(fail_first=1)
    broken = await world.receiver(mode="fail")
    flaky_hook = await world.hook(admin, flaky, "device.registered")
    broken_hook = await world.hook(admin, broken, "device.registered")
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        device = dev_id_of(cpe)
        await eventually(lambda: len(flaky.about("device.registered", device=device)) == 2)
        first, again = flaky.about("device.registered", device=device)
        assert first == again  # the same event, same id, sent again
        assert flaky.requests[0][1] == flaky.requests[1][1]  # byte for byte, so the same HMAC
        assert_signed(flaky)
        [delivered] = await settled(
            admin, flaky_hook, lambda ds: [d["state"] for d in ds] == ["delivered"]
        )
        assert (delivered["state"], delivered["attempts"], delivered["lastError"]) == (
            "delivered",
            2,
            None,
        )

        await eventually(lambda: len(broken.requests) == 3)
        abandoned: list[dict[str, Any]] = []

        async def check() -> bool:
            abandoned[:] = await deliveries(admin, broken_hook, state="abandoned")
            return bool(abandoned)

        deadline = time.monotonic() + 10
        while not await check():
            assert time.monotonic() < deadline, "the delivery was never abandoned"
            await asyncio.sleep(0.1)
        [given_up] = abandoned
        assert given_up["attempts"] == 3 and given_up["lastStatus"] == 500
        assert given_up["lastError"] == "HTTP 500: broken receiver"
        assert given_up["nextAttemptAt"] is None and given_up["finished"] is not None
        await asyncio.sleep(0.5)
        assert len(broken.requests) == 3  # and never tried again

        # the receiver is mended; the operator sends the abandoned delivery again
        broken.mode = "ok"
        path = f"/webhooks/{broken_hook['id']}/deliveries/{given_up['id']}/redeliver"
        status, body = await admin.call("POST", path)
        assert status == 202 and body == {
            "delivery": given_up["id"],
            "was": "abandoned",
            "state": "pending",
        }
        await eventually(lambda: len(broken.requests) == 4)
        assert broken.requests[3][1] == broken.requests[0][1]  # the same event, same bytes
        [redone] = await settled(
            admin, broken_hook, lambda ds: [d["state"] for d in ds] == ["delivered"]
        )
        assert (redone["state"], redone["attempts"], redone["lastStatus"]) == ("delivered", 1, 204)
        # a pending or unknown delivery is refused with the reason; viewers may not
        unknown = f"/webhooks/{broken_hook['id']}/deliveries/999999999/redeliver"
        status, body = await admin.call("POST", unknown)
        assert status == 404 and "delivery 999999999" in body["error"]["message"]
        other = f"/webhooks/{flaky_hook['id']}/deliveries/{given_up['id']}/redeliver"
        status, _ = await admin.call("POST", other)  # not a delivery of that hook
        assert status == 404
        viewer = await world.client(acs, "viewer")
        status, _ = await viewer.call("POST", path)
        assert status == 403
    finally:
        await cpe.close()


async def test_a_hung_hook_delays_neither_other_hooks_nor_cwmp_sessions(
    start_acs: StartAcs, world: Any, unique_serial
) -> None:
    # a 30 s timeout: if the hung hook held anything up, the waits below would show it
    acs = await start_acs(
        **SIM, webhook_timeout_s=30.0, webhook_concurrency=4, webhook_per_hook_concurrency=2
    )
    admin = await world.client(acs, "admin")
    operator = await world.client(acs, "operator")
    hung = await world.receiver(mode="hang")
    healthy = await world.receiver()
    await world.hook(admin, hung, "device.registered", "job.finished")
    await world.hook(admin, healthy, "device.registered", "job.finished")

    fleet = await fleet_of(acs, unique_serial("H"), 6)
    devices = {dev_id(fleet, s) for s in fleet.devices}
    try:
        took = await eventually(
            lambda: {d["data"]["device"] for d in healthy.documents("device.registered")} >= devices
        )
        assert took < 10
        await fleet.wait_for(lambda: all(c.sessions_ok >= 1 for c in fleet.devices.values()), 10)
        assert all(c.sessions_failed == 0 for c in fleet.devices.values())
        # the hung hook holds no more than its share of the sender's slots
        assert hung.hanging == 2

        device = dev_id(fleet, next(iter(fleet.devices)))
        started = time.monotonic()
        status, job = await operator.call(
            "POST",
            f"/devices/{device}/tasks?connection_request=true&timeout=20",
            json={"name": "getParameterValues", "parameterNames": ["Device.DeviceInfo.UpTime"]},
        )
        assert status == 200 and job["status"] == "done"
        assert time.monotonic() - started < 5  # the session raised an event and went on
        await eventually(lambda: healthy.about("job.finished", job=job["id"]), 10)

        # once the hook answers again, everything it missed arrives
        hung.release.set()
        await eventually(
            lambda: (
                {d["data"]["device"] for d in hung.documents("device.registered")} >= devices
                and hung.about("job.finished", job=job["id"])
            )
        )
        assert_signed(hung)
        assert_signed(healthy)
    finally:
        await fleet.stop()


async def test_faults_failed_jobs_and_campaign_changes_raise_events(
    start_acs: StartAcs, world: Any, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    admin = await world.client(acs, "admin")
    receiver = await world.receiver()
    await world.hook(admin, receiver, "fault.raised", "job.faulted", "campaign.state_changed")
    fleet = await fleet_of(acs, unique_serial("F"))
    serial = next(iter(fleet.devices))
    device = dev_id(fleet, serial)
    try:
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1)
        status, job = await admin.call(
            "POST",
            f"/devices/{device}/tasks?connection_request=true&timeout=20",
            json={
                "name": "setParameterValues",
                "parameterValues": [["Device.NoSuchObject.Value", "1"]],
            },
        )
        assert status == 200 and job["status"] == "fault", job
        code = job["fault"]["code"]
        await eventually(lambda: receiver.about("job.faulted", job=job["id"]))
        [raised] = receiver.about("fault.raised", job=job["id"])
        assert raised["data"]["faultCode"] == code and raised["data"]["device"] == device
        assert raised["data"]["retrying"] is False
        [faulted] = receiver.about("job.faulted", job=job["id"])
        assert faulted["data"]["fault"] == {"code": code, "message": job["fault"]["message"]}

        image = await catalog_image(admin, unique_serial, "3.0.0")
        campaign = await ok(
            admin,
            "POST",
            "/campaigns",
            201,
            json={
                "name": unique_serial("hooked-"),
                "image": image["id"],
                "filter": f'DeviceID.SerialNumber = "{unique_serial("nobody-")}"',
                "stages": [{"size": "50%"}, {"size": "100%"}],
            },
        )
        cid = campaign["id"]
        await ok(admin, "POST", f"/campaigns/{cid}/start")
        await ok(admin, "POST", f"/campaigns/{cid}/pause")
        await ok(admin, "POST", f"/campaigns/{cid}/cancel")
        await eventually(lambda: len(receiver.about("campaign.state_changed", campaign=cid)) >= 3)
        moves = [
            (d["data"]["from"]["status"], d["data"]["to"]["status"])
            for d in receiver.about("campaign.state_changed", campaign=cid)
        ]
        assert moves[:3] == [("draft", "running"), ("running", "paused"), ("paused", "cancelled")]
        assert_signed(receiver)
    finally:
        await fleet.stop()


async def test_webhook_api_refuses_bad_input_with_reasons(start_acs: StartAcs, world: Any) -> None:
    acs = await start_acs(cpe_auth="none")
    admin = await world.client(acs, "admin")
    operator = await world.client(acs, "operator")
    receiver = await world.receiver()
    for body, path in (
        ({"url": "ftp://example.net/x", "events": ["job.finished"]}, "url"),
        ({"url": "http:///nohost", "events": ["job.finished"]}, "url"),
        ({"url": receiver.url, "events": ["job.exploded"]}, "events.0"),
        ({"url": receiver.url, "events": []}, "events"),
        ({"url": receiver.url, "events": ["job.finished"], "secret": "short"}, "secret"),
        ({"url": receiver.url, "events": ["job.finished"], "extra": 1}, "extra"),
    ):
        status, answer = await admin.call("POST", "/webhooks", json=body)
        assert status == 400, body
        assert answer["error"]["errors"][0]["path"] == path, answer
    status, answer = await admin.call("POST", "/webhooks", data=b"{not json")
    assert status == 400 and answer["error"]["code"] == "invalid_json"
    status, _ = await operator.call(
        "POST", "/webhooks", json={"url": receiver.url, "events": ["job.finished"]}
    )
    assert status == 403
    status, _ = await operator.call("GET", "/webhooks")
    assert status == 403
    for path, code in (
        ("/webhooks/abc", 400),
        ("/webhooks/999999999", 404),
    ):
        status, answer = await admin.call("DELETE", path)
        assert status == code, path
    status, _ = await admin.call("GET", "/webhooks/999999999/deliveries")
    assert status == 404
    # without a secret one is generated, shown once
    status, made = await admin.call(
        "POST", "/webhooks", json={"url": receiver.url, "events": ["job.finished"]}
    )
    assert status == 201 and len(made["secret"]) >= 32
    status, _ = await admin.call("DELETE", f"/webhooks/{made['id']}")
    assert status == 204
    status, listed = await admin.call("GET", "/webhooks")
    assert made["id"] not in {h["id"] for h in listed["items"]}


async def test_the_acs_stops_promptly_while_a_hook_hangs_and_keeps_the_event(
    database_url: str, db_pool: asyncpg.Pool, world: Any, tmp_path: Any, unique_serial
) -> None:
    settings = make_settings(
        data_dir=tmp_path, cpe_auth="none", webhook_poll_s=0.05, webhook_timeout_s=60.0
    )
    context = running_acs(settings, database_url)
    acs = await context.__aenter__()
    try:
        admin = await world.client(acs, "admin")
        hung = await world.receiver(mode="hang")
        hook = await world.hook(admin, hung, "device.registered")
        cpe = CpeDouble(cwmp_url(acs), unique_serial())
        try:
            await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        finally:
            await cpe.close()
        await eventually(lambda: hung.hanging == 1)
    finally:
        stopping = time.monotonic()
        await context.__aexit__(None, None, None)
    assert time.monotonic() - stopping < 10
    # the delivery cut short stays pending: another sender takes it once its claim expires
    async with db_pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT state, attempts, next_attempt_at > now() AS leased FROM webhook_outbox"
            " WHERE webhook_id = $1",
            hook["id"],
        )
    assert row is not None and dict(row) == {"state": "pending", "attempts": 0, "leased": True}
