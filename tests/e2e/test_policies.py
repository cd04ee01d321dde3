"""Provisioning policies end to end: the API, the real ACS, simulated CPEs.

Policies are fleet-wide and tests share one database, so every policy here is
scoped by a precondition on its own fleet's serial numbers and deleted after.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.core import policies as engine
from acs.cwmp import messages as m
from acs.services.provisioning import DEFAULT_POLICIES
from acs.store import policies as policy_store
from acs.store.ids import device_id
from acs.web.server import Running
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_api import Client, token
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.e2e.test_ui_http import Browserless, make_user

pytestmark = pytest.mark.db


@pytest.fixture
async def pol_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        session_timeout_s=5.0,
        connection_request_username="cr",
        connection_request_password="cr-secret",
    )


class Policies:
    """Creates policies through the API and deletes them when the test ends."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.ids: list[int] = []

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        status, out = await self.client.call("POST", "/policies", json=body)
        assert status == 201, out
        self.ids.append(out["id"])
        return out


@pytest.fixture
async def admin(pol_acs: Running, db_pool: asyncpg.Pool, unique_serial) -> AsyncIterator[Client]:
    client = Client(pol_acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


@pytest.fixture
async def policies(admin: Client) -> AsyncIterator[Policies]:
    book = Policies(admin)
    yield book
    for pid in book.ids:
        await admin.call("DELETE", f"/policies/{pid}")


def mine(prefix: str) -> str:
    return f'DeviceID.SerialNumber LIKE "{prefix}%"'


async def results_of(admin: Client, device: str) -> dict[str, Any]:
    status, body = await admin.call("GET", f"/devices/{device}/policies")
    assert status == 200, body
    return body


async def until(predicate: Any, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


async def test_shipped_bootstrap_policies_configure_a_fleet_with_one_spv_each(
    pol_acs: Running, admin: Client, policies: Policies, db_pool: asyncpg.Pool, unique_serial
) -> None:
    prefix = unique_serial("B")
    for shipped in DEFAULT_POLICIES:  # as shipped, scoped to this test's devices
        body = copy.deepcopy(shipped)
        spec = body.pop("spec")
        await policies.create(
            body | spec | {"name": unique_serial(body["name"] + "-"), "precondition": mine(prefix)}
        )
    fleet = await fleet_of(pol_acs, prefix, 3, periodic_interval=3600)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        times = set()
        for serial, cpe in fleet.devices.items():
            # one SetParameterValues in all: counted over every session, since on a
            # loaded machine the bootstrap session may be cut and tried again
            assert cpe.requests_seen["SetParameterValues"] == 1, cpe.requests_seen
            tree = cpe.tree
            ms = "Device.ManagementServer."
            assert tree.value(ms + "PeriodicInformEnable") in ("1", "true")
            assert tree.value(ms + "PeriodicInformInterval") == "3600"
            times.add(tree.value(ms + "PeriodicInformTime"))
            assert tree.value(ms + "ConnectionRequestUsername") == serial
            password = tree.value(ms + "ConnectionRequestPassword")
            assert len(password) == 20 and password != "cr-secret"
            async with db_pool.acquire() as conn:
                kept = await conn.fetchrow(
                    "SELECT username, password FROM connection_request_credentials"
                    " WHERE device_id = $1",
                    dev_id(fleet, serial),
                )
            # kept for the knock, but sealed: the clear password is nowhere in the database
            assert kept["username"] == serial and kept["password"].startswith("acs:sealed:")
            async with db_pool.acquire() as conn:
                stored = await conn.fetchval(
                    "SELECT tree::text FROM device_parameters WHERE device_id = $1",
                    dev_id(fleet, serial),
                )
                anywhere = await conn.fetchval(
                    "SELECT count(*) FROM parameter_sources WHERE value = $1", password
                )
            assert password not in stored and password not in kept["password"]
            assert anywhere == 0
            status, secret = await admin.call(
                "GET", f"/devices/{dev_id(fleet, serial)}/secrets/{ms}ConnectionRequestPassword"
            )
            assert status == 200 and secret["value"] == password, secret
            # the ACS can knock with the credentials it set
            status, knock = await admin.call(
                "POST", f"/devices/{dev_id(fleet, serial)}/connection-request"
            )
            assert status == 200 and knock["ok"], knock
            why = await results_of(admin, dev_id(fleet, serial))
            assert {s["path"] for s in why["sources"]} >= {
                ms + "PeriodicInformTime",
                ms + "ConnectionRequestPassword",
            }
            shown = {s["path"]: s["value"] for s in why["sources"]}
            assert shown[ms + "ConnectionRequestPassword"] == "********"
            assert all(r["faults"] == [] and r["current"] for r in why["results"])
        assert len(times) > 1  # each device Informs at its own offset
    finally:
        await fleet.stop()


async def test_shipped_policies_reach_devices_that_never_send_bootstrap(
    pol_acs: Running, admin: Client, policies: Policies, unique_serial
) -> None:
    """A fleet moved over from another ACS Informs with 1 BOOT / 2 PERIODIC only:
    its first contact with this ACS still gets the shipped policies, once."""
    moved_prefix, new_prefix = unique_serial("M"), unique_serial("N")
    scope = f"({mine(moved_prefix)} OR {mine(new_prefix)})"
    for shipped in DEFAULT_POLICIES:
        body = copy.deepcopy(shipped)
        spec = body.pop("spec")
        await policies.create(
            body | spec | {"name": unique_serial(body["name"] + "-"), "precondition": scope}
        )
    # Informing every 60 s until the policy says hourly
    moved = await fleet_of(pol_acs, moved_prefix, 2, periodic_interval=60, faults="no-bootstrap")
    fresh = await fleet_of(pol_acs, new_prefix, 1, periodic_interval=60)
    ms = "Device.ManagementServer."
    try:
        everyone = [*moved.devices.values(), *fresh.devices.values()]
        for fleet in (moved, fresh):
            await fleet.wait_for(
                lambda f=fleet: all(
                    c.tree.value(ms + "ConnectionRequestUsername") == c.serial
                    for c in f.devices.values()
                ),
                60,
            )
        for fleet, bootstrapped in ((moved, False), (fresh, True)):
            for serial, cpe in fleet.devices.items():
                assert cpe.tree.value(ms + "PeriodicInformInterval") == "3600"
                assert cpe.tree.value(ms + "PeriodicInformEnable") in ("1", "true")
                logged: list[dict[str, Any]] = []

                async def session_logged(
                    device: str = dev_id(fleet, serial), logged: list[Any] = logged
                ) -> bool:
                    # a session's log is written when it ends, a moment after the CPE's last word
                    status, sessions = await admin.call("GET", f"/devices/{device}/sessions")
                    assert status == 200
                    logged[:] = sessions["items"]
                    return bool(logged)

                await until(session_logged)
                said = {e for s in logged for e in s["events"]}
                assert ("0 BOOTSTRAP" in said) is bootstrapped, said
                why = await results_of(admin, dev_id(fleet, serial))
                assert len(why["results"]) == 2
                assert all(r["faults"] == [] and r["current"] for r in why["results"])

        # first contact only: a bootstrap policy made now waits for a real 0 BOOTSTRAP
        late = await policies.create(
            {
                "name": unique_serial("late-"),
                "precondition": scope,
                "events": ["0 BOOTSTRAP"],
                "parameters": [{"path": "WiFi.SSID.1.SSID", "value": "late"}],
            }
        )
        for fleet in (moved, fresh):  # now Informing hourly, as the policy said: knock
            for serial in fleet.devices:
                for _ in range(2):
                    await fleet.trigger(serial)
        assert all(c.tree.value("Device.WiFi.SSID.1.SSID") != "late" for c in everyone)
        for cpe in everyone:
            assert cpe.requests_seen["SetParameterValues"] == 1, cpe.requests_seen
        await admin.call("DELETE", f"/policies/{late['id']}")
    finally:
        await moved.stop()
        await fresh.stop()


async def test_a_changed_policy_reaches_devices_at_their_next_periodic_session(
    pol_acs: Running, admin: Client, policies: Policies, unique_serial
) -> None:
    prefix = unique_serial("C")
    body = {
        "name": unique_serial("ssid-"),
        "precondition": mine(prefix),
        "parameters": [{"path": "WiFi.SSID.1.SSID", "value": "ssid-{DeviceID.SerialNumber[-4:]}"}],
    }
    policy = await policies.create(body)
    fleet = await fleet_of(pol_acs, prefix, 2, periodic_interval=1)
    try:
        cpes = list(fleet.devices.values())
        ssid = "Device.WiFi.SSID.1.SSID"
        await fleet.wait_for(
            lambda: all(c.tree.value(ssid) == f"ssid-{c.serial[-4:]}" for c in cpes), 30
        )
        body["parameters"][0]["value"] = "net-{DeviceID.SerialNumber[-4:]}"
        status, changed = await admin.call("PUT", f"/policies/{policy['id']}", json=body)
        assert status == 200 and changed["version"] == 2
        await fleet.wait_for(
            lambda: all(c.tree.value(ssid) == f"net-{c.serial[-4:]}" for c in cpes), 30
        )
        for cpe in cpes:

            async def current(serial: str = cpe.serial) -> bool:
                # the outcome is recorded when the session's policy work ends,
                # a moment after the CPE took the values
                result = (await results_of(admin, dev_id(fleet, serial)))["results"]
                return [(r["version"], r["current"]) for r in result] == [(2, True)]

            await until(current)
            # no boot, no bootstrap: the periodic Inform carried the change
            status, device = await admin.call("GET", f"/devices/{dev_id(fleet, cpe.serial)}")
            assert device["lastEvents"] == ["2 PERIODIC"]
    finally:
        await fleet.stop()


async def test_looping_policy_is_stopped_with_a_fault(
    pol_acs: Running, admin: Client, policies: Policies, unique_serial
) -> None:
    prefix = unique_serial("L")
    policy = await policies.create(
        {
            "name": unique_serial("loop-"),
            "precondition": mine(prefix),
            # each value is built from the other: it can never settle
            "parameters": [
                {"path": "WiFi.SSID.1.SSID", "value": "{WiFi.SSID.2.SSID}a"},
                {"path": "WiFi.SSID.2.SSID", "value": "{WiFi.SSID.1.SSID}b"},
            ],
        }
    )
    fleet = await fleet_of(pol_acs, prefix, 1, periodic_interval=3600)
    try:
        cpe = next(iter(fleet.devices.values()))
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        assert cpe.last_session.requests.count("SetParameterValues") == 3  # bounded rounds
        result = (await results_of(admin, dev_id(fleet, cpe.serial)))["results"][0]
        assert result["policy"] == policy["id"]
        assert any(
            "does not converge" in f["reason"] and policy["name"] in f["reason"]
            for f in result["faults"]
        ), result
    finally:
        await fleet.stop()


async def test_missing_parameter_conflicts_objects_and_overrides(
    pol_acs: Running, admin: Client, policies: Policies, unique_serial
) -> None:
    prefix = unique_serial("M")
    flt = mine(prefix)
    high = await policies.create(
        {
            "name": unique_serial("high-"),
            "precondition": flt,
            "priority": 10,
            "parameters": [
                {"path": "WiFi.SSID.1.SSID", "value": "high"},
                {"path": "Device.No.Such.Parameter", "value": "1"},
            ],
            "objects": [
                {
                    "path": "NAT.PortMapping.",
                    "keys": {"Description": "ssh"},
                    "parameters": {"ExternalPort": "2222", "InternalPort": "22"},
                }
            ],
            "tags": {"add": ["provisioned"]},
        }
    )
    low = await policies.create(
        {
            "name": unique_serial("low-"),
            "precondition": flt,
            "priority": 1,
            "parameters": [
                {"path": "WiFi.SSID.1.SSID", "value": "low"},
                {"path": "WiFi.SSID.2.SSID", "value": "second"},
            ],
        }
    )
    fleet = await fleet_of(pol_acs, prefix, 2, periodic_interval=3600)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()))
        a, b = sorted(fleet.devices)
        cpe = fleet.devices[a]
        # the higher priority wins; the lower one's other value still applies
        assert cpe.tree.value("Device.WiFi.SSID.1.SSID") == "high"
        assert cpe.tree.value("Device.WiFi.SSID.2.SSID") == "second"
        mappings = [
            i.name
            for i in cpe.tree.get_parameter_names("Device.NAT.PortMapping.", False)
            if i.name.endswith(".Description")
        ]
        assert [cpe.tree.value(p) for p in mappings] == ["ssh"]
        instance = mappings[0].rsplit(".", 1)[0]
        assert cpe.tree.value(instance + ".ExternalPort") == "2222"
        why = await results_of(admin, dev_id(fleet, a))
        by_id = {r["policy"]: r for r in why["results"]}
        faults = by_id[high["id"]]["faults"]
        assert [f["path"] for f in faults] == ["Device.No.Such.Parameter"]
        assert "has no parameter" in faults[0]["reason"]
        lost = by_id[low["id"]]["conflicts"]
        assert lost and lost[0]["winner"] == high["id"] and lost[0]["wanted"] == "low"
        sources = {s["path"]: s["policyName"] for s in why["sources"]}
        assert sources["Device.WiFi.SSID.1.SSID"] == high["name"]
        status, device = await admin.call("GET", f"/devices/{dev_id(fleet, a)}")
        assert "provisioned" in device["tags"]

        # the next session adds nothing: the instance with the keys exists
        await fleet.trigger(a)
        assert "AddObject" not in cpe.last_session.requests
        assert "SetParameterValues" not in cpe.last_session.requests

        # a per-device override sits above every policy
        status, _ = await admin.call(
            "PUT",
            f"/devices/{dev_id(fleet, b)}/overrides",
            json={"parameters": [["Device.WiFi.SSID.1.SSID", "mine {not a template}"]]},
        )
        assert status == 200
        await asyncio.sleep(2.1)  # the policy book reloads within two seconds
        await fleet.trigger(b)
        assert fleet.devices[b].tree.value("Device.WiFi.SSID.1.SSID") == "mine {not a template}"
        sources = {s["path"]: s for s in (await results_of(admin, dev_id(fleet, b)))["sources"]}
        assert sources["Device.WiFi.SSID.1.SSID"]["policy"] is None
    finally:
        await fleet.stop()


