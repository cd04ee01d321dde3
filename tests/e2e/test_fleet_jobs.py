"""Jobs across the fleet through the API: search, groups, open faults, bulk actions.

Faults come from simulated CPEs refusing real SetParameterValues, so the 9003
wrappers and their per-parameter causes are the CPE's own.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from acs.store import tasks
from acs.web.server import Running
from tests.e2e.test_api import Client, token
from tests.e2e.test_simulator_fleet import dev_id, fleet_of, queue_and_run, sim_acs  # noqa: F401

pytestmark = pytest.mark.db

READ_ONLY = {"parameterValues": [["Device.DeviceInfo.SoftwareVersion", "9.9"]]}
UNKNOWN = {"parameterValues": [["Device.NoSuch.Thing", "x"]]}


@pytest.fixture
async def clients(sim_acs: Running, db_pool: asyncpg.Pool, unique_serial) -> Any:  # noqa: F811
    made = {
        r: Client(sim_acs, await token(db_pool, r, unique_serial)) for r in ("operator", "viewer")
    }
    yield made
    for c in made.values():
        await c.close()


async def test_fleet_faults_are_found_grouped_retried_and_dismissed(
    sim_acs: Running,  # noqa: F811
    clients: dict[str, Client],
    db_pool: asyncpg.Pool,
    unique_serial,
) -> None:
    op, viewer = clients["operator"], clients["viewer"]
    klass = unique_serial("PC")
    fleet = await fleet_of(sim_acs, unique_serial("F"), 3, product_class=klass)
    try:
        serials = sorted(fleet.devices)
        await fleet.wait_for(lambda: all(c.sessions_ok >= 1 for c in fleet.devices.values()), 60)
        for s in serials[:2]:
            job = await queue_and_run(db_pool, fleet, s, "setParameterValues", READ_ONLY)
            assert job.status == "fault" and job.fault_code == 9003
        ok = await queue_and_run(
            db_pool,
            fleet,
            serials[2],
            "getParameterValues",
            {"parameterNames": ["Device.DeviceInfo.SoftwareVersion"]},
        )
        assert ok.status == "done"
        in_class = f'DeviceID.ProductClass = "{klass}"'

        # search: by status within the fleet, with counts per status
        status, page = await viewer.call(
            "GET", "/tasks", params={"filter": in_class, "status": "fault"}
        )
        assert status == 200, page
        assert page["total"] == 2 and len(page["items"]) == 2
        assert page["counts"]["fault"] == 2 and page["counts"]["done"] >= 1
        fault = page["items"][0]["fault"]
        # the 9003 names the parameter and its own fault, in words
        assert fault["code"] == 9003
        assert "Device.DeviceInfo.SoftwareVersion: 9008" in fault["cause"], fault
        # the per-parameter code selects the wrapping 9003s too
        status, by_inner = await viewer.call(
            "GET", "/tasks", params={"filter": in_class, "faultCode": "9008"}
        )
        assert status == 200 and by_inner["total"] == 2
        # paging newest first
        status, first = await viewer.call(
            "GET", "/tasks", params={"filter": in_class, "limit": "1"}
        )
        status, second = await viewer.call(
            "GET",
            "/tasks",
            params={"filter": in_class, "limit": "1", "cursor": str(first["nextCursor"])},
        )
        assert first["items"][0]["id"] > second["items"][0]["id"]

        # groups: by fault code and product class, with the common cause
        status, groups = await viewer.call(
            "GET",
            "/tasks/groups",
            params={"filter": in_class, "by": "faultCode,productClass", "status": "fault"},
        )
        assert status == 200, groups
        [group] = groups["groups"]
        assert group["key"] == {"faultCode": "9003", "productClass": klass}
        assert group["count"] == 2 and group["devices"] == 2
        assert group["causes"][0]["parameter"] == "Device.DeviceInfo.SoftwareVersion"
        assert group["causes"][0]["faultCode"] == 9008 and group["causes"][0]["count"] == 2

        # the Faults page's list: open faults of the class
        status, faults = await viewer.call("GET", "/faults", params={"filter": in_class})
        assert status == 200 and faults["total"] == 2
        [fg] = faults["groups"]
        assert fg["faultCode"] == 9003 and fg["productClass"] == klass and "9008" in fg["cause"]

        # viewers may not act; an empty selection is refused with a reason
        status, _ = await viewer.call("POST", "/tasks/retry", json={"filter": in_class})
        assert status == 403
        status, body = await op.call("POST", "/tasks/retry", json={})
        assert status == 400 and "select jobs" in str(body)

        # dismiss one device's fault: it leaves the open list, the job keeps its fault
        one = dev_id(fleet, serials[0])
        status, body = await op.call("POST", "/faults/dismiss", json={"device": one})
        assert status == 200 and body == {"matched": 1, "action": "dismissed"}
        status, faults = await viewer.call("GET", "/faults", params={"filter": in_class})
        assert faults["total"] == 1
        async with db_pool.acquire() as conn:
            [dismissed] = [t for t in await tasks.list_tasks(conn, one) if t.fault_code == 9003]
        assert dismissed.status == "fault"

        # retry the whole group: both faulted jobs go back to pending and run again
        status, body = await op.call(
            "POST", "/tasks/retry", json={"filter": in_class, "faultCode": 9003}
        )
        assert status == 200 and body["matched"] == 2
        status, page = await viewer.call(
            "GET", "/tasks", params={"filter": in_class, "status": "pending"}
        )
        assert page["total"] == 2
        # and cancel them by id before they run
        ids = [t["id"] for t in page["items"]]
        status, body = await op.call("POST", "/tasks/cancel", json={"ids": ids})
        assert status == 200 and body["matched"] == 2
        status, page = await viewer.call(
            "GET", "/tasks", params={"filter": in_class, "status": "pending"}
        )
        assert page["total"] == 0
        status, faults = await viewer.call("GET", "/faults", params={"filter": in_class})
        assert faults["total"] == 0
    finally:
        await fleet.stop()


async def test_fleet_job_queries_refuse_bad_input_with_reasons(
    clients: dict[str, Client],
) -> None:
    viewer, op = clients["viewer"], clients["operator"]
    for params, word in (
        ({"status": "bogus"}, "unknown status"),
        ({"filter": 'DeviceID.ProductClass = "x'}, "filter"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"faultCode": "-1"}, "faultCode"),
    ):
        status, body = await viewer.call("GET", "/tasks", params=params)
        assert status == 400 and word in str(body), (params, body)
    status, body = await viewer.call("GET", "/tasks/groups", params={"by": "faultCode,faultCode"})
    assert status == 400 and "different" in str(body)
    status, body = await viewer.call("GET", "/tasks/groups", params={"by": "colour"})
    assert status == 400 and "group key" in str(body)
    status, body = await op.call("POST", "/tasks/cancel", json={"ids": [0]})
    assert status == 400
    status, body = await op.call("POST", "/faults/dismiss", json={"status": ["bogus"]})
    assert status == 400
