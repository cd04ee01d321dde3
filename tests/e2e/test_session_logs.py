"""Session logs end to end: simulated CPEs against the real ACS, read back through the API."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import asyncpg
import pytest

from acs import logs
from acs.cwmp import messages as m
from acs.cwmp.soap import parse_envelope
from acs.web.server import Running
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_api import Client, dev_id_of, token
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db

SIM = {
    "cpe_auth": "digest",
    "cpe_username": "cpe",
    "cpe_password": "cpe-pw",
    "connection_request_username": "cr",
    "connection_request_password": "cr-secret",
    "session_timeout_s": 3.0,
}


@pytest.fixture
async def clients(db_pool: asyncpg.Pool, unique_serial) -> Any:
    made: list[Client] = []

    async def client(running: Running, role: str = "viewer") -> Client:
        c = Client(running, await token(db_pool, role, unique_serial))
        made.append(c)
        return c

    yield client
    for c in made:
        await c.close()


async def sessions_of(client: Client, device: str) -> list[dict[str, Any]]:
    status, body = await client.call("GET", f"/devices/{device}/sessions")
    assert status == 200, body
    assert body["device"] == device
    return body["items"]


async def session(client: Client, device: str, sid: int) -> dict[str, Any]:
    status, body = await client.call("GET", f"/devices/{device}/sessions/{sid}")
    assert status == 200, body
    return body


async def test_a_simulated_cpes_session_is_logged_with_its_inform_and_our_answer(
    start_acs: StartAcs, clients: Any, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    viewer = await clients(acs)
    fleet = await fleet_of(acs, unique_serial("L"))
    serial = next(iter(fleet.devices))
    cpe = fleet.devices[serial]
    try:
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        device = dev_id(fleet, serial)
        items = await sessions_of(viewer, device)
        assert len(items) == 1
        first = items[0]
        assert first["outcome"] == "completed" and first["reason"] is None
        assert "0 BOOTSTRAP" in first["events"]
        assert first["ended"] >= first["started"]
        detail = await session(viewer, device, first["id"])
        messages = detail["messages"]
        assert detail["messageCount"] == len(messages)

        inform, answer = messages[0], messages[1]
        assert (inform["direction"], inform["rpc"], inform["status"]) == ("in", "Inform", None)
        received = parse_envelope(inform["body"].encode())
        assert received is not None and isinstance(received.body, m.Inform)
        assert received.body.device_id.serial_number == serial
        assert inform["size"] == len(inform["body"].encode())  # nothing to mask: stored verbatim
        assert (answer["direction"], answer["rpc"], answer["status"]) == (
            "out",
            "InformResponse",
            200,
        )
        sent = parse_envelope(answer["body"].encode())
        assert sent is not None and isinstance(sent.body, m.InformResponse)
        # the discovery that followed, then the empty answer that ended it
        rpcs = [(x["direction"], x["rpc"]) for x in messages]
        assert ("out", "GetParameterNames") in rpcs and ("in", "GetParameterValuesResponse") in rpcs
        assert (messages[-1]["direction"], messages[-1]["status"], messages[-1]["body"]) == (
            "out",
            204,
            "",
        )
        # headers are never recorded: neither the Digest answer nor the password
        assert not any("Digest" in x["body"] or "cpe-pw" in x["body"] for x in messages)
    finally:
        await fleet.stop()


async def test_a_key_passphrase_set_by_a_job_is_masked_in_the_log(
    start_acs: StartAcs, clients: Any, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    operator = await clients(acs, "operator")
    fleet = await fleet_of(acs, unique_serial("K"))
    serial = next(iter(fleet.devices))
    cpe = fleet.devices[serial]
    try:
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        device = dev_id(fleet, serial)
        secret = "wifi-s3cret-passphrase"
        status, job = await operator.call(
            "POST",
            f"/devices/{device}/tasks?connection_request=true&timeout=20",
            json={
                "name": "setParameterValues",
                "parameterValues": [
                    ["Device.WiFi.AccessPoint.1.Security.KeyPassphrase", secret],
                    ["Device.WiFi.SSID.1.SSID", "visible-ssid"],
                ],
            },
        )
        assert status == 200 and job["status"] == "done", job
        assert cpe.tree.value("Device.WiFi.AccessPoint.1.Security.KeyPassphrase") == secret

        bodies: list[dict[str, Any]] = []
        for _ in range(100):  # the job is done before its session ends and is logged
            items = await sessions_of(operator, device)
            bodies = [
                x for s in items for x in (await session(operator, device, s["id"]))["messages"]
            ]
            if any(x["rpc"] == "SetParameterValuesResponse" for x in bodies):
                break
            await asyncio.sleep(0.1)
        assert not any(secret in x["body"] for x in bodies)
        spv = next(x for x in bodies if x["rpc"] == "SetParameterValues")
        assert spv["direction"] == "out" and spv["status"] == 200
        # masked in place: the document still parses, the name and other values stay
        request = parse_envelope(spv["body"].encode())
        assert request is not None and isinstance(request.body, m.SetParameterValues)
        values = {p.name: p.value for p in request.body.parameter_list}
        assert values == {
            "Device.WiFi.AccessPoint.1.Security.KeyPassphrase": "********",
            "Device.WiFi.SSID.1.SSID": "visible-ssid",
        }
        # the CPE's answer is logged too
        assert any(x["rpc"] == "SetParameterValuesResponse" for x in bodies)
    finally:
        await fleet.stop()


async def test_each_device_keeps_only_its_newest_sessions(
    start_acs: StartAcs, clients: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(**SIM, session_log_per_device=3, session_log_max_bytes=4096)
    viewer = await clients(acs)
    fleet = await fleet_of(acs, unique_serial("N"), periodic_interval=1)
    serial = next(iter(fleet.devices))
    cpe = fleet.devices[serial]
    try:
        await fleet.wait_for(lambda: cpe.sessions_ok >= 6, 60)
        device = dev_id(fleet, serial)
        items = await sessions_of(viewer, device)
        assert len(items) == 3
        ids = [s["id"] for s in items]
        assert ids == sorted(ids, reverse=True)  # newest first
        # the bootstrap session (with the discovery) was the first to go
        assert not any("0 BOOTSTRAP" in s["events"] for s in items)
        async with db_pool.acquire() as conn:
            stored = await conn.fetchval(
                "SELECT count(*) FROM session_logs WHERE device_id = $1", device
            )
            newest = await conn.fetchval(
                "SELECT max(id) FROM session_logs WHERE device_id = $1", device
            )
        assert stored == 3 and newest == ids[0]
    finally:
        await fleet.stop()


async def test_a_quiet_periodic_session_is_logged_without_bodies_unless_the_device_is_tagged(
    start_acs: StartAcs, clients: Any, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    viewer, operator = await clients(acs), await clients(acs, "operator")
    fleet = await fleet_of(acs, unique_serial("Q"), periodic_interval=1)
    serial = next(iter(fleet.devices))
    cpe = fleet.devices[serial]
    device = dev_id(fleet, serial)

    async def periodic_sessions() -> list[dict[str, Any]]:
        items = await sessions_of(viewer, device)
        return [s for s in items if s["events"] == ["2 PERIODIC"]]

    try:
        await fleet.wait_for(lambda: cpe.sessions_ok >= 3, 60)
        quiet = (await periodic_sessions())[0]
        assert quiet["storedBytes"] == 0 and quiet["messageCount"] == 4
        messages = (await session(viewer, device, quiet["id"]))["messages"]
        assert [(x["direction"], x["rpc"], x["status"]) for x in messages] == [
            ("in", "Inform", None),
            ("out", "InformResponse", 200),
            ("in", None, None),
            ("out", None, 204),
        ]
        assert all(x["body"] == "" and "quiet periodic session" in x["note"] for x in messages)
        assert messages[0]["size"] > 1000  # the Inform's size is still told
        # the bootstrap session, eventful, kept every body
        items = await sessions_of(viewer, device)
        boot = next(s for s in items if "0 BOOTSTRAP" in s["events"])
        assert boot["storedBytes"] > 0

        status, body = await operator.call(
            "POST", f"/devices/{device}/tags", json={"tags": ["log:full"]}
        )
        assert status == 200, body
        before = max(s["id"] for s in await sessions_of(viewer, device))
        done = cpe.sessions_ok
        await fleet.wait_for(lambda: cpe.sessions_ok >= done + 2, 60)
        tagged = [s for s in await periodic_sessions() if s["id"] > before]
        assert tagged and tagged[0]["storedBytes"] > 0  # the newest, surely after the tag
        kept = (await session(viewer, device, tagged[0]["id"]))["messages"]
        inform = parse_envelope(kept[0]["body"].encode())
        assert inform is not None and isinstance(inform.body, m.Inform)
    finally:
        await fleet.stop()


async def test_a_large_session_is_cut_at_the_byte_limit_with_a_marker(
    start_acs: StartAcs, clients: Any, unique_serial
) -> None:
    acs = await start_acs(**SIM, session_log_max_bytes=4096)
    viewer = await clients(acs)
    fleet = await fleet_of(acs, unique_serial("T"))
    serial = next(iter(fleet.devices))
    cpe = fleet.devices[serial]
    try:
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        device = dev_id(fleet, serial)
        [discovery] = await sessions_of(viewer, device)
        assert discovery["truncated"] and discovery["storedBytes"] <= 4096
        detail = await session(viewer, device, discovery["id"])
        messages = detail["messages"]
        # every message is still listed with its size; bodies stop at the limit
        # (Inform, the names, the whole tree's values in one read, the empty POST,
        # each with its answer)
        assert detail["messageCount"] == len(messages) >= 8
        cut = [x for x in messages if x.get("truncated")]
        assert cut and all("[truncated:" in x["body"] for x in cut)
        assert all(x["size"] > 0 for x in cut)
        assert messages[-1]["status"] == 204
    finally:
        await fleet.stop()


async def test_a_rejected_message_of_a_known_session_is_logged_and_masked(
    start_acs: StartAcs, clients: Any, unique_serial
) -> None:
    acs = await start_acs(cpe_auth="none")
    viewer = await clients(acs)
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        reply = await cpe.post(cpe.inform_message(["2 PERIODIC"]))
        assert reply.status == 200
        # a CPE that cuts its answer short, in the middle of a secret's struct
        garbage = (
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<soap:Body><cwmp:GetParameterValuesResponse><ParameterList>"
            b"<ParameterValueStruct><Name>Device.Users.User.1.Password</Name>"
            b"<Value>leaked-admin-pw</Value></ParameterValueStruct><Parame"
        )
        reply = await cpe.post_raw(garbage)
        assert reply.status == 400
        device = dev_id_of(cpe)
        items = await sessions_of(viewer, device)
        assert [s["outcome"] for s in items] == ["abandoned", "completed"]
        assert "unparseable message" in items[0]["reason"]
        detail = await session(viewer, device, items[0]["id"])
        rejected, fault = detail["messages"][-2:]
        assert rejected["direction"] == "in" and rejected["rpc"] is None
        assert "Device.Users.User.1.Password" in rejected["body"]
        assert "leaked-admin-pw" not in rejected["body"] and "********" in rejected["body"]
        assert fault["direction"] == "out" and fault["status"] == 400 and fault["rpc"] == "Fault"
    finally:
        await cpe.close()


async def test_session_logs_of_unknown_devices_and_sessions(
    start_acs: StartAcs, clients: Any, unique_serial
) -> None:
    acs = await start_acs(cpe_auth="none")
    viewer = await clients(acs)
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        device = dev_id_of(cpe)
        status, body = await viewer.call("GET", "/devices/NO-SUCH-DEVICE/sessions")
        assert status == 404 and "NO-SUCH-DEVICE" in body["error"]["message"]
        status, body = await viewer.call("GET", "/devices/NO-SUCH-DEVICE/sessions/1")
        assert status == 404 and body["error"]["code"] == "not_found"
        status, body = await viewer.call("GET", f"/devices/{device}/sessions/abc")
        assert status == 400 and body["error"]["code"] == "invalid_id"
        status, body = await viewer.call("GET", f"/devices/{device}/sessions/999999999999")
        assert status == 404 and "session 999999999999" in body["error"]["message"]
        # another device's session is not reachable through this one
        other = CpeDouble(cwmp_url(acs), unique_serial())
        try:
            await other.session(["0 BOOTSTRAP", "1 BOOT"])
            [theirs] = await sessions_of(viewer, dev_id_of(other))
            status, _ = await viewer.call("GET", f"/devices/{device}/sessions/{theirs['id']}")
            assert status == 404
        finally:
            await other.close()
    finally:
        await cpe.close()


async def test_session_logs_can_be_turned_off(
    start_acs: StartAcs, clients: Any, unique_serial
) -> None:
    acs = await start_acs(cpe_auth="none", session_log_per_device=0)
    viewer = await clients(acs)
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        assert await sessions_of(viewer, dev_id_of(cpe)) == []
    finally:
        await cpe.close()


def fields_of(line: str) -> dict[str, str]:
    """``event=session device=X events="1 BOOT,2 PERIODIC"`` -> a dict (acs.logs' format)."""
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)}


