"""Files on several hosts (ACS_FILE_STORE=postgres): two independent `acs serve`
processes on one database, each with a data directory of its own, serve each
other's uploads.

- an image uploaded through host A is downloaded from host B, with Range
  (single and multi), If-Range and ETag; replaced on B, A serves the new bytes;
  deleted on A, neither serves it;
- a CPE's backup uploaded to host B (host A's Download URLs name host B) is
  restored from host A (host B's name host A), and retention run by one host
  removes it from both.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.store.ids import device_id
from cpe_simulator.fleet import Fleet, FleetConfig
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import token
from tests.e2e.test_simulator_fleet import FAST
from tests.e2e.test_survival import AcsProcess, free_ports, wait_until

pytestmark = pytest.mark.db

UPLOAD_LIMIT = 8 * 1024 * 1024


class Host:
    """One `acs serve` of the pair, with its own data directory and ports."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.data_dir = workdir
        self.env = env
        self.process = AcsProcess(env, workdir / "acs.log")
        self.api = f"http://127.0.0.1:{env['ACS_API_PORT']}/api/v1"
        self.files = f"http://127.0.0.1:{env['ACS_FILES_PORT']}"
        self.cwmp = f"http://127.0.0.1:{env['ACS_CWMP_PORT']}/"


@pytest.fixture
async def two_hosts(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    ports = free_ports(6)
    key = secrets.token_urlsafe(32)  # one installation: one sealing key on every host
    hosts: list[Host] = []
    for i, name in enumerate("ab"):
        workdir = tmp_path / name
        workdir.mkdir()
        other_files = ports[(1 - i) * 3 + 2]
        env = {
            **os.environ,
            "ACS_DATABASE_URL": database_url,
            "ACS_DATA_DIR": str(workdir),
            "ACS_HOST": "127.0.0.1",
            "ACS_CWMP_PORT": str(ports[i * 3]),
            "ACS_API_PORT": str(ports[i * 3 + 1]),
            "ACS_FILES_PORT": str(ports[i * 3 + 2]),
            "ACS_STUN_PORT": "0",
            "ACS_FILE_STORE": "postgres",
            # each host's Download and Upload URLs name the other host
            "ACS_FILES_PUBLIC_URL": f"http://127.0.0.1:{other_files}/",
            "ACS_SECRETS_KEY": key,
            "ACS_CPE_AUTH": "digest",
            "ACS_CPE_USERNAME": "cpe",
            "ACS_CPE_PASSWORD": "cpe-pw",
            "ACS_CONNECTION_REQUEST_USERNAME": "cr",
            "ACS_CONNECTION_REQUEST_PASSWORD": "cr-secret",
            "ACS_SESSION_TIMEOUT_S": "3",
            "ACS_DEFAULT_POLICIES": "false",
            # retention often, on whichever host holds its lease (one per cluster):
            # it keeps one backup per device, and its deletes reach both hosts
            "ACS_BACKUPS_PER_DEVICE": "1",
            "ACS_RETENTION_INTERVAL_S": "0.5",
            "ACS_API_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
            "ACS_LOG_LEVEL": "INFO",
        }
        hosts.append(Host(name, workdir, env))
    try:
        for host in hosts:
            await host.process.start()
        yield hosts
    finally:
        for host in hosts:
            host.process.stop()


def on_disk(host: Host) -> list[str]:
    """Every file under the host's data directory's files and backups (not the
    embedded server's: the hosts use the test's PostgreSQL)."""
    found = []
    for sub in ("files", "backups"):
        root = host.data_dir / sub
        if root.exists():
            found += [str(p.relative_to(host.data_dir)) for p in root.rglob("*") if p.is_file()]
    return sorted(found)


async def test_an_image_uploaded_on_one_host_is_served_with_range_and_etag_by_the_other(
    two_hosts: list[Host], db_pool: asyncpg.Pool, unique_serial: Any
) -> None:
    a, b = two_hosts
    admin = {"Authorization": f"Bearer {await token(db_pool, 'admin', unique_serial)}"}
    name = f"{unique_serial('img')}.bin"
    image = secrets.token_bytes(3 * 1024 * 1024 + 12345)  # several chunks, the last short
    etag = f'"{hashlib.sha256(image).hexdigest()}"'
    async with aiohttp.ClientSession(headers=admin) as http:
        async with http.put(
            f"{a.api}/files/{name}", params={"fileType": "1 Firmware Upgrade Image"}, data=image
        ) as resp:
            assert resp.status == 201, await resp.text()
            record = await resp.json()
        assert record["sha256"] == etag.strip('"') and record["size"] == len(image)
        # the URL CPEs are given names the other host (its ACS_FILES_PUBLIC_URL)
        assert record["url"].startswith(b.files), record["url"]
        assert not (b.data_dir / "files" / ".cache").exists()  # B has never seen it

    async with aiohttp.ClientSession() as cpe:
        async with cpe.get(f"{b.files}/{name}") as resp:  # cold on B: filled from PostgreSQL
            assert resp.status == 200
            assert resp.headers["ETag"] == etag
            assert await resp.read() == image
        assert on_disk(b) == [f"files/.cache/{etag.strip(chr(34))}"]
        async with cpe.get(f"{b.files}/{name}", headers={"Range": "bytes=1000000-2999999"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 1000000-2999999/{len(image)}"
            assert await resp.read() == image[1000000:3000000]
        async with cpe.get(f"{b.files}/{name}", headers={"Range": "bytes=-100"}) as resp:
            assert resp.status == 206 and await resp.read() == image[-100:]
        # a resume whose If-Range still names the content gets its range...
        headers = {"Range": "bytes=5-9", "If-Range": etag}
        async with cpe.get(f"{b.files}/{name}", headers=headers) as resp:
            assert resp.status == 206 and await resp.read() == image[5:10]
        async with cpe.get(f"{b.files}/{name}", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
        async with cpe.get(f"{b.files}/{name}", headers={"Range": f"bytes={len(image)}-"}) as resp:
            assert resp.status == 416

        # replaced through host B: host A, which cached the upload, serves the new bytes
        newer = secrets.token_bytes(1024 * 1024 + 1)
        new_etag = f'"{hashlib.sha256(newer).hexdigest()}"'
        async with aiohttp.ClientSession(headers=admin) as http:
            async with http.put(
                f"{b.api}/files/{name}",
                params={"fileType": "1 Firmware Upgrade Image", "replace": "true"},
                data=newer,
            ) as resp:
                assert resp.status == 201, await resp.text()
        # ...and one that names the old content gets the whole new file
        async with cpe.get(f"{a.files}/{name}", headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["ETag"] == new_etag
            assert await resp.read() == newer
        # A dropped its copy of the old image when it filled the new one
        assert on_disk(a) == [f"files/.cache/{new_etag.strip(chr(34))}"]

        async with aiohttp.ClientSession(headers=admin) as http:
            async with http.delete(f"{a.api}/files/{name}") as resp:
                assert resp.status == 204
        for host in (a, b):
            async with cpe.get(f"{host.files}/{name}") as resp:
                assert resp.status == 404, host.name
        async with db_pool.acquire() as conn:
            left = await conn.fetchval(
                "SELECT count(*) FROM file_chunks c LEFT JOIN files f ON f.id = c.file_id"
                " WHERE f.id IS NULL"
            )
        assert left == 0


async def test_an_image_over_the_limit_leaves_no_row_chunk_or_file_on_any_host(
    two_hosts: list[Host], db_pool: asyncpg.Pool, unique_serial: Any
) -> None:
    a, b = two_hosts
    admin = {"Authorization": f"Bearer {await token(db_pool, 'admin', unique_serial)}"}
    name = f"{unique_serial('big')}.bin"

    async def body():  # type: ignore[no-untyped-def]
        # chunked, no Content-Length: refused only once the bytes pass the limit
        for _ in range(UPLOAD_LIMIT // (1024 * 1024) + 2):
            yield b"x" * (1024 * 1024)

    async with aiohttp.ClientSession(headers=admin) as http:
        async with http.put(
            f"{a.api}/files/{name}", params={"fileType": "1 Firmware Upgrade Image"}, data=body()
        ) as resp:
            assert resp.status == 413, await resp.text()
    async with db_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM files WHERE name = $1", name) == 0
        orphans = await conn.fetchval(
            "SELECT count(*) FROM file_chunks c LEFT JOIN files f ON f.id = c.file_id"
            " WHERE f.id IS NULL"
        )
    assert orphans == 0
    assert on_disk(a) == [] and on_disk(b) == []  # no temporary file, no cached copy


async def test_a_backup_uploaded_to_one_host_is_restored_from_the_other_and_pruned_from_both(
    two_hosts: list[Host], db_pool: asyncpg.Pool, unique_serial: Any
) -> None:
    a, b = two_hosts
    admin = {"Authorization": f"Bearer {await token(db_pool, 'admin', unique_serial)}"}

    def fleet_on(host: Host, prefix: str) -> Fleet:
        return Fleet(
            FleetConfig(
                acs_url=host.cwmp,
                devices=1,
                serial_prefix=prefix,
                username="cpe",
                password="cpe-pw",
                timing=FAST,
            )
        )

    # device X talks to host A, whose upload URL names host B; device Y talks to
    # host B, whose restore URL names host A
    fx, fy = fleet_on(a, unique_serial("X")), fleet_on(b, unique_serial("Y"))
    await fx.start()
    await fy.start()
    (sx,), (sy,) = list(fx.devices), list(fy.devices)
    x = device_id(fx.config.oui, fx.config.product_class, sx)
    y = device_id(fy.config.oui, fy.config.product_class, sy)
    ssid = "Device.WiFi.SSID.1.SSID"
    http = aiohttp.ClientSession(headers=admin)

    async def call(host: Host, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with http.request(method, host.api + path, **kw) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.read()

    async def run(host: Host, fleet: Fleet, serial: str, device: str, job: dict[str, Any]) -> Any:
        status, made = await call(host, "POST", f"/devices/{device}/tasks", json=job)
        assert status == 201, made
        await fleet.trigger(serial)
        for _ in range(600):
            status, got = await call(host, "GET", f"/tasks/{made['id']}")
            if got["status"] in ("done", "fault", "expired", "cancelled"):
                assert got["status"] == "done", got
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {made} did not finish")

    try:
        await fx.wait_for(lambda: fx.devices[sx].sessions_ok >= 1)
        await fy.wait_for(lambda: fy.devices[sy].sessions_ok >= 1)
        await run(a, fx, sx, x, {"name": "setParameterValues", "parameterValues": [[ssid, "xx"]]})
        up = await run(a, fx, sx, x, {"name": "upload"})
        status, listing = await call(a, "GET", f"/devices/{x}/backups")
        assert status == 200 and len(listing["items"]) == 1, listing
        first = listing["items"][0]
        assert first["task"] == up["id"]
        # B took the upload (the URL named it) and kept nothing on its disk: the
        # bytes are in PostgreSQL, and A serves them to an operator
        assert on_disk(b) == [] and on_disk(a) == []
        status, content = await call(a, "GET", f"/devices/{x}/backups/{first['id']}/content")
        assert status == 200 and hashlib.sha256(content).hexdigest() == first["sha256"]
        assert f"{ssid}=xx\n".encode() in content

        # restored onto Y through host B's session, downloaded from host A
        status, restore = await call(
            b, "POST", f"/devices/{x}/backups/{first['id']}/restore", json={"targetDevice": y}
        )
        assert status == 201, restore
        await fy.trigger(sy)
        for _ in range(600):
            status, got = await call(b, "GET", f"/tasks/{restore['id']}")
            if got["status"] != "queued" and got["status"] != "running":
                break
            await asyncio.sleep(0.05)
        assert got["status"] == "done", got
        assert fy.devices[sy].tree.value(ssid) == "xx"
        assert on_disk(a) == [] and on_disk(b) == []  # no copy of the device's config left

        # a second backup: the cluster's retention (one per device) removes the first
        await run(a, fx, sx, x, {"name": "upload"})

        async def first_gone() -> bool:
            async with db_pool.acquire() as conn:
                return not await conn.fetchval(
                    "SELECT count(*) FROM device_backups WHERE id = $1", first["id"]
                )

        await wait_until(first_gone, 30, "retention pruned the first backup")
        for host in (a, b):
            status, _ = await call(host, "GET", f"/devices/{x}/backups/{first['id']}/content")
            assert status == 404, host.name
            status, listing = await call(host, "GET", f"/devices/{x}/backups")
            assert [i["id"] for i in listing["items"]] != [first["id"]]
            assert len(listing["items"]) == 1
        async with db_pool.acquire() as conn:
            chunks = await conn.fetchval(
                "SELECT count(*) FROM backup_chunks WHERE backup_id = $1", first["id"]
            )
        assert chunks == 0
    finally:
        await http.close()
        await fx.stop()
        await fy.stop()


async def test_a_cold_image_is_read_from_postgresql_once_and_never_cached_when_it_is_corrupt(
    start_acs: StartAcs,
    db_pool: asyncpg.Pool,
    unique_serial: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In-process: many CPEs asking a host for a cold image wait for one fill; bytes
    in PostgreSQL that do not hash to the catalog's SHA-256 are refused (503 with the
    reason), and no copy of them stays on the host's disk."""
    acs = await start_acs(file_store="postgres")
    cache = acs.settings.files_cache_dir
    name = f"{unique_serial('cold')}.bin"
    image = secrets.token_bytes(2 * 1024 * 1024 + 7)
    admin = {"Authorization": f"Bearer {await token(db_pool, 'admin', unique_serial)}"}
    files_url = f"http://127.0.0.1:{acs.ports['files']}/{name}"
    async with aiohttp.ClientSession(headers=admin) as http:
        api = f"http://127.0.0.1:{acs.ports['api']}/api/v1/files/{name}"
        async with http.put(api, params={"fileType": "1 Firmware Upgrade Image"}, data=image) as r:
            assert r.status == 201, await r.text()
            sha = (await r.json())["sha256"]
    assert (cache / sha).read_bytes() == image  # the uploading host keeps its copy
    (cache / sha).unlink()  # as on a host that has never served it

    async def fetch(http: aiohttp.ClientSession, i: int) -> bytes:
        headers = {"Range": f"bytes={i * 1000}-{i * 1000 + 999}"} if i % 2 else {}
        async with http.get(files_url, headers=headers) as resp:
            assert resp.status == (206 if i % 2 else 200)
            return await resp.read()

    with caplog.at_level(logging.INFO, logger="acs.files"):
        async with aiohttp.ClientSession() as cpe:
            got = await asyncio.gather(*(fetch(cpe, i) for i in range(20)))
    for i, body in enumerate(got):
        assert body == (image[i * 1000 : i * 1000 + 1000] if i % 2 else image)
    fills = [r for r in caplog.records if "event=file_cached" in r.getMessage()]
    assert len(fills) == 1, [r.getMessage() for r in fills]

    # one byte changed in the database: the host refuses to serve or cache it
    (cache / sha).unlink()
    async with db_pool.acquire() as conn:
        await conn.execute(
            "UPDATE file_chunks SET data = overlay(data placing '\\x00'::bytea from 5 for 1)"
            " WHERE file_id = (SELECT id FROM files WHERE name = $1) AND seq = 1",
            name,
        )
    async with aiohttp.ClientSession() as cpe:
        async with cpe.get(files_url) as resp:
            assert resp.status == 503
            assert "does not match its catalog" in await resp.text()
    assert sorted(p.name for p in cache.iterdir()) == []  # neither the copy nor its temp file
