"""Config backup and restore over real HTTP: the simulator uploads its configuration
to the ACS's file server, and a restore puts it onto a replacement device."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.store import session_logs
from acs.web.server import Running
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_api import Client, dev_id_of, token
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.xsd import validate_envelope

pytestmark = pytest.mark.db

LIMIT = 64 * 1024  # the simulator's configuration file is about 18 KiB
SSID1, SSID2 = "Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.2.SSID"


@pytest.fixture
async def backup_acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        connection_request_username="cr",
        connection_request_password="cr-secret",
        session_timeout_s=3.0,
        backup_max_bytes=LIMIT,
    )


async def until_done(admin: Client, job_id: int, tries: int = 600) -> dict[str, Any]:
    """The job once it is finished (polled; the bound only stops a hung test)."""
    for _ in range(tries):
        status, job = await admin.call("GET", f"/tasks/{job_id}")
        assert status == 200, job
        if job["status"] in ("done", "fault", "expired", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


async def acs_messages_validate(pool: asyncpg.Pool, device: str) -> list[str]:
    """Every message the ACS sent the device validates; returns their RPC names."""
    sent: list[str] = []
    async with pool.acquire() as conn:
        for summary in await session_logs.list_sessions(conn, device):
            found = await session_logs.get_session(conn, device, summary.id)
            assert found is not None
            for msg in found[1]:
                if msg["direction"] == "out" and msg["body"]:
                    validate_envelope(msg["body"].encode())
                    sent.append(msg["rpc"] or "")
    return sent


def disk(acs: Running) -> list[str]:
    root = acs.settings.backups_dir
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


async def test_a_backup_of_one_device_restored_onto_a_replacement(
    backup_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    admin = Client(backup_acs, await token(db_pool, "admin", unique_serial))
    fleet = await fleet_of(backup_acs, unique_serial("BK"), 2)
    serial_a, serial_b = sorted(fleet.devices)
    a, b = dev_id(fleet, serial_a), dev_id(fleet, serial_b)
    cpe_a, cpe_b = fleet.devices[serial_a], fleet.devices[serial_b]
    wanted = {SSID1: f"home-of-{serial_a}", SSID2: f"guest of {serial_a} "}
    try:
        await fleet.wait_for(lambda: cpe_a.sessions_ok >= 1 and cpe_b.sessions_ok >= 1)
        status, job = await admin.call(
            "POST",
            f"/devices/{a}/tasks",
            json={
                "name": "setParameterValues",
                "parameterValues": [[k, v] for k, v in wanted.items()],
            },
        )
        assert status == 201, job
        await fleet.trigger(serial_a)
        assert (await until_done(admin, job["id"]))["status"] == "done"

        # the backup: an upload job without a url
        status, up = await admin.call("POST", f"/devices/{a}/tasks", json={"name": "upload"})
        assert status == 201, up
        await fleet.trigger(serial_a)
        done = await until_done(admin, up["id"])
        assert done["status"] == "done", done
        assert done["result"]["transferComplete"]["faultCode"] == 0
        assert "password" not in str(done["args"]).lower()  # the grant's secret is not kept

        status, listing = await admin.call("GET", f"/devices/{a}/backups")
        assert status == 200 and len(listing["items"]) == 1, listing
        backup = listing["items"][0]
        assert backup["fileType"] == "1 Vendor Configuration File"
        assert backup["firmware"] == cpe_a.tree.software_version
        assert backup["task"] == up["id"] and backup["restorable"] is True
        status, content = await admin.call("GET", f"/devices/{a}/backups/{backup['id']}/content")
        assert status == 200
        assert len(content) == backup["size"]
        assert hashlib.sha256(content).hexdigest() == backup["sha256"]
        assert f"{SSID1}=home-of-{serial_a}\n".encode() in content
        assert b"Password=" not in content and b"Username=" not in content  # no credentials
        assert disk(backup_acs) == [n for n in disk(backup_acs) if not n.startswith(".")]

        # the swap: restore A's backup onto B
        assert cpe_b.tree.value(SSID1) != wanted[SSID1]
        status, restore = await admin.call(
            "POST", f"/devices/{a}/backups/{backup['id']}/restore", json={"targetDevice": b}
        )
        assert status == 201, restore
        assert restore["device"] == b and restore["name"] == "download"
        assert restore["args"] == {
            "fileType": "3 Vendor Configuration File",
            "backupId": backup["id"],
        }
        await fleet.trigger(serial_b)
        done = await until_done(admin, restore["id"])
        assert done["status"] == "done", done

        # B reports A's values, read by the ACS in B's next session
        status, read = await admin.call(
            "POST",
            f"/devices/{b}/tasks",
            json={"name": "getParameterValues", "parameterNames": [SSID1, SSID2]},
        )
        assert status == 201, read
        await fleet.trigger(serial_b)
        read = await until_done(admin, read["id"])
        got = {name: value for name, value, _type in read["result"]["values"]}
        assert got == wanted

        sent_a = await acs_messages_validate(db_pool, a)
        sent_b = await acs_messages_validate(db_pool, b)
        assert "Upload" in sent_a and "Download" in sent_b
    finally:
        await fleet.stop()
        await admin.close()