async def test_each_session_is_one_info_line_and_ticks_stay_quiet(
    start_acs: StartAcs, clients: Any, unique_serial, caplog: pytest.LogCaptureFixture
) -> None:
    logs.setup("INFO")  # what `acs` does at start: the ticks' filter too
    caplog.set_level(logging.INFO)
    # ticks every 0.2 s: ten Running job / executed successfully pairs a second if shown
    acs = await start_acs(**SIM, bulk_tick_s=0.2, campaign_tick_s=0.2)
    admin = await clients(acs, "admin")
    prefix = unique_serial("Q")
    status, policy = await admin.call(
        "POST",
        "/policies",
        json={
            "name": unique_serial("quiet-"),
            "precondition": f'DeviceID.SerialNumber LIKE "{prefix}%"',
            "parameters": [{"path": "WiFi.SSID.1.SSID", "value": "quiet"}],
        },
    )
    assert status == 201, policy
    fleet = await fleet_of(acs, prefix)
    serial = next(iter(fleet.devices))
    cpe = fleet.devices[serial]
    device = dev_id(fleet, serial)
    try:
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        await fleet.trigger(serial)  # a second session with nothing to do
        items: list[dict[str, Any]] = []
        for _ in range(100):  # each session's log row is written as it ends
            items = await sessions_of(admin, device)
            if len(items) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(items) == 2
    finally:
        await fleet.stop()
        await admin.call("DELETE", f"/policies/{policy['id']}")

    mine = [r for r in caplog.records if f"device={device}" in r.getMessage()]
    assert [(r.name, r.levelname) for r in mine] == [("acs.cwmp", "INFO")] * 2, [
        r.getMessage() for r in mine
    ]
    boot, knock = (fields_of(r.getMessage()) for r in mine)
    newest, oldest = items
    assert boot["event"] == knock["event"] == "session"
    assert (boot["session"], knock["session"]) == (oldest["sessionKey"], newest["sessionKey"])
    assert boot["events"] == "0 BOOTSTRAP,1 BOOT" and knock["events"] == "6 CONNECTION REQUEST"
    assert boot["outcome"] == knock["outcome"] == "completed"
    sent = dict(
        (name, int(count or 1))
        for name, _, count in (part.partition(":") for part in boot["sent"].split(","))
    )
    assert sent["GetParameterNames"] >= 1 and sent["SetParameterValues"] == 1
    assert sum(sent.values()) == int(boot["rpcs"])
    assert boot["policies"] == policy["name"] and boot["remote"] == "127.0.0.1"
    assert (knock["rpcs"], knock.get("sent")) == ("0", None)
    assert int(boot["duration_ms"]) > 0 and int(knock["duration_ms"]) >= 0
    assert boot["cwmp"] and boot["tasks"] == "0"
    # the scheduler ran all along (the campaigns' tick, the bulk tick), unheard at INFO
    assert not [r for r in caplog.records if r.name.startswith("apscheduler")]