async def test_dry_run_and_bad_policies(
    pol_acs: Running, admin: Client, policies: Policies, unique_serial
) -> None:
    prefix = unique_serial("D")
    fleet = await fleet_of(pol_acs, prefix, 1, periodic_interval=3600)
    try:
        serial = next(iter(fleet.devices))
        await fleet.wait_for(lambda: fleet.devices[serial].sessions_ok >= 1)
        policy = await policies.create(
            {
                "name": unique_serial("dry-"),
                "enabled": False,
                "precondition": mine(prefix),
                "parameters": [
                    {"path": "WiFi.SSID.1.SSID", "value": "x-{DeviceID.SerialNumber}"},
                    {"path": "ManagementServer.PeriodicInformInterval", "value": 3600},
                ],
                "objects": [{"path": "NAT.PortMapping.", "count": 2}],
            }
        )
        status, dry = await admin.call(
            "POST", f"/policies/{policy['id']}/dry-run?device={dev_id(fleet, serial)}"
        )
        assert status == 200, dry
        assert dry["matches"] is True
        assert {c["path"]: c["to"] for c in dry["set"]} == {
            "Device.WiFi.SSID.1.SSID": f"x-{serial}"
        }  # the interval already is 3600: nothing to change there
        assert dry["add"] == ["Device.NAT.PortMapping.", "Device.NAT.PortMapping."]
        # nothing was sent: the policy is disabled and dry runs touch no device
        assert fleet.devices[serial].tree.value("Device.WiFi.SSID.1.SSID") != f"x-{serial}"
        status, _ = await admin.call(
            "POST", f"/policies/{policy['id']}/dry-run?device=no-such-device"
        )
        assert status == 404
    finally:
        await fleet.stop()

    async def refused(body: dict[str, Any]) -> dict[str, Any]:
        status, out = await admin.call("POST", "/policies", json={"name": "bad"} | body)
        assert status == 400, out
        return out["error"]["errors"][0]

    err = await refused({"parameters": [{"path": "WiFi.SSID.1.SSID", "value": "a-{x"}]})
    assert err["path"] == "parameters.0.value" and "never closed" in err["message"]
    err = await refused({"parameters": [{"path": "X", "value": "{nope:1}"}]})
    assert "unknown function" in err["message"]
    err = await refused({"events": ["bootstrap"]})
    assert err["path"] == "events"
    err = await refused({"objects": [{"path": "NAT.PortMapping.", "count": 1, "keys": {}}]})
    assert "exactly one of count or keys" in err["message"]
    err = await refused({"precondition": "DeviceID.OUI ="})
    assert err["path"] == "precondition"


