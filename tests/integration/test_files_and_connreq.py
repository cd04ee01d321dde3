"""The file server (Range, ETag, auth, traversal), the file store, and connection requests."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from acs.config import Settings
from acs.connreq.http import ConnectionRequester
from acs.store import files
from acs.web.cpe_auth import CpeAuthenticator, Credential, ha1_of
from acs.web.files import files_app

pytestmark = pytest.mark.db

IMAGE = os.urandom(300_000)


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_store_file_streams_hashes_and_refuses_duplicates(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    name = f"{unique_serial('fw')}.bin"
    rec = await files.store_file(
        conn,
        tmp_path,
        name,
        chunks(IMAGE),
        max_bytes=10**6,
        file_type="1 Firmware Upgrade Image",
        version="2.0",
        hardware_versions=["A", "B"],
    )
    assert rec.size == len(IMAGE) and rec.sha256 == hashlib.sha256(IMAGE).hexdigest()
    assert (tmp_path / name).read_bytes() == IMAGE
    with pytest.raises(files.FileExists):
        await files.store_file(
            conn, tmp_path, name, chunks(b"x"), max_bytes=10, file_type="1 Firmware Upgrade Image"
        )
    replaced = await files.store_file(
        conn,
        tmp_path,
        name,
        chunks(b"new"),
        max_bytes=10,
        file_type="1 Firmware Upgrade Image",
        replace=True,
    )
    assert replaced.size == 3 and (tmp_path / name).read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left
    assert await files.delete_file(conn, tmp_path, name)
    assert not (tmp_path / name).exists() and await files.get_file(conn, name) is None


async def test_too_large_or_bad_name_stores_nothing(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    name = f"{unique_serial('big')}.bin"
    with pytest.raises(files.FileTooLarge):
        await files.store_file(
            conn,
            tmp_path,
            name,
            chunks(IMAGE),
            max_bytes=1000,
            file_type="1 Firmware Upgrade Image",
        )
    assert list(tmp_path.iterdir()) == [] and await files.get_file(conn, name) is None
    for bad in ("../etc/passwd", ".hidden", "a/b", "", "x" * 201, "spa ce"):
        with pytest.raises(ValueError, match="invalid file name"):
            files.validate_name(bad)


async def test_file_server_range_etag_head_and_traversal(
    db_pool: asyncpg.Pool, tmp_path: Path, unique_serial
) -> None:
    settings = Settings(data_dir=tmp_path)
    name = f"{unique_serial('fw')}.bin"
    async with db_pool.acquire() as conn:
        await files.store_file(
            conn,
            settings.files_dir,
            name,
            chunks(IMAGE),
            max_bytes=10**6,
            file_type="1 Firmware Upgrade Image",
        )
    (settings.files_dir / "stray.bin").write_bytes(b"no row for me")
    runner, base = await serve(files_app(settings, db_pool))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/{name}") as r:
                assert r.status == 200 and await r.read() == IMAGE
                etag = r.headers["ETag"]
            async with http.head(f"{base}/{name}") as r:
                assert r.status == 200 and int(r.headers["Content-Length"]) == len(IMAGE)
            # an interrupted download resumes
            async with http.get(
                f"{base}/{name}", headers={"Range": "bytes=100000-", "If-Range": etag}
            ) as r:
                assert r.status == 206 and await r.read() == IMAGE[100000:]
                assert r.headers["Content-Range"] == f"bytes 100000-{len(IMAGE) - 1}/{len(IMAGE)}"
            async with http.get(f"{base}/{name}", headers={"Range": "bytes=-10"}) as r:
                assert r.status == 206 and await r.read() == IMAGE[-10:]
            async with http.get(
                f"{base}/{name}", headers={"Range": f"bytes={len(IMAGE) + 5}-"}
            ) as r:
                assert r.status == 416
            async with http.get(f"{base}/{name}", headers={"If-None-Match": etag}) as r:
                assert r.status == 304
            for path in ("/stray.bin", "/..%2F..%2Fetc%2Fpasswd", "/%2e%2e/x", "/nope.bin"):
                async with http.get(base + path) as r:
                    assert r.status == 404, path
                    assert b"root:" not in await r.read()
    finally:
        await runner.cleanup()


async def test_file_server_credentials(
    db_pool: asyncpg.Pool, tmp_path: Path, unique_serial
) -> None:
    settings = Settings(data_dir=tmp_path, files_username="fw", files_password="pw")
    name = f"{unique_serial('fw')}.bin"
    async with db_pool.acquire() as conn:
        await files.store_file(
            conn,
            settings.files_dir,
            name,
            chunks(b"abc"),
            max_bytes=10,
            file_type="1 Firmware Upgrade Image",
        )
    runner, base = await serve(files_app(settings, db_pool))
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/{name}") as r:
            assert r.status == 401
        digest = (aiohttp.DigestAuthMiddleware("fw", "pw"),)
        async with aiohttp.ClientSession(middlewares=digest) as http:
            async with http.get(f"{base}/{name}") as r:
                assert r.status == 200 and await r.read() == b"abc"
        wrong = (aiohttp.DigestAuthMiddleware("fw", "nope"),)
        async with aiohttp.ClientSession(middlewares=wrong) as http:
            async with http.get(f"{base}/{name}") as r:
                assert r.status == 401
    finally:
        await runner.cleanup()


def cpe_cr_app(
    *,
    basic_only: bool = False,
    status: int = 200,
    delay: float = 0.0,
    gauge: list[int] | None = None,
) -> web.Application:
    """A CPE's connection-request endpoint, Digest-checked with user/pass."""
    cred = Credential("user", ha1_of("user", "cpe", "pass"))

    async def lookup(name: str) -> Credential | None:
        return cred if name == "user" else None

    auth = CpeAuthenticator("basic" if basic_only else "digest", "cpe", lookup)
    running = [0]

    async def handle(request: web.Request) -> web.Response:
        verdict = await auth.check("GET", request.headers.get("Authorization"))
        if not verdict.ok:
            resp = web.Response(status=401)
            for c in verdict.challenge:
                resp.headers.add("WWW-Authenticate", c)
            return resp
        running[0] += 1
        if gauge is not None:
            gauge.append(running[0])
        await asyncio.sleep(delay)
        running[0] -= 1
        return web.Response(status=status)

    app = web.Application()
    app.router.add_get("/cr", handle)
    return app


