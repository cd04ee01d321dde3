"""Values checked against their parameter's type before they reach a CPE, end to
end: the API refuses a bad job or bulk job with the parameter and the rule; a
bad job that got into the queue anyway is faulted by the session, never sent.

Issue 15: a setParameterValues of PeriodicInformInterval = "abc" was queued
and sent as xsd:unsignedInt; a real CPE stored it, read it back as 0 and
stopped its periodic Informs while the job reported done.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.store import devices, tasks
from acs.web.server import Running
from cpe_simulator.fleet import Fleet
from tests.e2e.test_api import Client, token
from tests.e2e.test_simulator_fleet import dev_id, fleet_of, queue_and_run, sim_acs  # noqa: F401

pytestmark = pytest.mark.db

MS = "Device.ManagementServer."


@pytest.fixture
async def admin(sim_acs: Running, db_pool: asyncpg.Pool, unique_serial) -> AsyncIterator[Client]:  # noqa: F811
    client = Client(sim_acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


@pytest.fixture
async def fleet(sim_acs: Running, unique_serial) -> AsyncIterator[Fleet]:  # noqa: F811
    one = await fleet_of(sim_acs, unique_serial("V"), 1, periodic_interval=3600)
    cpe = next(iter(one.devices.values()))
    await one.wait_for(lambda: cpe.sessions_ok >= 1)
    yield one
    await one.stop()


async def _job(admin: Client, device: str, body: dict[str, Any], query: str = "") -> Any:
    return await admin.call("POST", f"/devices/{device}/tasks{query}", json=body)


def _spv(*values: list[Any]) -> dict[str, Any]:
    return {"name": "setParameterValues", "parameterValues": list(values)}


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        (MS + "PeriodicInformInterval", "abc", "must be an xsd:unsignedInt"),
        (MS + "PeriodicInformInterval", "0", "must be at least 1"),
        (MS + "PeriodicInformInterval", -5, "must be an xsd:unsignedInt"),
        (MS + "PeriodicInformEnable", "yes", "must be an xsd:boolean"),
        (MS + "PeriodicInformTime", "2026-02-30T00:00:00Z", "must be an xsd:dateTime"),
        ("Device.WiFi.SSID.1.SSID", "s" * 33, "must be at most 32 characters long"),
        ("Device.Ethernet.Interface.1.DuplexMode", "Quarter", "must be one of 'Auto', 'Full'"),
    ],
)
async def test_a_bad_value_is_refused_when_queued(
    admin: Client, fleet: Fleet, db_pool: asyncpg.Pool, path: str, value: Any, words: str
) -> None:
    device = dev_id(fleet, next(iter(fleet.devices)))
    status, out = await _job(admin, device, _spv([path, value]))
    assert status == 400, out
    assert out["error"]["code"] == "invalid_task"
    [err] = out["error"]["errors"]
    assert err["path"] == "parameterValues.0.1"
    assert err["message"].startswith(path + ": ") and words in err["message"]
    async with db_pool.acquire() as conn:
        queued = await tasks.list_tasks(conn, device)
    assert [t.name for t in queued if t.name == "setParameterValues"] == []


async def test_good_values_are_queued_and_sent_by_the_parameters_type(
    admin: Client, fleet: Fleet
) -> None:
    serial, cpe = next(iter(fleet.devices.items()))
    device = dev_id(fleet, serial)
    before = cpe.sessions_ok
    status, out = await _job(
        admin,
        device,
        _spv(
            [MS + "PeriodicInformInterval", 1800],
            [MS + "PeriodicInformEnable", True],
            [MS + "PeriodicInformTime", "2026-01-31T08:00:00Z"],
            ["Device.WiFi.SSID.1.SSID", "s" * 32],
            ["Device.Ethernet.Interface.1.DuplexMode", "Full"],
        ),
        "?connection_request=true&timeout=30",
    )
    assert status == 200 and out["status"] == "done", out
    assert cpe.tree.value(MS + "PeriodicInformInterval") == "1800"
    assert cpe.tree.value("Device.WiFi.SSID.1.SSID") == "s" * 32
    # the job is done at the SetParameterValuesResponse; the session goes on after it
    await fleet.wait_for(lambda: cpe.sessions_ok > before)
    sent = cpe.last_session.requests
    assert "SetParameterValues" in sent


async def test_the_devices_own_type_is_checked(
    admin: Client, fleet: Fleet, db_pool: asyncpg.Pool
) -> None:
    device = dev_id(fleet, next(iter(fleet.devices)))
    # a vendor parameter the model does not know: only the device's tree types it
    async with db_pool.acquire() as conn:
        await devices.merge_parameter_values(
            conn,
            device,
            [m.ParameterValueStruct("Device.X_ACME_Level", "3", "xsd:int")],
            datetime.now(UTC),
            read=True,
        )
    status, out = await _job(admin, device, _spv(["Device.X_ACME_Level", "high"]))
    assert status == 400, out
    assert "Device.X_ACME_Level: must be an xsd:int" in out["error"]["errors"][0]["message"]
    status, out = await _job(admin, device, _spv(["Device.X_ACME_Level", "-7"]))
    assert status == 201, out


async def test_add_object_values_and_bulk_jobs_are_checked(admin: Client, fleet: Fleet) -> None:
    device = dev_id(fleet, next(iter(fleet.devices)))
    status, out = await _job(
        admin,
        device,
        {
            "name": "addObject",
            "objectName": "Device.NAT.PortMapping.",
            "parameterValues": [["InternalPort", "22"], ["ExternalPort", "70000"]],
        },
    )
    assert status == 400, out
    [err] = out["error"]["errors"]
    assert err["path"] == "parameterValues.1.1" and "0 to 65535" in err["message"]
    bulk = {
        "name": "bad interval",
        "filter": f'DeviceID.SerialNumber = "{next(iter(fleet.devices))}"',
        "task": _spv([MS + "PeriodicInformInterval", "abc"]),
    }
    status, out = await admin.call("POST", "/bulk-jobs?dryRun=true", json=bulk)
    assert status == 400, out
    [err] = out["error"]["errors"]
    assert err["path"] == "task.parameterValues.0.1" and "xsd:unsignedInt" in err["message"]
    bulk["task"] = _spv([MS + "PeriodicInformInterval", "900"])
    status, out = await admin.call("POST", "/bulk-jobs?dryRun=true", json=bulk)
    assert status == 200 and out["devices"] == 1, out


async def test_a_bad_job_already_queued_is_faulted_by_the_session_and_never_sent(
    fleet: Fleet, db_pool: asyncpg.Pool
) -> None:
    """Queued behind the API's back (or before this rule): the session checks again."""
    serial, cpe = next(iter(fleet.devices.items()))
    before = cpe.requests_seen["SetParameterValues"]
    done = await queue_and_run(
        db_pool,
        fleet,
        serial,
        "setParameterValues",
        {"parameterValues": [[MS + "PeriodicInformInterval", "abc", "xsd:unsignedInt"]]},
    )
    assert done.status == "fault"
    assert done.fault_code == 9006
    assert "PeriodicInformInterval: must be an xsd:unsignedInt" in (done.fault_string or "")
    assert cpe.requests_seen["SetParameterValues"] == before
    assert cpe.tree.value(MS + "PeriodicInformInterval") == "3600"
    assert cpe.sessions_failed == 0 and cpe.last_session.ok