async def test_policies_that_would_break_sessions_are_refused_when_written(
    admin: Client, policies: Policies, unique_serial
) -> None:
    """Issue 15: each of these was accepted with 201, and every matching
    device's session then ended in HTTP 500 with its lock held."""

    async def refused(body: dict[str, Any]) -> list[dict[str, Any]]:
        status, out = await admin.call(
            "POST", "/policies", json={"name": unique_serial("bad-")} | body
        )
        assert status == 400, out
        return out["error"]["errors"]

    err = (await refused({"tags": {"add": [""]}}))[0]
    assert err["path"] == "tags.add.0" and "1-64 letters" in err["message"]
    err = (await refused({"tags": {"remove": ["has space"]}}))[0]
    assert err["path"] == "tags.remove.0" and "'has space'" in err["message"]
    err = (await refused({"precondition": 'DeviceID.Manufacturer LIKE "\\\\"'}))[0]
    assert err["path"] == "precondition" and "lone backslash" in err["message"]
    # the same filter compiler guards every other place a filter is written
    like = 'DeviceID.Manufacturer LIKE "\\\\"'
    status, out = await admin.call("GET", "/devices", params={"filter": like})
    assert status == 400 and "lone backslash" in out["error"]["message"], out
    status, out = await admin.call(
        "POST",
        "/bulk-jobs?dryRun=true",
        json={"name": "b", "task": {"name": "reboot"}, "filter": like},
    )
    assert status == 400 and out["error"]["errors"][0]["path"] == "filter", out
    status, out = await admin.call(
        "POST", "/campaigns", json={"name": "c", "filter": like, "stages": [{"size": "100%"}]}
    )
    assert status == 400, out
    assert any(
        e["path"] == "filter" and "lone backslash" in e["message"] for e in out["error"]["errors"]
    ), out
    # values are checked against the data model's type, range and size
    err = (
        await refused(
            {"parameters": [{"path": "ManagementServer.PeriodicInformInterval", "value": "abc"}]}
        )
    )[0]
    assert err["path"] == "parameters.0.value" and "xsd:unsignedInt" in err["message"]
    err = (await refused({"parameters": [{"path": "WiFi.SSID.1.SSID", "value": "s" * 33}]}))[0]
    assert err["path"] == "parameters.0.value" and "at most 32 characters" in err["message"]
    err = (
        await refused(
            {"objects": [{"path": "NAT.PortMapping.", "keys": {"ExternalPort": "65536"}}]}
        )
    )[0]
    assert err["path"] == "objects.0.keys.ExternalPort" and "0 to 65535" in err["message"]
    # and a policy's PUT is checked the same way
    good = await policies.create(
        {"name": unique_serial("good-"), "tags": {"add": ["fine"]}, "enabled": False}
    )
    status, out = await admin.call(
        "PUT",
        f"/policies/{good['id']}",
        json={"name": good["name"], "enabled": False, "tags": {"add": ["not fine"]}},
    )
    assert status == 400 and out["error"]["errors"][0]["path"] == "tags.add.0", out


