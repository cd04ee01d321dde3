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


async def captured(cpe: CpeDouble, kind: type[m.Message]) -> Any:
    """Run a session in which the CPE accepts the ACS's transfer and returns it."""
    got: list[m.Message] = []

    def answer(request: m.Message) -> m.Message:
        if isinstance(request, kind):
            got.append(request)
            if isinstance(request, m.Download):
                return m.DownloadResponse(status=1)
            return m.UploadResponse(status=1)
        return cpe.answer(request)

    await cpe.session(["6 CONNECTION REQUEST"], answer=answer)
    assert len(got) == 1, got
    return got[0]


async def transfer_complete(cpe: CpeDouble, command_key: str, fault: int = 0) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    tc = m.TransferComplete(
        command_key, m.FaultStruct(fault, "Upload failure" if fault else ""), now, now
    )
    await cpe.session(["7 TRANSFER COMPLETE"], before_empty=[tc])


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(username, password)}


async def chunks(n: int, size: int):  # type: ignore[no-untyped-def]
    for _ in range(n):
        yield b"y" * size


async def test_uploads_refused_without_the_jobs_credential_too_large_or_not_waiting(
    backup_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    admin = Client(backup_acs, await token(db_pool, "admin", unique_serial))
    url = cwmp_url(backup_acs)
    cpe_a = CpeDouble(url, unique_serial("BA"), digest=("cpe", "cpe-pw"))
    cpe_b = CpeDouble(url, unique_serial("BB"), digest=("cpe", "cpe-pw"))
    http = aiohttp.ClientSession()
    try:
        for cpe in (cpe_a, cpe_b):
            await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        a, b = dev_id_of(cpe_a), dev_id_of(cpe_b)
        _, job_a = await admin.call("POST", f"/devices/{a}/tasks", json={"name": "upload"})
        _, job_b = await admin.call(
            "POST", f"/devices/{b}/tasks", json={"name": "upload", "fileType": "2 Vendor Log File"}
        )
        up_a: m.Upload = await captured(cpe_a, m.Upload)
        up_b: m.Upload = await captured(cpe_b, m.Upload)
        assert up_a.url != up_b.url and "/transfers/" in up_a.url
        assert up_a.username and up_a.password and up_a.username != up_b.username
        basic_a = basic(up_a.username, up_a.password)
        basic_b = basic(up_b.username, up_b.password)
        config = b"Device.WiFi.SSID.1.SSID=restored\n"

        async def put(target: str, **kw: Any) -> int:
            try:
                async with http.put(target, **kw) as resp:
                    await resp.read()
                    return resp.status
            except aiohttp.ClientOSError:
                # the server answered 413 and closed before the whole body went out
                return -1

        # 401: no credential, the device's CWMP credential (Basic and Digest), the
        # other device's job credential
        assert await put(up_a.url, data=config) == 401
        assert await put(up_a.url, data=config, headers=basic("cpe", "cpe-pw")) == 401
        digest = aiohttp.DigestAuthMiddleware("cpe", "cpe-pw")
        assert await put(up_a.url, data=config, middlewares=(digest,)) == 401
        assert await put(up_a.url, data=config, headers=basic_b) == 401
        assert await put(up_a.url, data=config, headers=basic(up_a.username, "x")) == 401
        # 413: declared too large, and streamed past the limit without a length
        assert await put(up_a.url, data=b"x" * (LIMIT + 1), headers=basic_a) == 413
        assert await put(up_a.url, data=chunks(8, LIMIT // 4), headers=basic_a) in (413, -1)
        status, listing = await admin.call("GET", f"/devices/{a}/backups")
        assert listing["items"] == [] and disk(backup_acs) == []

        # the job's own credential (Digest, as the simulator sends it): stored
        own = aiohttp.DigestAuthMiddleware(up_a.username, up_a.password)
        assert await put(up_a.url, data=config, middlewares=(own,)) == 201
        # 409: the job has its file already
        assert await put(up_a.url, data=b"second", headers=basic_a) == 409
        _, listing = await admin.call("GET", f"/devices/{a}/backups")
        [backup] = listing["items"]
        assert backup["sha256"] == hashlib.sha256(config).hexdigest()
        assert backup["size"] == len(config)
        assert disk(backup_acs) and not any(n.startswith(".") for n in disk(backup_acs))

        # POST, as a multipart form (how some CPEs upload)
        form = aiohttp.FormData()
        form.add_field("file", b"log line\n", filename="log.txt")
        async with http.post(up_b.url, data=form, headers=basic_b) as resp:
            assert resp.status == 201, await resp.text()
        _, logs = await admin.call("GET", f"/devices/{b}/backups")
        [log_file] = logs["items"]
        assert log_file["fileType"] == "2 Vendor Log File" and log_file["restorable"] is False
        assert log_file["size"] == len(b"log line\n")

        # 409: a job that ended (its TransferComplete said it failed)
        _, job_a2 = await admin.call("POST", f"/devices/{a}/tasks", json={"name": "upload"})
        up_a2: m.Upload = await captured(cpe_a, m.Upload)
        await transfer_complete(cpe_a, up_a2.command_key, fault=9011)
        assert (await until_done(admin, job_a2["id"]))["status"] == "fault"
        before = disk(backup_acs)
        basic_a2 = basic(up_a2.username, up_a2.password)
        assert await put(up_a2.url, data=config, headers=basic_a2) == 409
        assert disk(backup_acs) == before

        for cpe, up, job in ((cpe_a, up_a, job_a), (cpe_b, up_b, job_b)):
            await transfer_complete(cpe, up.command_key)
            assert (await until_done(admin, job["id"]))["status"] == "done"

        # restore: refused for a log, an unknown target, a bad body
        one = f"/devices/{b}/backups/{log_file['id']}"
        status, err = await admin.call("POST", one + "/restore", json={})
        assert status == 409 and err["error"]["code"] == "not_restorable", err
        one = f"/devices/{a}/backups/{backup['id']}"
        status, err = await admin.call("POST", one + "/restore", json={"targetDevice": "nope"})
        assert status == 404 and err["error"]["errors"][0]["path"] == "targetDevice", err
        status, err = await admin.call("POST", one + "/restore", json={"target": b})
        assert status == 400, err
        status, err = await admin.call("GET", f"/devices/{b}/backups/{backup['id']}")
        assert status == 404, err  # A's backup is not B's
        status, err = await admin.call(
            "POST", f"/devices/{b}/tasks", json={"name": "download", "backupId": 2**40}
        )
        assert status == 404 and err["error"]["errors"][0]["path"] == "backupId", err
        status, err = await admin.call(
            "POST",
            f"/devices/{b}/tasks",
            json={"name": "download", "backupId": backup["id"], "fileName": "x"},
        )
        assert status == 400, err  # one source only

        # restore A's backup onto B: its URL serves only B's job credential
        status, restore = await admin.call("POST", one + "/restore", json={"targetDevice": b})
        assert status == 201, restore
        dl: m.Download = await captured(cpe_b, m.Download)
        assert dl.file_type == "3 Vendor Configuration File" and dl.file_size == len(config)
        async with http.get(dl.url) as resp:
            assert resp.status == 401
        async with http.get(dl.url, headers=basic_a) as resp:
            assert resp.status == 401
        async with http.put(dl.url, data=config, headers=basic_b) as resp:
            assert resp.status == 401  # B's upload credential is another job's
        own_b = basic(dl.username, dl.password)
        async with http.get(dl.url, headers=own_b) as resp:
            assert resp.status == 200 and await resp.read() == config
            assert resp.headers["ETag"] == f'"{backup["sha256"]}"'
        async with http.put(dl.url, data=config, headers=own_b) as resp:
            assert resp.status == 405
        await transfer_complete(cpe_b, dl.command_key)
        assert (await until_done(admin, restore["id"]))["status"] == "done"
        async with http.get(dl.url, headers=own_b) as resp:
            assert resp.status == 409  # the job is over

        # delete: the row and the file together
        files_before = disk(backup_acs)
        status, _ = await admin.call("DELETE", one)
        assert status == 204
        assert len(disk(backup_acs)) == len(files_before) - 1
        status, _ = await admin.call("GET", one + "/content")
        assert status == 404
        status, _ = await admin.call("DELETE", one)
        assert status == 404

        assert "Upload" in await acs_messages_validate(db_pool, a)
        assert "Download" in await acs_messages_validate(db_pool, b)
    finally:
        await http.close()
        for cpe in (cpe_a, cpe_b):
            await cpe.close()
        await admin.close()


async def test_policies_schedule_backups_after_a_firmware_change_and_every_interval(
    backup_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    admin = Client(backup_acs, await token(db_pool, "admin", unique_serial))
    fleet = await fleet_of(backup_acs, unique_serial("BP"), 2)
    serial_f, serial_w = sorted(fleet.devices)
    f, w = dev_id(fleet, serial_f), dev_id(fleet, serial_w)
    cpe_f, cpe_w = fleet.devices[serial_f], fleet.devices[serial_w]

    async def quiet(cpe: Any, serial: str) -> None:
        """One more whole session, and nothing of the ACS left in flight."""
        before = cpe.sessions_ok
        await fleet.trigger(serial)
        await fleet.wait_for(lambda: cpe.sessions_ok > before and not cpe.in_session)
        await fleet.wait_for(lambda: not cpe.transfers and not cpe.transfer_results)

    async def backups_of(device: str, n: int) -> list[dict[str, Any]]:
        """The device's backups once there are n, with sessions until then (the
        policy book reloads every two seconds: a new policy may miss a session)."""
        cpe = cpe_f if device == f else cpe_w
        for _ in range(200):
            _, listing = await admin.call("GET", f"/devices/{device}/backups")
            if len(listing["items"]) >= n:
                return listing["items"]
            await quiet(cpe, serial_f if device == f else serial_w)
            # sessions on a quiet machine take milliseconds: give the policy
            # book its reload (every two seconds) a chance within the loop
            await asyncio.sleep(0.1)
        raise AssertionError(f"{device}: {listing}")

    try:
        await fleet.wait_for(lambda: cpe_f.sessions_ok >= 1 and cpe_w.sessions_ok >= 1)
        status, bad = await admin.call(
            "POST", "/policies", json={"name": unique_serial("bk-"), "backup": {"every": 5}}
        )
        assert status == 400 and bad["error"]["errors"][0]["path"] == "backup.every", bad
        status, on_change = await admin.call(
            "POST",
            "/policies",
            json={
                "name": unique_serial("bk-fw-"),
                "precondition": f'DeviceID.ID = "{f}"',
                "backup": {"onFirmwareChange": True},
            },
        )
        assert status == 201, on_change
        assert on_change["backup"]["onFirmwareChange"] is True
        status, weekly = await admin.call(
            "POST",
            "/policies",
            json={
                "name": unique_serial("bk-week-"),
                "precondition": f'DeviceID.ID = "{w}"',
                "backup": {"every": 7 * 86400},
            },
        )
        assert status == 201, weekly

        # the first sessions after: neither device has a backup
        [first] = await backups_of(f, 1)
        assert first["firmware"] == "1.0.0"
        await backups_of(w, 1)
        for cpe, serial in ((cpe_f, serial_f), (cpe_w, serial_w)):
            await quiet(cpe, serial)
        # not again: the same firmware, and a week has not passed
        await quiet(cpe_f, serial_f)
        await quiet(cpe_w, serial_w)
        _, listing = await admin.call("GET", f"/devices/{f}/backups")
        assert len(listing["items"]) == 1
        _, listing = await admin.call("GET", f"/devices/{w}/backups")
        assert len(listing["items"]) == 1

        # new firmware on f (its Inform says so): a backup of that firmware
        cpe_f.tree.set_value_internal("Device.DeviceInfo.SoftwareVersion", "2.0.0")
        newest = (await backups_of(f, 2))[0]
        assert newest["firmware"] == "2.0.0"
        # a week later for w (its last run moved back, not waited for)
        async with db_pool.acquire() as conn:
            moved = await conn.execute(
                "UPDATE policy_backup_runs SET last_run = last_run - interval '8 days'"
                " WHERE device_id = $1",
                w,
            )
        assert moved == "UPDATE 1"
        await backups_of(w, 2)
    finally:
        await fleet.stop()
        await admin.close()


async def a_backup(admin: Client, cpe: CpeDouble, body: bytes = b"k=v\n") -> dict[str, Any]:
    """A backup of the CPE double's device, uploaded the way a CPE does (for walks
    of every route that need one)."""
    dev = dev_id_of(cpe)
    status, job = await admin.call("POST", f"/devices/{dev}/tasks", json={"name": "upload"})
    assert status == 201, job
    up: m.Upload = await captured(cpe, m.Upload)
    async with aiohttp.ClientSession() as http:
        async with http.put(up.url, data=body, headers=basic(up.username, up.password)) as resp:
            assert resp.status == 201, await resp.text()
    status, listing = await admin.call("GET", f"/devices/{dev}/backups")
    assert status == 200, listing
    return listing["items"][0]


async def test_an_upload_sent_again_after_a_dead_session_keeps_its_url_and_credential(
    backup_acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    """The CPE accepted the Upload but the session died before the ACS heard it: the
    next session adopts the CPE's queued transfer, which must still authenticate."""
    admin = Client(backup_acs, await token(db_pool, "admin", unique_serial))
    cpe = CpeDouble(cwmp_url(backup_acs), unique_serial("BR"), digest=("cpe", "cpe-pw"))
    try:
        await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        dev = dev_id_of(cpe)
        _, job = await admin.call("POST", f"/devices/{dev}/tasks", json={"name": "upload"})
        assert (await cpe.post(cpe.inform_message(["6 CONNECTION REQUEST"]))).status == 200
        sent = (await cpe.post(None)).message
        assert isinstance(sent, m.Upload), sent
        # the CPE restarts without answering; its new Inform supersedes the session

        def answer(request: m.Message) -> m.Message:
            if isinstance(request, m.GetAllQueuedTransfers):
                queued = m.AllQueuedTransferStruct(
                    sent.command_key, 1, False, sent.file_type, 0, ""
                )
                return m.GetAllQueuedTransfersResponse(transfer_list=[queued])
            assert not isinstance(request, m.Upload), "adopted, not sent twice"
            return cpe.answer(request)

        await cpe.session(["1 BOOT"], answer=answer)
        _, running = await admin.call("GET", f"/tasks/{job['id']}")
        assert running["status"] == "running" and running["result"]["adopted"] is True, running
        async with aiohttp.ClientSession() as http:
            auth = basic(sent.username, sent.password)
            async with http.put(sent.url, data=b"k=v\n", headers=auth) as resp:
                assert resp.status == 201, await resp.text()
        await transfer_complete(cpe, sent.command_key)
        assert (await until_done(admin, job["id"]))["status"] == "done"
        _, listing = await admin.call("GET", f"/devices/{dev}/backups")
        assert [b["task"] for b in listing["items"]] == [job["id"]]
    finally:
        await cpe.close()
        await admin.close()