async def test_connection_request_outcomes() -> None:
    requester = ConnectionRequester(timeout_s=1.0)
    runners = []
    try:
        ok_runner, ok = await serve(cpe_cr_app())
        no_content_runner, no_content = await serve(cpe_cr_app(status=204))
        busy_runner, busy = await serve(cpe_cr_app(status=503))
        basic_runner, basic = await serve(cpe_cr_app(basic_only=True))
        slow_runner, slow = await serve(cpe_cr_app(delay=3))
        runners = [ok_runner, no_content_runner, busy_runner, basic_runner, slow_runner]
        r = await requester.send(f"{ok}/cr", "user", "pass")
        assert r.ok and r.status == 200
        assert (await requester.send(f"{no_content}/cr", "user", "pass")).ok
        r = await requester.send(f"{ok}/cr", "user", "wrong")
        assert not r.ok and r.status == 401 and "wrong credentials" in r.reason
        r = await requester.send(f"{busy}/cr", "user", "pass")
        assert not r.ok and "503" in r.reason
        r = await requester.send(f"{basic}/cr", "user", "pass")
        assert not r.ok and "only Basic" in r.reason
        allowing = ConnectionRequester(timeout_s=1.0, allow_basic=True)
        assert (await allowing.send(f"{basic}/cr", "user", "pass")).ok
        await allowing.close()
        r = await requester.send(f"{slow}/cr", "user", "pass")
        assert not r.ok and "timeout" in r.reason and r.elapsed_s < 2.5
        r = await requester.send("http://127.0.0.1:9/cr", "user", "pass")
        assert not r.ok and "cannot connect" in r.reason
        r = await requester.send("ftp://127.0.0.1/cr", "user", "pass")
        assert not r.ok and "not an http" in r.reason
    finally:
        await requester.close()
        for runner in runners:
            await runner.cleanup()


async def test_connection_requests_respect_the_concurrency_limit() -> None:
    gauge: list[int] = []
    runner, base = await serve(cpe_cr_app(delay=0.2, gauge=gauge))
    requester = ConnectionRequester(timeout_s=5.0, max_concurrent=3)
    try:
        results = await asyncio.gather(
            *(requester.send(f"{base}/cr", "user", "pass") for _ in range(10))
        )
        assert all(r.ok for r in results)
        assert max(gauge) == 3
    finally:
        await requester.close()
        await runner.cleanup()