async def test_device_events_are_read_through_the_api_page_by_page(
    start_acs: StartAcs, clients: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    from acs.store import device_events

    acs = await start_acs(cpe_auth="none")
    viewer = await clients(acs)
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        device = dev_id_of(cpe)
        status, body = await viewer.call("GET", f"/devices/{device}/events")
        assert status == 200 and body == {"device": device, "items": [], "nextCursor": None}
        async with db_pool.acquire() as conn:
            for n in range(3):
                await device_events.record(conn, device, "Kicked", {"n": n})
            await device_events.record(conn, device, "RequestDownload", {"fileType": "x"})
        status, page = await viewer.call("GET", f"/devices/{device}/events?limit=2")
        assert status == 200 and [e["kind"] for e in page["items"]] == ["RequestDownload", "Kicked"]
        status, rest = await viewer.call(
            "GET", f"/devices/{device}/events?cursor={page['nextCursor']}&kind=Kicked"
        )
        assert status == 200 and [e["detail"]["n"] for e in rest["items"]] == [1, 0]
        status, body = await viewer.call("GET", "/devices/NO-SUCH-DEVICE/events")
        assert status == 404 and "NO-SUCH-DEVICE" in body["error"]["message"]
        status, body = await viewer.call("GET", f"/devices/{device}/events?limit=0")
        assert status == 400
    finally:
        await cpe.close()