async def test_a_policy_bad_at_run_time_is_its_own_fault_and_the_session_goes_on(
    pol_acs: Running, admin: Client, policies: Policies, db_pool: asyncpg.Pool, unique_serial
) -> None:
    """Policies written to the table behind the API's back (or before a rule got
    stricter) and a template whose value does not fit on the device: each is
    that policy's fault on the device; the session applies the rest."""
    prefix = unique_serial("T")
    flt = mine(prefix)
    bad_rows = [
        {"name": unique_serial("empty-tag-"), "precondition": flt, "spec": {"tags": {"add": [""]}}},
        {
            "name": unique_serial("bad-like-"),
            "precondition": 'DeviceID.Manufacturer LIKE "\\\\"',
            "spec": {"parameters": [{"path": "WiFi.SSID.2.SSID", "value": "never"}]},
        },
        {"name": unique_serial("no-path-"), "precondition": flt, "spec": {"parameters": [{}]}},
    ]
    ids = []
    async with db_pool.acquire() as conn:
        for row in bad_rows:
            ids.append((await policy_store.create(conn, row, "test")).id)
    try:
        odd = await policies.create(
            {
                "name": unique_serial("odd-type-"),
                "precondition": flt,
                # a serial number is no xsd:unsignedInt: known only once rendered
                "parameters": [
                    {
                        "path": "ManagementServer.PeriodicInformInterval",
                        "value": "{DeviceID.SerialNumber}",
                    }
                ],
            }
        )
        good = await policies.create(
            {
                "name": unique_serial("good-"),
                "precondition": flt,
                "parameters": [
                    {"path": "WiFi.SSID.1.SSID", "value": "ok-{DeviceID.SerialNumber[-4:]}"}
                ],
                "tags": {"add": ["checked"]},
            }
        )
        fleet = await fleet_of(pol_acs, prefix, 1, periodic_interval=3600)
        try:
            serial, cpe = next(iter(fleet.devices.items()))
            await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
            assert cpe.sessions_failed == 0
            assert cpe.tree.value("Device.WiFi.SSID.1.SSID") == f"ok-{serial[-4:]}"
            assert cpe.tree.value("Device.WiFi.SSID.2.SSID") != "never"
            interval = cpe.tree.value("Device.ManagementServer.PeriodicInformInterval")
            assert interval == "3600"  # the serial number never reached the CPE
            device = dev_id(fleet, serial)

            async def recorded() -> bool:
                got = {r["policy"] for r in (await results_of(admin, device))["results"]}
                return {good["id"], odd["id"], ids[0], ids[2]} <= got

            await until(recorded)
            by_id = {r["policy"]: r for r in (await results_of(admin, device))["results"]}
            assert by_id[good["id"]]["faults"] == [] and by_id[good["id"]]["changes"] == 1
            [fault] = by_id[odd["id"]]["faults"]
            assert fault["path"] == "Device.ManagementServer.PeriodicInformInterval"
            assert "not sent" in fault["reason"] and "xsd:unsignedInt" in fault["reason"]
            [fault] = by_id[ids[0]]["faults"]
            assert "cannot be used" in fault["reason"] and "tags.add.0" in fault["reason"]
            [fault] = by_id[ids[2]]["faults"]
            assert "parameters.0.path" in fault["reason"]
            assert ids[1] not in by_id  # its precondition matches no device
            status, dev = await admin.call("GET", f"/devices/{device}")
            assert status == 200 and "checked" in dev["tags"] and "" not in dev["tags"]
            # and on the device's page of the web UI
            person = Browserless(pol_acs)
            try:
                assert (
                    await person.login(await make_user(db_pool, unique_serial, "viewer"))
                ).status == 303
                status, page = await person.get(f"/ui/devices/{device}")
            finally:
                await person.close()
            assert status == 200 and odd["name"] in page
            assert "not sent: Device.ManagementServer.PeriodicInformInterval: must be an" in page
            assert "the stored policy cannot be used" in page
            # a dry run of a stored policy the compiler refuses says why, not 500
            status, out = await admin.call("POST", f"/policies/{ids[0]}/dry-run?device={device}")
            assert status == 409 and out["error"]["errors"][0]["path"] == "tags.add.0", out
            # overrides are literal values, checked like a job's
            status, out = await admin.call(
                "PUT",
                f"/devices/{device}/overrides",
                json={"parameters": [["ManagementServer.PeriodicInformInterval", "abc"]]},
            )
            assert status == 400 and out["error"]["errors"][0]["path"] == "parameters.0.1", out
            # the next session is just as healthy: no lock left behind
            await fleet.trigger(serial)
            assert cpe.sessions_failed == 0 and cpe.last_session.ok
        finally:
            await fleet.stop()
    finally:
        async with db_pool.acquire() as conn:
            for pid in ids:
                await policy_store.delete(conn, pid)


