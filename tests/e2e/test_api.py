"""The operator API end to end: real HTTP, real PostgreSQL, a CPE over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import asyncpg
import pytest
from openapi_spec_validator import validate as validate_openapi

from acs.cwmp import messages as m
from acs.store import tokens
from acs.store.ids import device_id
from acs.web.server import Running
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import ConnectionRequestListener, CpeDouble

pytestmark = pytest.mark.db


class Client:
    def __init__(self, running: Running, token: str) -> None:
        self.base = f"http://127.0.0.1:{running.ports['api']}/api/v1"
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, **kw) as resp:
            body = await resp.read()
            if resp.content_type == "application/json":
                import json

                return resp.status, json.loads(body)
            return resp.status, body

    async def close(self) -> None:
        await self.http.close()


async def token(pool: asyncpg.Pool, role: str, unique_serial) -> str:
    async with pool.acquire() as conn:
        return await tokens.create_token(conn, unique_serial(f"{role}-"), role)


@pytest.fixture
async def api(acs: Running, db_pool: asyncpg.Pool, unique_serial):
    clients: dict[str, Client] = {}
    for role in ("admin", "operator", "viewer"):
        clients[role] = Client(acs, await token(db_pool, role, unique_serial))
    yield clients
    for c in clients.values():
        await c.close()


async def registered(acs: Running, serial: str, **kw: Any) -> CpeDouble:
    cpe = CpeDouble(cwmp_url(acs), serial, **kw)
    await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
    return cpe


def dev_id_of(cpe: CpeDouble) -> str:
    i = cpe.identity
    return device_id(i.oui, i.product_class, i.serial_number)


async def test_every_route_needs_a_token(acs: Running, api: dict[str, Client]) -> None:
    doc_status, doc = await api["viewer"].call("GET", "/openapi.json")
    assert doc_status == 200
    async with aiohttp.ClientSession() as anon:
        for path, ops in doc["paths"].items():
            for method in ops:
                url = f"http://127.0.0.1:{acs.ports['api']}" + path.replace("{", "x").replace(
                    "}", ""
                )
                async with anon.request(method.upper(), url) as resp:
                    assert resp.status == 401, (method, path)
                    assert (await resp.json())["error"]["code"] == "unauthenticated"
        async with anon.get(
            f"http://127.0.0.1:{acs.ports['api']}/api/v1/devices",
            headers={"Authorization": "Bearer acs_wrong"},
        ) as resp:
            assert resp.status == 401


async def test_openapi_document_is_valid_and_covers_every_route(
    acs: Running, api: dict[str, Client]
) -> None:
    status, doc = await api["viewer"].call("GET", "/openapi.json")
    assert status == 200
    validate_openapi(doc)
    from acs.web.api.app import api as declared

    documented = {(p, meth.upper()) for p, ops in doc["paths"].items() for meth in ops}
    routed = {(r.path, r.method) for r in declared.routes}
    assert documented == routed
    # and the router serves exactly those
    app_routes = {
        (r.resource.canonical, r.method)
        for r in acs.api_app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/api/v1")
    }
    assert app_routes == routed


async def test_viewer_reads_but_may_not_queue_jobs(
    acs: Running, api: dict[str, Client], unique_serial
) -> None:
    cpe = await registered(acs, unique_serial())
    try:
        dev = dev_id_of(cpe)
        status, body = await api["viewer"].call("GET", f"/devices/{dev}")
        assert status == 200 and body["id"] == dev
        status, body = await api["viewer"].call(
            "POST", f"/devices/{dev}/tasks", json={"name": "reboot"}
        )
        assert status == 403 and body["error"]["code"] == "forbidden"
        status, body = await api["operator"].call(
            "POST", "/tokens", json={"name": "x", "role": "admin"}
        )
        assert status == 403
        status, _ = await api["viewer"].call("GET", f"/devices/{dev}/tasks")
        assert status == 200
    finally:
        await cpe.close()


async def test_device_listing_filter_paging_projection_and_tags(
    acs: Running, api: dict[str, Client], unique_serial
) -> None:
    product = unique_serial("PC")
    cpes = [await registered(acs, unique_serial(), product_class=product) for _ in range(5)]
    try:
        ids = sorted(dev_id_of(c) for c in cpes)
        op = api["operator"]
        status, _ = await op.call("POST", f"/devices/{ids[0]}/tags", json={"tags": ["lab"]})
        assert status == 200
        seen: list[str] = []
        cursor = None
        while True:
            params = {
                "filter": f'DeviceID.ProductClass = "{product}"',
                "limit": "2",
                "projection": "Device.DeviceInfo.SoftwareVersion",
            }
            if cursor:
                params["cursor"] = cursor
            status, page = await api["viewer"].call("GET", "/devices", params=params)
            assert status == 200 and page["total"] == 5
            seen += [d["id"] for d in page["items"]]
            for d in page["items"]:
                assert d["parameters"]["Device.DeviceInfo.SoftwareVersion"]["value"] == "1.0.0"
            cursor = page["nextCursor"]
            if not cursor:
                break
        assert seen == ids
        status, page = await api["viewer"].call(
            "GET",
            "/devices",
            params={"filter": f'DeviceID.ProductClass = "{product}" AND tag = "lab"'},
        )
        assert [d["id"] for d in page["items"]] == [ids[0]]
        status, _ = await op.call("DELETE", f"/devices/{ids[0]}/tags/lab")
        status, page = await api["viewer"].call(
            "GET",
            "/devices",
            params={"filter": f'DeviceID.ProductClass = "{product}" AND tag = "lab"'},
        )
        assert page["total"] == 0
        # subtree of one device
        status, one = await api["viewer"].call(
            "GET", f"/devices/{ids[1]}", params={"prefix": "Device.WiFi.SSID.1."}
        )
        assert status == 200
        assert set(one["parameters"]) >= {"Device.WiFi.SSID.1.SSID"}
        assert all(k.startswith("Device.WiFi.SSID.1.") for k in one["parameters"])
    finally:
        for c in cpes:
            await c.close()


async def test_invalid_input_gets_a_reason(
    acs: Running, api: dict[str, Client], unique_serial
) -> None:
    cpe = await registered(acs, unique_serial())
    try:
        dev = dev_id_of(cpe)
        op = api["operator"]
        status, body = await api["viewer"].call(
            "GET", "/devices", params={"filter": 'DeviceID.ProductClass = "x" AND ('}
        )
        assert status == 400 and body["error"]["code"] == "invalid_filter"
        assert "position" in body["error"]["errors"][0]["message"]
        status, body = await op.call(
            "POST",
            f"/devices/{dev}/tasks",
            json={"name": "setParameterValues", "parameterValues": [["Device.X", 1, "xsd:nope"]]},
        )
        assert status == 400 and body["error"]["code"] == "invalid_task"
        status, body = await op.call(
            "POST", f"/devices/{dev}/tasks", json={"name": "addObject", "objectName": 5}
        )
        assert status == 400
        assert any(e["path"] == "objectName" for e in body["error"]["errors"])
        status, body = await op.call("POST", f"/devices/{dev}/tasks", json={"name": "explode"})
        assert status == 400 and body["error"]["errors"][0]["path"] == "name"
        status, body = await op.call("POST", f"/devices/{dev}/tasks", data=b"{not json")
        assert status == 400 and body["error"]["code"] == "invalid_json"
        status, body = await op.call(
            "POST", "/devices/nope%2Fodd%20id/tasks", json={"name": "reboot"}
        )
        assert status == 404
        status, body = await api["viewer"].call("GET", "/tasks/999999999")
        assert status == 404
        status, body = await api["viewer"].call("GET", "/tasks/abc")
        assert status == 400
        status, body = await api["viewer"].call("GET", "/devices/UNKNOWN-DEVICE-1")
        assert status == 404 and body["error"]["code"] == "not_found"
        # nothing was queued by any of that
        status, body = await api["viewer"].call("GET", f"/devices/{dev}/tasks")
        assert body["items"] == []
    finally:
        await cpe.close()


async def test_set_parameter_values_with_connection_request_returns_the_result(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(
        connection_request_username="cr-user", connection_request_password="cr-pass"
    )
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    holder: dict[str, CpeDouble] = {}

    async def session() -> None:
        await holder["cpe"].session(["6 CONNECTION REQUEST"])

    listener = ConnectionRequestListener("cr-user", "cr-pass", session)
    cr_url = await listener.start()
    cpe = CpeDouble(
        cwmp_url(acs), unique_serial(), cr_url=cr_url, cr_credentials=("cr-user", "cr-pass")
    )
    holder["cpe"] = cpe
    try:
        await cpe.session(["0 BOOTSTRAP"])
        dev = dev_id_of(cpe)
        status, body = await client.call(
            "POST",
            f"/devices/{dev}/tasks",
            params={"connection_request": "true", "timeout": "20"},
            json={
                "name": "setParameterValues",
                "parameterValues": [["Device.WiFi.SSID.1.SSID", "from-the-api"]],
            },
        )
        assert status == 200, body
        assert body["status"] == "done" and body["result"] == {"status": 0}
        assert body["connectionRequest"]["ok"] is True
        assert cpe.tree.value("Device.WiFi.SSID.1.SSID") == "from-the-api"
        status, dev_body = await client.call(
            "GET", f"/devices/{dev}", params={"prefix": "Device.WiFi.SSID.1.SSID"}
        )
        assert dev_body["parameters"]["Device.WiFi.SSID.1.SSID"]["value"] == "from-the-api"
        assert listener.knocks == 1
    finally:
        await listener.stop()
        await cpe.close()
        await client.close()


async def test_connection_request_failures(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(
        connection_request_username="cr-user",
        connection_request_password="wrong",
        connection_request_timeout_s=2.0,
    )
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    listener = ConnectionRequestListener("cr-user", "cr-pass", lambda: asyncio.sleep(0))
    cr_url = await listener.start()
    cpe = await registered(acs, unique_serial(), cr_url=cr_url)
    dead = await registered(acs, unique_serial(), cr_url="http://127.0.0.1:9/cr")
    try:
        status, body = await client.call(
            "POST",
            f"/devices/{dev_id_of(cpe)}/tasks",
            params={"connection_request": "true", "timeout": "5"},
            json={"name": "reboot"},
        )
        assert status == 504 and body["status"] == "pending"
        assert (
            "401" in body["connectionRequest"]["reason"]
            or "credential" in body["connectionRequest"]["reason"]
        )
        status, body = await client.call("POST", f"/devices/{dev_id_of(dead)}/connection-request")
        assert status == 200 and body["ok"] is False and body["reason"]
        assert listener.knocks == 0
    finally:
        await listener.stop()
        await cpe.close()
        await dead.close()
        await client.close()


async def test_job_that_does_not_come_back_in_time_is_202(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(connection_request_username="u", connection_request_password="p")
    client = Client(acs, await token(db_pool, "operator", unique_serial))
    listener = ConnectionRequestListener("u", "p", lambda: asyncio.sleep(0))  # never calls in
    cpe = await registered(acs, unique_serial(), cr_url=await listener.start())
    try:
        status, body = await client.call(
            "POST",
            f"/devices/{dev_id_of(cpe)}/tasks",
            params={"connection_request": "true", "timeout": "0.5"},
            json={"name": "reboot"},
        )
        assert status == 202 and body["status"] == "pending"
        # it runs at the next contact
        requests = await cpe.session(["2 PERIODIC"])
        assert [r.rpc for r in requests] == ["Reboot"]
    finally:
        await listener.stop()
        await cpe.close()
        await client.close()


async def test_download_job_from_the_file_server_ends_with_transfer_complete(
    acs: Running, api: dict[str, Client], unique_serial
) -> None:
    image = b"CPE-SIM-FIRMWARE version=2.0.0\n" + bytes(range(256)) * 400
    name = f"fw-{unique_serial()}.bin"
    status, body = await api["admin"].call(
        "PUT",
        f"/files/{name}",
        data=image,
        params={
            "fileType": "1 Firmware Upgrade Image",
            "oui": "ACDE48",
            "productClass": "HGW",
            "version": "2.0.0",
        },
    )
    assert status == 201, body
    assert body["sha256"] == hashlib.sha256(image).hexdigest() and body["size"] == len(image)
    status, body = await api["admin"].call("PUT", f"/files/{name}", data=b"x")
    assert status == 409
    status, body = await api["operator"].call("PUT", f"/files/{name}x", data=b"x")
    assert status == 403

    cpe = await registered(acs, unique_serial())
    downloaded: list[bytes] = []

    async def fetch(url: str) -> None:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            downloaded.append(await resp.read())

    def answer(request: m.Message) -> m.Message:
        if isinstance(request, m.Download):
            pending.append(request)
            return m.DownloadResponse(status=1)
        return cpe.answer(request)

    pending: list[m.Download] = []
    try:
        dev = dev_id_of(cpe)
        status, job = await api["operator"].call(
            "POST", f"/devices/{dev}/tasks", json={"name": "download", "fileName": name}
        )
        assert status == 201, job
        await cpe.session(["2 PERIODIC"], answer=answer)
        download = pending[0]
        assert download.file_size == len(image) and download.url.endswith("/" + name)
        await fetch(download.url)
        assert downloaded[0] == image
        status, body = await api["viewer"].call("GET", f"/tasks/{job['id']}")
        assert body["status"] == "running" and body["result"]["awaitingTransferComplete"]
        tc = m.TransferComplete(download.command_key, m.FaultStruct(), None, None)
        await cpe.session(["7 TRANSFER COMPLETE", "M Download", "1 BOOT"], before_empty=[tc])
        status, body = await api["viewer"].call("GET", f"/tasks/{job['id']}")
        assert body["status"] == "done"
        assert body["result"]["transferComplete"]["faultCode"] == 0
        # a job for a file that does not exist is refused when queued, naming the field
        for field in ("fileName", "file"):
            status, body = await api["operator"].call(
                "POST", f"/devices/{dev}/tasks", json={"name": "download", field: "nope.bin"}
            )
            assert status == 404, body
            assert body["error"]["code"] == "unknown_file"
            assert "'nope.bin'" in body["error"]["message"]
            assert [e["path"] for e in body["error"]["errors"]] == [field]
        status, listed = await api["viewer"].call("GET", f"/devices/{dev}/tasks")
        assert all(t["args"].get("fileName") != "nope.bin" for t in listed["items"]), listed
        # a file deleted after its job was queued still faults the job with the reason
        status, job = await api["operator"].call(
            "POST", f"/devices/{dev}/tasks", json={"name": "download", "fileName": name}
        )
        assert status == 201, job
        status, _ = await api["admin"].call("DELETE", f"/files/{name}")
        assert status == 204
        await cpe.session(["2 PERIODIC"])
        status, body = await api["viewer"].call("GET", f"/tasks/{job['id']}")
        assert body["status"] == "fault" and "unknown file" in body["fault"]["message"]
    finally:
        await cpe.close()


async def test_cancel_and_retry(acs: Running, api: dict[str, Client], unique_serial) -> None:
    cpe = await registered(acs, unique_serial())
    try:
        dev = dev_id_of(cpe)
        op = api["operator"]
        _, doomed = await op.call("POST", f"/devices/{dev}/tasks", json={"name": "reboot"})
        status, body = await op.call("DELETE", f"/tasks/{doomed['id']}")
        assert status == 200 and body["status"] == "cancelled"
        status, body = await op.call("DELETE", f"/tasks/{doomed['id']}")
        assert status == 409
        _, bad = await op.call(
            "POST",
            f"/devices/{dev}/tasks",
            json={"name": "getParameterValues", "parameterNames": ["Device.Nope."]},
        )
        await cpe.session(["2 PERIODIC"])
        _, body = await op.call("GET", f"/tasks/{bad['id']}")
        assert body["status"] == "fault" and body["fault"]["code"] == 9005
        status, body = await op.call("POST", f"/tasks/{bad['id']}/retry")
        assert status == 200 and body["status"] == "pending" and body["fault"] is None
        status, body = await op.call("POST", f"/tasks/{bad['id']}/retry")
        assert status == 409
    finally:
        await cpe.close()


async def test_file_over_the_limit_is_refused_and_nothing_is_stored(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(api_max_upload_bytes=100_000)
    admin = Client(acs, await token(db_pool, "admin", unique_serial))
    try:
        name = f"big-{unique_serial()}.bin"
        status, body = await admin.call("PUT", f"/files/{name}", data=b"x" * 150_000)
        assert status == 413 and body["error"]["code"] == "too_large"

        async def chunked():  # no Content-Length: the limit holds while streaming
            for _ in range(30):
                yield b"y" * 10_000

        status, body = await admin.call("PUT", f"/files/{name}", data=chunked())
        assert status == 413
        status, _ = await admin.call("GET", f"/files/{name}")
        assert status == 404
        assert not (acs.settings.files_dir / name).exists()
        assert [p for p in acs.settings.files_dir.glob(".upload-*")] == []
        status, body = await admin.call("PUT", "/files/..secret", data=b"x")
        assert status == 400 and body["error"]["code"] == "invalid_name"
    finally:
        await admin.close()


# an RFC 3339 date-time anywhere in a string, and what follows its seconds
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
# what the CPE said verbatim (SOAP bodies, parameter values), not the ACS's own timestamps
_CPE_TEXT = {"body", "value"}


def timestamps_in(data: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(JSON path, text) of every date-time in a response, however deeply nested."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key not in _CPE_TEXT:
                yield from timestamps_in(value, f"{where}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from timestamps_in(value, f"{where}[{i}]")
    elif isinstance(data, str):
        for found in _DATETIME.finditer(data):
            yield where, found.group(0)


async def test_every_timestamp_the_api_returns_is_rfc3339_in_utc_with_z(
    acs: Running, api: dict[str, Client], db_pool: asyncpg.Pool, unique_serial
) -> None:
    admin = api["admin"]
    cpe = await registered(acs, unique_serial())
    dev = dev_id_of(cpe)
    name = f"fw-{unique_serial()}.bin"
    made: list[tuple[str, str]] = []
    try:
        status, file = await admin.call(
            "PUT", f"/files/{name}", data=b"image", params={"fileType": "1 Firmware Upgrade Image"}
        )
        assert status == 201, file
        made.append(("DELETE", f"/files/{name}"))
        status, job = await admin.call(
            "POST", f"/devices/{dev}/tasks", json={"name": "download", "fileName": name}
        )
        assert status == 201, job
        secret = "Device.ManagementServer.ConnectionRequestPassword"
        status, setting = await admin.call(
            "POST",
            f"/devices/{dev}/tasks",
            json={"name": "setParameterValues", "parameterValues": [[secret, "cr-secret-1"]]},
        )
        assert status == 201, setting  # gives the admin secret route a value to read
        pending: list[m.Download] = []

        def answer(request: m.Message) -> m.Message:
            if isinstance(request, m.Download):
                pending.append(request)
                return m.DownloadResponse(status=1)
            return cpe.answer(request)

        await cpe.session(["2 PERIODIC"], answer=answer)
        # the CPE reports its transfer in its own local time
        paris = timezone(timedelta(hours=2))
        start = datetime(2026, 6, 1, 14, 0, 0, tzinfo=paris)
        tc = m.TransferComplete(
            pending[0].command_key, m.FaultStruct(), start, start + timedelta(seconds=30)
        )
        await cpe.session(["7 TRANSFER COMPLETE", "M Download"], before_empty=[tc])
        status, done = await admin.call("GET", f"/tasks/{job['id']}")
        assert done["status"] == "done", done
        assert done["result"]["transferComplete"]["startTime"] == "2026-06-01T12:00:00Z"
        assert done["result"]["transferComplete"]["completeTime"] == "2026-06-01T12:00:30Z"
        # a config backup, so the backup routes have one to read
        status, up = await admin.call("POST", f"/devices/{dev}/tasks", json={"name": "upload"})
        assert status == 201, up
        uploads: list[m.Upload] = []

        def take_upload(request: m.Message) -> m.Message:
            if isinstance(request, m.Upload):
                uploads.append(request)
                return m.UploadResponse(status=1)
            return cpe.answer(request)

        await cpe.session(["6 CONNECTION REQUEST"], answer=take_upload)
        [upload] = uploads
        auth = {"Authorization": aiohttp.encode_basic_auth(upload.username, upload.password)}
        async with aiohttp.ClientSession() as http:
            async with http.put(upload.url, data=b"k=v\n", headers=auth) as resp:
                assert resp.status == 201, await resp.text()
        status, backups = await admin.call("GET", f"/devices/{dev}/backups")
        assert status == 200 and backups["items"], backups
        status, policy = await admin.call(
            "POST",
            "/policies",
            json={"name": unique_serial("ts-"), "precondition": f'DeviceID.ID = "{dev}"'},
        )
        assert status == 201, policy
        made.append(("DELETE", f"/policies/{policy['id']}"))
        status, hook = await admin.call(
            "POST", "/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["job.finished"]}
        )
        assert status == 201, hook
        made.append(("DELETE", f"/webhooks/{hook['id']}"))
        status, bulk = await admin.call(
            "POST",
            "/bulk-jobs",
            json={
                "name": unique_serial("ts-"),
                "filter": f'DeviceID.ID = "{dev}"',
                "task": {"name": "reboot"},
            },
        )
        assert status == 201, bulk
        status, image = await admin.call(
            "POST",
            "/firmware/images",
            json={
                "file": name,
                "oui": "ACDE48",
                "productClass": "HGW",
                "hardwareVersions": ["HW1.0"],
                "version": "2.0.0",
            },
        )
        assert status == 201, image
        made.append(("DELETE", f"/firmware/images/{image['id']}"))
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()  # "+00:00" in, "Z" out
        status, campaign = await admin.call(
            "POST",
            "/campaigns",
            json={
                "name": unique_serial("ts-"),
                "image": image["id"],
                "filter": f'DeviceID.ID = "{dev}"',
                "stages": [{"size": "100%"}],
                "startAt": later,
            },
        )
        assert status == 201, campaign
        made.append(("DELETE", f"/campaigns/{campaign['id']}"))
        status, sessions = await admin.call("GET", f"/devices/{dev}/sessions")
        values = {
            "image_id": str(image["id"]),
            "campaign_id": str(campaign["id"]),
            "device_id": dev,
            "task_id": str(job["id"]),
            "name": name,
            "policy_id": str(policy["id"]),
            "webhook_id": str(hook["id"]),
            "bulk_id": str(bulk["id"]),
            "session_id": str(sessions["items"][0]["id"]),
            "path": secret,
            "backup_id": str(backups["items"][0]["id"]),
        }
        status, doc = await admin.call("GET", "/openapi.json")
        seen: list[str] = []
        read = 0
        for path, ops in doc["paths"].items():
            # the live stream never ends by itself: tests/e2e/test_live_events.py reads it
            if "get" not in ops or path.endswith(("openapi.json", "/events")):
                continue
            params = re.findall(r"{(\w+)}", path)
            assert all(p in values for p in params), f"{path}: no object made to read"
            status, body = await admin.call("GET", path.removeprefix("/api/v1").format(**values))
            assert status == 200, (path, body)
            read += 1
            for where, text in timestamps_in(body):
                seen.append(text)
                assert text.endswith("Z") and "T" in text, f"{path}: {where} = {text}"
        assert read >= 20
        # the check saw real timestamps: the device's, the job's, the session's, the audit's...
        assert len(seen) > 50
    finally:
        for method, path in reversed(made):
            await admin.call(method, path)
        await cpe.close()
