"""Secrets are secrets (issue 15, item 3), end to end: the real ACS, simulated CPEs.

Passwords a job sets, the shipped policy's connection-request password, and
values of parameters the operator declares secret must never be readable in
clear by any caller (viewer or admin) through the device tree, jobs, policy
sources, the device list and its CSV, the device page, or webhooks; nor be
stored in clear. The clear value still reaches the CPE and the knock, and an
admin can read one on purpose, which the audit log records.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from acs.core import secrets as secret_rules
from acs.services.provisioning import DEFAULT_POLICIES
from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, token
from tests.e2e.test_policies import mine
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.e2e.test_ui_http import Browserless, make_user
from tests.e2e.test_webhooks import SECRET as HOOK_SECRET
from tests.e2e.test_webhooks import Receiver, eventually

pytestmark = pytest.mark.db

MASK = "********"
MS = "Device.ManagementServer."
CR_PASSWORD = MS + "ConnectionRequestPassword"
PSK = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"
SSID = "Device.WiFi.SSID.1.SSID"

SIM = {
    "cpe_auth": "digest",
    "cpe_username": "cpe",
    "cpe_password": "cpe-pw",
    # the simulator's own connection-request credentials, which the job below replaces
    "connection_request_username": "cr",
    "connection_request_password": "cr-secret",
    "session_timeout_s": 5.0,
    "webhook_poll_s": 0.1,
}


@pytest.fixture(autouse=True)
def _builtin_rule_after() -> Iterator[None]:
    # ACS_SECRET_PARAMETERS is process-wide: later tests in this run must see
    # the built-in rule only
    yield
    secret_rules.use_extra_endings(())


@pytest.fixture
async def clients(db_pool: asyncpg.Pool, unique_serial) -> AsyncIterator[Any]:
    made: list[Client] = []

    async def client(acs: Running, role: str) -> Client:
        c = Client(acs, await token(db_pool, role, unique_serial))
        made.append(c)
        return c

    yield client
    for c in made:
        await c.close()


def assert_hidden(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, f"{s!r} shown in clear"


async def stored_text(pool: asyncpg.Pool, device: str) -> str:
    """Every row the ACS keeps about the device, as text."""
    async with pool.acquire() as conn:
        parts = [
            await conn.fetchval(
                "SELECT tree::text FROM device_parameters WHERE device_id = $1", device
            ),
            await conn.fetchval(
                "SELECT string_agg(args::text || coalesce(result::text, ''), ' ')"
                " FROM tasks WHERE device_id = $1",
                device,
            ),
            await conn.fetchval(
                "SELECT password FROM connection_request_credentials WHERE device_id = $1",
                device,
            ),
            await conn.fetchval(
                "SELECT string_agg(value, ' ') FROM parameter_sources WHERE device_id = $1",
                device,
            ),
        ]
    return " ".join(p or "" for p in parts)


async def test_passwords_a_job_sets_are_masked_for_every_caller_and_still_knock(
    start_acs: StartAcs, clients: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    admin, operator, viewer = [await clients(acs, r) for r in ("admin", "operator", "viewer")]
    fleet = await fleet_of(acs, unique_serial("SEC"))
    serial = next(iter(fleet.devices))
    device = dev_id(fleet, serial)
    new_cr, new_psk = "knock-with-this-0193", "wifi-passphrase-7781"
    try:
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1)
        status, job = await operator.call(
            "POST",
            f"/devices/{device}/tasks?connection_request=true&timeout=20",
            json={
                "name": "setParameterValues",
                "parameterValues": [
                    [MS + "ConnectionRequestUsername", "knocker"],
                    [CR_PASSWORD, new_cr],
                    [PSK, new_psk],
                ],
            },
        )
        assert status == 200 and job["status"] == "done", job
        assert_hidden(json.dumps(job), new_cr, new_psk)
        assert job["args"]["parameterValues"][1] == [CR_PASSWORD, MASK]
        # the clear values reached the CPE
        cpe = fleet.devices[serial]
        assert cpe.tree.value(CR_PASSWORD) == new_cr and cpe.tree.value(PSK) == new_psk

        # the CPE now wants the new credentials: the knock opens the sealed copy
        status, knocked = await operator.call("POST", f"/devices/{device}/connection-request")
        assert status == 200 and knocked["ok"], knocked

        for caller in (viewer, admin):
            status, dev = await caller.call("GET", f"/devices/{device}")
            assert status == 200
            assert dev["parameters"][CR_PASSWORD]["value"] == MASK
            assert dev["parameters"][PSK]["value"] == MASK
            assert dev["parameters"][MS + "ConnectionRequestUsername"]["value"] == "knocker"
            for path in (f"/tasks/{job['id']}", f"/devices/{device}/tasks"):
                status, body = await caller.call("GET", path)
                assert status == 200
                assert_hidden(json.dumps(body), new_cr, new_psk)
            status, page = await caller.call(
                "GET",
                "/devices",
                params={
                    "filter": f'DeviceID.SerialNumber = "{serial}"',
                    "projection": f"{CR_PASSWORD},{PSK}",
                },
            )
            assert status == 200 and page["total"] == 1
            assert page["items"][0]["parameters"][CR_PASSWORD]["value"] == MASK
            assert_hidden(json.dumps(page), new_cr, new_psk)
        # a filter on a password's value is no oracle either
        status, page = await viewer.call(
            "GET", "/devices", params={"filter": f'{CR_PASSWORD} = "{new_cr}"'}
        )
        assert status == 200 and page["total"] == 0
        assert_hidden(await stored_text(db_pool, device), new_cr, new_psk)

        # reading one in clear: admins only, and every read is audited
        path = f"/devices/{device}/secrets/{CR_PASSWORD}"
        for caller in (viewer, operator):
            status, body = await caller.call("GET", path)
            assert status == 403, body
        status, body = await admin.call("GET", path)
        assert status == 200 and body["value"] == new_cr, body
        status, body = await admin.call("GET", f"/devices/{device}/secrets/{PSK}")
        assert status == 200 and body == {
            "device": device,
            "path": PSK,
            "value": new_psk,
            "source": "tree",
        }
        status, body = await admin.call("GET", f"/devices/{device}/secrets/{SSID}")
        assert status == 400 and body["error"]["code"] == "not_a_secret"
        assert body["error"]["errors"][0]["path"] == "path"
        status, body = await admin.call(
            "GET", f"/devices/{device}/secrets/Device.Users.User.1.Password"
        )
        assert status == 404, body  # a secret the ACS holds no value for
        async with db_pool.acquire() as conn:
            audited = await conn.fetch(
                "SELECT actor, status, detail->>'path' AS path FROM audit_log"
                " WHERE action = 'device.secret.read' AND object_id = $1 ORDER BY id",
                device,
            )
        assert [(r["status"], r["path"]) for r in audited] == [
            (200, CR_PASSWORD),
            (200, PSK),
            (400, SSID),
            (404, "Device.Users.User.1.Password"),
        ]
        assert_hidden(json.dumps([dict(r) for r in audited]), new_cr, new_psk)
    finally:
        await fleet.stop()


async def test_the_ui_page_and_csv_never_show_a_secret(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    fleet = await fleet_of(acs, unique_serial("SUI"))
    serial = next(iter(fleet.devices))
    device = dev_id(fleet, serial)
    new_psk = "ui-never-shows-4410"
    operator = Client(acs, await token(db_pool, "operator", unique_serial))
    try:
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1)
        status, job = await operator.call(
            "POST",
            f"/devices/{device}/tasks?connection_request=true&timeout=20",
            json={"name": "setParameterValues", "parameterValues": [[PSK, new_psk]]},
        )
        assert status == 200 and job["status"] == "done", job
        for role in ("viewer", "admin"):
            b = Browserless(acs)
            try:
                assert (await b.login(await make_user(db_pool, unique_serial, role))).status == 303
                prefix = "Device.WiFi.AccessPoint.1.Security."
                status, html = await b.get(f"/ui/devices/{device}?prefix={prefix}")
                assert status == 200 and PSK.rsplit(".", 1)[1] in html
                assert_hidden(html, new_psk)
                assert f'<tr data-path="{PSK}">' in html and MASK in html
                # the edit form asks for a new secret, never offers the mask back as one
                assert f'value="{MASK}"' not in html
                status, html = await b.get(f"/ui/devices/{device}?q={new_psk}")
                # searching the tree by the value finds nothing: no oracle for guesses
                assert status == 200 and f'<tr data-path="{PSK}">' not in html
                status, csv_text = await b.get(
                    "/ui/devices.csv",
                    params={"filter": f'DeviceID.SerialNumber = "{serial}"', "params": PSK},
                )
                assert status == 200 and serial in csv_text
                assert_hidden(csv_text, new_psk)
                assert csv_text.strip().splitlines()[1].endswith(MASK)
            finally:
                await b.close()
    finally:
        await operator.close()
        await fleet.stop()


async def test_the_shipped_connection_request_password_is_sealed_and_knocks(
    start_acs: StartAcs, clients: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    admin, viewer = await clients(acs, "admin"), await clients(acs, "viewer")
    prefix = unique_serial("SCR")
    shipped = copy.deepcopy(DEFAULT_POLICIES[1])
    spec = shipped.pop("spec")
    status, policy = await admin.call(
        "POST",
        "/policies",
        json=shipped | spec | {"name": unique_serial("cr-"), "precondition": mine(prefix)},
    )
    assert status == 201, policy
    fleet = await fleet_of(acs, prefix)
    serial = next(iter(fleet.devices))
    device = dev_id(fleet, serial)
    try:
        cpe = fleet.devices[serial]
        await fleet.wait_for(lambda: cpe.requests_seen["SetParameterValues"] >= 1)
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        derived = cpe.tree.value(CR_PASSWORD)
        assert len(derived) == 20 and derived != "cr-secret"
        for caller in (viewer, admin):
            status, why = await caller.call("GET", f"/devices/{device}/policies")
            assert status == 200
            sources = {s["path"]: s["value"] for s in why["sources"]}
            assert sources[CR_PASSWORD] == MASK
            status, dry = await caller.call(
                "POST", f"/policies/{policy['id']}/dry-run", params={"device": device}
            )
            assert status == 200 and dry["set"] == [], dry  # converged: compared in clear
            for body in (why, dry):
                assert_hidden(json.dumps(body), derived)
        assert_hidden(await stored_text(db_pool, device), derived)
        status, knocked = await admin.call("POST", f"/devices/{device}/connection-request")
        assert status == 200 and knocked["ok"], knocked
        status, body = await admin.call("GET", f"/devices/{device}/secrets/{CR_PASSWORD}")
        assert status == 200 and body["value"] == derived
    finally:
        await fleet.stop()
        await admin.call("DELETE", f"/policies/{policy['id']}")


async def test_operator_declared_secrets_are_masked_in_results_and_webhooks(
    start_acs: StartAcs, clients: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    # SSID is no secret by default; declared one, the CPE's clear answer to a read is
    # masked like a password
    acs = await start_acs(**SIM, secret_parameters="SSID")
    admin, viewer = await clients(acs, "admin"), await clients(acs, "viewer")
    receiver = await Receiver().start()
    fleet = await fleet_of(acs, unique_serial("SWH"))
    serial = next(iter(fleet.devices))
    device = dev_id(fleet, serial)
    try:
        status, hook = await admin.call(
            "POST",
            "/webhooks",
            json={
                "url": receiver.url,
                "events": ["fault.raised", "job.faulted"],
                "secret": HOOK_SECRET,
            },
        )
        assert status == 201, hook
        cpe = fleet.devices[serial]
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        ssid = cpe.tree.value(SSID)
        assert ssid
        status, job = await admin.call(
            "POST",
            f"/devices/{device}/tasks?connection_request=true&timeout=20",
            json={"name": "getParameterValues", "parameterNames": [SSID]},
        )
        assert status == 200 and job["status"] == "done", job
        assert job["result"]["values"][0][:2] == [SSID, MASK]
        for caller in (viewer, admin):
            status, dev = await caller.call("GET", f"/devices/{device}", params={"prefix": SSID})
            assert dev["parameters"][SSID]["value"] == MASK
            status, body = await caller.call("GET", f"/tasks/{job['id']}")
            assert_hidden(json.dumps(body), ssid)
        assert_hidden(await stored_text(db_pool, device), ssid)
        status, body = await admin.call("GET", f"/devices/{device}/secrets/{SSID}")
        assert status == 200 and body["value"] == ssid

        # a CPE that quotes a secret in its fault string: a configuration file with a
        # bad line, which the simulator echoes back in TransferComplete
        psk = "quoted-in-a-fault-5521"
        name = unique_serial("cfg-") + ".txt"
        status, _ = await admin.call(
            "PUT",
            f"/files/{name}",
            data=f"{PSK} {psk}\n".encode(),
            params={"fileType": "3 Vendor Configuration File"},
        )
        assert status == 201
        status, job = await admin.call(
            "POST",
            f"/devices/{device}/tasks?connection_request=true&timeout=20",
            json={"name": "download", "fileName": name},
        )
        assert status in (200, 202), job
        await eventually(lambda: receiver.about("job.faulted", job=job["id"]), 30)
        [raised] = receiver.about("fault.raised", job=job["id"])
        assert raised["data"]["faultCode"] == 9018
        assert PSK in raised["data"]["faultString"]  # the message stays useful...
        for _, body in receiver.requests:
            assert_hidden(body.decode(), psk, ssid)  # ...without the secret
        status, body = await viewer.call("GET", f"/tasks/{job['id']}")
        assert body["status"] == "fault" and PSK in body["fault"]["message"]
        assert_hidden(json.dumps(body), psk)
    finally:
        await fleet.stop()
        async with db_pool.acquire() as conn:
            await conn.execute("DELETE FROM webhooks WHERE url = $1", receiver.url)
        await receiver.stop()


async def test_a_policy_keeps_its_literal_secrets_sealed_masked_and_on_edit(
    start_acs: StartAcs, clients: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    admin, viewer = await clients(acs, "admin"), await clients(acs, "viewer")
    psk = "fleet-wide-passphrase-3390"
    prefix = unique_serial("SPL")
    body = {
        "name": unique_serial("wifi-"),
        "precondition": mine(prefix),
        "parameters": [
            {"path": "WiFi.AccessPoint.1.Security.KeyPassphrase", "value": psk},
            {"path": "ManagementServer.ConnectionRequestPassword", "value": "{secret:cr}"},
            {"path": "WiFi.SSID.1.SSID", "value": "home"},
        ],
    }
    status, made = await admin.call("POST", "/policies", json=body)
    assert status == 201, made
    fleet = None
    try:
        for caller in (viewer, admin):
            for path in (f"/policies/{made['id']}", "/policies"):
                status, shown = await caller.call("GET", path)
                assert status == 200
                assert_hidden(json.dumps(shown), psk)
        status, shown = await viewer.call("GET", f"/policies/{made['id']}")
        values = [p["value"] for p in shown["parameters"]]
        assert values == [MASK, "{secret:cr}", "home"]  # a template hides nothing
        async with db_pool.acquire() as conn:
            stored = await conn.fetchval(
                "SELECT spec::text FROM policies WHERE id = $1", made["id"]
            )
        assert psk not in stored and "acs:sealed:" in stored

        # the policy sent back as read, with another change: the passphrase is kept...
        edited = body | {"parameters": shown["parameters"], "description": "edited"}
        status, changed = await admin.call("PUT", f"/policies/{made['id']}", json=edited)
        assert status == 200 and changed["version"] == 2, changed
        # ...and reaches the devices in clear
        await asyncio.sleep(2.1)  # the policy book reloads within two seconds
        fleet = await fleet_of(acs, prefix)
        serial = next(iter(fleet.devices))
        cpe = fleet.devices[serial]
        await fleet.wait_for(lambda: cpe.tree.value(PSK) == psk)
        assert cpe.tree.value(SSID) == "home"
        assert_hidden(await stored_text(db_pool, dev_id(fleet, serial)), psk)

        # a new policy cannot be given the mask as a value
        fresh = body | {"name": unique_serial("wifi-"), "parameters": shown["parameters"][:1]}
        status, refused = await admin.call("POST", "/policies", json=fresh)
        assert status == 400, refused
        assert refused["error"]["errors"][0]["path"] == "WiFi.AccessPoint.1.Security.KeyPassphrase"
    finally:
        if fleet is not None:
            await fleet.stop()
        await admin.call("DELETE", f"/policies/{made['id']}")


async def test_a_job_cannot_set_a_secret_to_the_mask(
    start_acs: StartAcs, clients: Any, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    operator = await clients(acs, "operator")
    fleet = await fleet_of(acs, unique_serial("SMK"))
    serial = next(iter(fleet.devices))
    device = dev_id(fleet, serial)
    try:
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1)
        values = [[SSID, "home"], [PSK, MASK]]
        status, body = await operator.call(
            "POST",
            f"/devices/{device}/tasks",
            json={"name": "setParameterValues", "parameterValues": values},
        )
        assert status == 400 and body["error"]["code"] == "invalid_task", body
        assert [e["path"] for e in body["error"]["errors"]] == ["parameterValues.1"]
        status, body = await operator.call(
            "POST",
            "/bulk-jobs",
            json={
                "name": unique_serial("mask-"),
                "filter": f'DeviceID.SerialNumber = "{serial}"',
                "task": {"name": "setParameterValues", "parameterValues": values},
            },
        )
        assert status == 400, body
        assert [e["path"] for e in body["error"]["errors"]] == ["task.parameterValues.1"]
        status, tasks = await operator.call("GET", f"/devices/{device}/tasks")
        assert status == 200 and tasks["items"] == []  # nothing half-written
        assert fleet.devices[serial].tree.value(PSK) != MASK
    finally:
        await fleet.stop()


async def test_a_secret_override_reaches_the_cpe_and_is_kept_sealed(
    start_acs: StartAcs, clients: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(**SIM)
    operator, viewer = await clients(acs, "operator"), await clients(acs, "viewer")
    fleet = await fleet_of(acs, unique_serial("SOV"))
    serial = next(iter(fleet.devices))
    device = dev_id(fleet, serial)
    psk = "override-passphrase-8842"
    try:
        cpe = fleet.devices[serial]
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        status, body = await operator.call(
            "PUT", f"/devices/{device}/overrides", json={"parameters": [[PSK, psk]]}
        )
        assert status == 200 and body["parameters"] == [[PSK, MASK, None]], body
        await asyncio.sleep(2.1)  # the policy book notices overrides within two seconds
        before = cpe.sessions_ok
        await fleet.trigger(serial)
        await fleet.wait_for(lambda: cpe.sessions_ok > before and cpe.tree.value(PSK) == psk)
        # converged: compared in clear with the sealed copy, it is not set again
        sets, before = cpe.requests_seen["SetParameterValues"], cpe.sessions_ok
        await fleet.trigger(serial)
        await fleet.wait_for(lambda: cpe.sessions_ok > before)
        assert cpe.requests_seen["SetParameterValues"] == sets
        status, body = await viewer.call("GET", f"/devices/{device}/overrides")
        assert status == 200 and body["parameters"] == [[PSK, MASK, None]]
        assert_hidden(await stored_text(db_pool, device), psk)
        async with db_pool.acquire() as conn:
            kept = await conn.fetchval(
                "SELECT value FROM device_overrides WHERE device_id = $1", device
            )
        assert kept.startswith("acs:sealed:") and psk not in kept
        status, body = await operator.call(
            "PUT", f"/devices/{device}/overrides", json={"parameters": [[PSK, MASK]]}
        )
        assert status == 400 and body["error"]["errors"][0]["path"] == "parameters.0", body
        async with db_pool.acquire() as conn:
            assert kept == await conn.fetchval(
                "SELECT value FROM device_overrides WHERE device_id = $1", device
            )
    finally:
        await fleet.stop()