async def test_the_session_survives_a_policy_plan_that_breaks(
    pol_acs: Running,
    admin: Client,
    policies: Policies,
    unique_serial,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last guard: whatever slips past the compiler and breaks the engine
    faults the policies, and the session ends as the CPE expects."""
    prefix = unique_serial("G")
    policy = await policies.create(
        {
            "name": unique_serial("guarded-"),
            "precondition": mine(prefix),
            "parameters": [{"path": "WiFi.SSID.1.SSID", "value": "never-set"}],
        }
    )

    def broken(*_args: Any, **_kw: Any) -> Any:
        yield m.GetParameterValues(parameter_names=["Device.WiFi.SSID.1.SSID"])
        raise KeyError("an engine bug that operator data triggered")

    # the engine is pure, so the only way to break it here is to replace it
    monkeypatch.setattr(engine, "provision", broken)
    fleet = await fleet_of(pol_acs, prefix, 1, periodic_interval=3600)
    try:
        serial, cpe = next(iter(fleet.devices.items()))
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1)
        assert cpe.sessions_failed == 0
        assert cpe.tree.value("Device.WiFi.SSID.1.SSID") != "never-set"
        device = dev_id(fleet, serial)

        async def recorded() -> bool:
            return bool((await results_of(admin, device))["results"])

        await until(recorded)
        [result] = (await results_of(admin, device))["results"]
        assert result["policy"] == policy["id"]
        [fault] = result["faults"]
        assert fault["reason"].startswith("8002 internal error applying the policies: KeyError")
        # and the next session is as healthy: no lock was left behind
        await fleet.trigger(serial)
        assert cpe.last_session.ok and cpe.sessions_failed == 0
    finally:
        await fleet.stop()


async def test_a_bootstrap_cut_before_its_policies_answered_gets_them_next_session(
    pol_acs: Running, policies: Policies, db_pool: asyncpg.Pool, unique_serial
) -> None:
    """The CPE applied the credentials policy's SetParameterValues and lost power before
    its answer reached the ACS. Its 0 BOOTSTRAP was acknowledged (InformResponse), so it
    never sends it again; the next session, a periodic one, must still get the bootstrap
    policies, or the ACS never learns the credentials it needs to knock."""
    prefix = unique_serial("CUT")
    shipped = next(p for p in DEFAULT_POLICIES if p["name"] == "connection-request-credentials")
    body = copy.deepcopy(shipped)
    spec = body.pop("spec")
    await policies.create(
        body | spec | {"name": unique_serial("cr-creds-"), "precondition": mine(prefix)}
    )
    serial = prefix + "1"
    cpe = CpeDouble(cwmp_url(pol_acs), serial, digest=("cpe", "cpe-pw"))
    dev = device_id(cpe.identity.oui, cpe.identity.product_class, serial)
    ms = "Device.ManagementServer."
    try:
        reply = await cpe.post(cpe.inform_message(["0 BOOTSTRAP", "1 BOOT"]))
        assert isinstance(reply.message, m.InformResponse), reply.body[:300]
        reply = await cpe.post(None)
        while not isinstance(reply.message, m.SetParameterValues):  # the discovery
            assert reply.status == 200 and reply.message is not None, reply.body[:300]
            reply = await cpe.post(
                cpe.answer(reply.message),
                cwmp_id=reply.envelope.cwmp_id if reply.envelope else None,
            )
        cpe.answer(reply.message)  # applied on the CPE; then the power went
        assert cpe.tree.value(ms + "ConnectionRequestUsername") == serial
        await cpe.http.close()
        cpe.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            middlewares=(aiohttp.DigestAuthMiddleware("cpe", "cpe-pw"),),
        )
        async with db_pool.acquire() as conn:
            kept = await conn.fetchval(
                "SELECT username FROM connection_request_credentials WHERE device_id = $1", dev
            )
        assert kept is None  # the ACS never heard the answer

        # back with a new Inform, a periodic one: the old session is superseded
        seen = await cpe.session(["2 PERIODIC"])
        spvs = [r for r in seen if isinstance(r, m.SetParameterValues)]
        assert len(spvs) == 1, seen
        assert {v.name for v in spvs[0].parameter_list} >= {ms + "ConnectionRequestUsername"}
        async with db_pool.acquire() as conn:
            kept = await conn.fetchval(
                "SELECT username FROM connection_request_credentials WHERE device_id = $1", dev
            )
            owed = await conn.fetchval(
                "SELECT bootstrap_owed FROM device_sessions WHERE device_id = $1", dev
            )
        assert kept == serial and owed is False

        # settled: the session after is an ordinary periodic one, nothing set again
        seen = await cpe.session(["2 PERIODIC"])
        assert not any(isinstance(r, m.SetParameterValues) for r in seen), seen
    finally:
        await cpe.close()
