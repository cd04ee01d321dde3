"""The file store (real PostgreSQL, real disk) and the file server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from yarl import URL

from acs.config import Settings
from acs.store import files
from acs.web.files import files_app, parse_range

pytestmark = pytest.mark.db

IMAGE = os.urandom(3 * 1024 * 1024 + 17)  # a few sendfile calls' worth, odd length
FW = "1 Firmware Upgrade Image"


async def chunks(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def on_disk(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------- names


@pytest.mark.parametrize("good", ["a", "fw-1.2_3.bin", "A" * 200, "_x", "-x", "x..y"])
def test_valid_names(good: str) -> None:
    assert files.validate_name(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".hidden",
        ".",
        "..",
        "../etc/passwd",
        "a/b",
        "a\\b",
        "x" * 201,
        "spa ce",
        "é.bin",
        "a\x00b",
        ".upload-abc",
        "%2e%2e",
    ],
)
def test_invalid_names(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid file name"):
        files.validate_name(bad)


# ----------------------------------------------------------------- store


async def test_store_streams_hashes_and_records_everything(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    name = f"{unique_serial('fw')}.bin"
    rec = await files.store_file(
        conn,
        tmp_path,
        name,
        chunks(IMAGE),
        max_bytes=len(IMAGE),  # exactly at the limit is allowed
        file_type=FW,
        oui="00259E",
        product_class="HG8245",
        version="2.0.1",
        hardware_versions=["A", "B"],
        metadata={"notes": "signed", "build": 17},
    )
    assert rec.name == name and rec.size == len(IMAGE)
    assert rec.sha256 == hashlib.sha256(IMAGE).hexdigest()
    assert (rec.file_type, rec.oui, rec.product_class, rec.version) == (
        FW,
        "00259E",
        "HG8245",
        "2.0.1",
    )
    assert rec.hardware_versions == ["A", "B"]
    assert rec.metadata == {"notes": "signed", "build": 17}
    assert rec.created_at == rec.updated_at
    assert (tmp_path / name).read_bytes() == IMAGE
    assert on_disk(tmp_path) == [name]  # no temporary file left behind
    assert await files.get_file(conn, name) == rec
    assert name in [f.name for f in await files.list_files(conn)]


async def test_duplicates_refused_and_replace_keeps_the_identity(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    name = f"{unique_serial('cfg')}.xml"
    first = await files.store_file(
        conn,
        tmp_path,
        name,
        chunks(b"<old/>"),
        max_bytes=100,
        file_type="3 Vendor Configuration File",
    )
    with pytest.raises(files.FileExists):
        await files.store_file(conn, tmp_path, name, chunks(b"x"), max_bytes=10, file_type=FW)
    assert (tmp_path / name).read_bytes() == b"<old/>"
    again = await files.store_file(
        conn, tmp_path, name, chunks(b"<new/>!"), max_bytes=100, file_type=FW, replace=True
    )
    assert again.id == first.id and again.created_at == first.created_at
    assert again.updated_at > first.updated_at
    assert (again.size, again.file_type) == (7, FW)
    assert again.sha256 == hashlib.sha256(b"<new/>!").hexdigest()
    assert (tmp_path / name).read_bytes() == b"<new/>!"
    assert on_disk(tmp_path) == [name]


async def test_concurrent_uploads_of_one_name_store_exactly_one(
    db_pool: asyncpg.Pool, tmp_path: Path, unique_serial
) -> None:
    name = f"{unique_serial('race')}.bin"
    bodies = [bytes([i]) * 200_000 for i in range(4)]

    async def upload(body: bytes) -> files.FileRecord:
        async with db_pool.acquire() as c:
            return await files.store_file(
                c, tmp_path, name, chunks(body, 4096), max_bytes=10**6, file_type=FW
            )

    results = await asyncio.gather(*(upload(b) for b in bodies), return_exceptions=True)
    winners = [r for r in results if isinstance(r, files.FileRecord)]
    assert len(winners) == 1, results
    assert all(isinstance(r, files.FileExists) for r in results if r is not winners[0])
    # the bytes on disk are the winner's, whoever renamed last
    assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == winners[0].sha256
    assert on_disk(tmp_path) == [name]


async def test_too_large_stores_nothing(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    name = f"{unique_serial('big')}.bin"
    with pytest.raises(files.FileTooLarge, match="over the limit of 1000 bytes"):
        await files.store_file(
            conn, tmp_path, name, chunks(IMAGE, 300), max_bytes=1000, file_type=FW
        )
    assert on_disk(tmp_path) == [] and await files.get_file(conn, name) is None


async def test_invalid_name_touches_nothing(conn: asyncpg.Connection, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        await files.store_file(
            conn, tmp_path, "../escape.bin", chunks(b"x"), max_bytes=10, file_type=FW
        )
    assert not (tmp_path.parent / "escape.bin").exists() and on_disk(tmp_path) == []


async def test_cancelled_upload_leaves_no_temporary_file(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    name = f"{unique_serial('cut')}.bin"
    half_sent = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"x" * 100_000
        half_sent.set()
        await asyncio.sleep(3600)  # the client stopped sending
        yield b""

    task = asyncio.ensure_future(
        files.store_file(conn, tmp_path, name, stalled(), max_bytes=10**6, file_type=FW)
    )
    await half_sent.wait()
    await asyncio.sleep(0.05)
    assert len(on_disk(tmp_path)) == 1 and on_disk(tmp_path)[0].startswith(".upload-")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert on_disk(tmp_path) == [] and await files.get_file(conn, name) is None


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, for a real ENOSPC; skipped where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_disk_full_stores_nothing_and_says_so(
    conn: asyncpg.Connection, tiny_disk: Path, unique_serial
) -> None:
    name = f"{unique_serial('full')}.bin"
    with pytest.raises(OSError) as failure:
        await files.store_file(conn, tiny_disk, name, chunks(IMAGE), max_bytes=10**8, file_type=FW)
    assert failure.value.errno == errno.ENOSPC
    assert "no space left for file" in str(failure.value) and "nothing was stored" in str(
        failure.value
    )
    assert on_disk(tiny_disk) == [] and await files.get_file(conn, name) is None
    # the space was given back: a file that fits goes in
    small = await files.store_file(
        conn, tiny_disk, name, chunks(b"y" * 50_000), max_bytes=10**8, file_type=FW
    )
    assert small.size == 50_000 and on_disk(tiny_disk) == [name]


async def test_delete_removes_row_then_bytes(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    name = f"{unique_serial('del')}.bin"
    await files.store_file(conn, tmp_path, name, chunks(b"abc"), max_bytes=10, file_type=FW)
    assert await files.delete_file(conn, tmp_path, name)
    assert await files.get_file(conn, name) is None and on_disk(tmp_path) == []
    assert not await files.delete_file(conn, tmp_path, name)
    assert not await files.delete_file(conn, tmp_path, "../etc/passwd")
    # a row whose file vanished can still be deleted
    await files.store_file(conn, tmp_path, name, chunks(b"abc"), max_bytes=10, file_type=FW)
    (tmp_path / name).unlink()
    assert await files.delete_file(conn, tmp_path, name)


# ----------------------------------------------------------------- range parsing


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-", (0, 99)),
        ("bytes=10-19", (10, 19)),
        ("bytes=90-500", (90, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("bytes=99-99", (99, 99)),
        ("bytes=20-10", None),  # invalid: ignored
        ("bytes=0-1,5-6", None),  # several ranges: whole file
        ("items=0-5", None),
        ("bytes=-", None),
        # numbers past int()'s 4300 digits: as large as they are, not a crash
        ("bytes=0-" + "9" * 4301, (0, 99)),
        ("bytes=-" + "9" * 4301, (0, 99)),
        ("bytes=50-" + "0" * 4301 + "5", None),  # leading zeros: 5 < 50, ignored
        ("bytes=" + "0" * 4301 + "5-", (5, 99)),
    ],
)
def test_parse_range(header: str, expected: tuple[int, int] | None) -> None:
    got = parse_range(header, 100)
    assert (None if got is None else (got.start, got.end)) == expected


@pytest.mark.parametrize(
    "header", ["bytes=100-", "bytes=500-600", "bytes=-0", "bytes=" + "9" * 4301 + "-"]
)
def test_parse_range_unsatisfiable(header: str) -> None:
    from acs.web.files import Unsatisfiable

    with pytest.raises(Unsatisfiable):
        parse_range(header, 100)


# ----------------------------------------------------------------- server


@pytest_asyncio.fixture(loop_scope="session")
async def served(
    db_pool: asyncpg.Pool, tmp_path: Path, unique_serial
) -> AsyncIterator[tuple[str, str, files.FileRecord, Settings]]:
    """(base URL, name, record, settings) of a file server holding IMAGE."""
    settings = Settings(data_dir=tmp_path)
    name = f"{unique_serial('fw')}.bin"
    async with db_pool.acquire() as conn:
        record = await files.store_file(
            conn, settings.files_dir, name, chunks(IMAGE), max_bytes=10**8, file_type=FW
        )
    runner, base = await serve(files_app(settings, db_pool))
    try:
        yield base, name, record, settings
    finally:
        await runner.cleanup()


async def test_full_get_and_head(served) -> None:
    base, name, record, _ = served
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/{name}") as r:
            assert r.status == 200 and await r.read() == IMAGE
            assert r.headers["ETag"] == f'"{record.sha256}"'
            assert int(r.headers["Content-Length"]) == len(IMAGE)
            assert r.headers["Content-Type"] == "application/octet-stream"
            assert r.headers["Accept-Ranges"] == "bytes"
            assert r.headers["Last-Modified"] == format_datetime(record.updated_at, usegmt=True)
            assert "Content-Encoding" not in r.headers
        async with http.head(f"{base}/{name}") as r:
            assert r.status == 200 and await r.read() == b""
            assert int(r.headers["Content-Length"]) == len(IMAGE)
            assert r.headers["ETag"] == f'"{record.sha256}"'
        # HEAD ignores Range (RFC 9110 14.2)
        async with http.head(f"{base}/{name}", headers={"Range": "bytes=10-"}) as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == len(IMAGE)


async def test_range_resume_suffix_and_416(served) -> None:
    base, name, record, _ = served
    etag = f'"{record.sha256}"'
    size = len(IMAGE)
    async with aiohttp.ClientSession() as http:
        # an interrupted download resumes where it stopped
        async with http.get(
            f"{base}/{name}", headers={"Range": "bytes=1000000-", "If-Range": etag}
        ) as r:
            assert r.status == 206 and await r.read() == IMAGE[1_000_000:]
            assert r.headers["Content-Range"] == f"bytes 1000000-{size - 1}/{size}"
            assert int(r.headers["Content-Length"]) == size - 1_000_000
        async with http.get(f"{base}/{name}", headers={"Range": "bytes=5-14"}) as r:
            assert r.status == 206 and await r.read() == IMAGE[5:15]
            assert r.headers["Content-Range"] == f"bytes 5-14/{size}"
        async with http.get(f"{base}/{name}", headers={"Range": "bytes=-10"}) as r:
            assert r.status == 206 and await r.read() == IMAGE[-10:]
            assert r.headers["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"
        async with http.get(f"{base}/{name}", headers={"Range": f"bytes={size}-"}) as r:
            assert r.status == 416 and await r.read() == b""
            assert r.headers["Content-Range"] == f"bytes */{size}"
        async with http.get(f"{base}/{name}", headers={"Range": "bytes=0-1,10-11"}) as r:
            assert r.status == 200 and await r.read() == IMAGE
        # If-Range by date: exactly Last-Modified honours the range
        lm = format_datetime(record.updated_at, usegmt=True)
        async with http.get(f"{base}/{name}", headers={"Range": "bytes=3-", "If-Range": lm}) as r:
            assert r.status == 206 and await r.read() == IMAGE[3:]


async def test_if_range_with_another_etag_sends_the_whole_file(served) -> None:
    base, name, _, _ = served
    async with aiohttp.ClientSession() as http:
        for validator in ('"0123"', 'W/"whatever"', "Sat, 01 Jan 2000 00:00:00 GMT"):
            async with http.get(
                f"{base}/{name}", headers={"Range": "bytes=100-", "If-Range": validator}
            ) as r:
                assert r.status == 200 and await r.read() == IMAGE, validator


async def test_etag_conditionals(served) -> None:
    base, name, record, _ = served
    etag = f'"{record.sha256}"'
    async with aiohttp.ClientSession() as http:
        for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            async with http.get(f"{base}/{name}", headers={"If-None-Match": value}) as r:
                assert r.status == 304 and await r.read() == b"", value
                assert r.headers["ETag"] == etag
        async with http.get(f"{base}/{name}", headers={"If-None-Match": '"other"'}) as r:
            assert r.status == 200 and await r.read() == IMAGE
        async with http.get(f"{base}/{name}", headers={"If-Match": '"other"'}) as r:
            assert r.status == 412
        async with http.get(f"{base}/{name}", headers={"If-Match": etag}) as r:
            assert r.status == 200


async def test_replaced_file_is_not_spliced_into_an_old_download(
    served, db_pool: asyncpg.Pool
) -> None:
    base, name, record, settings = served
    old_etag = f'"{record.sha256}"'
    new = os.urandom(len(IMAGE) // 2)
    async with db_pool.acquire() as conn:
        await files.store_file(
            conn,
            settings.files_dir,
            name,
            chunks(new),
            max_bytes=10**8,
            file_type=FW,
            replace=True,
        )
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{base}/{name}", headers={"Range": "bytes=1000-", "If-Range": old_etag}
        ) as r:
            assert r.status == 200 and await r.read() == new
            assert r.headers["ETag"] == f'"{hashlib.sha256(new).hexdigest()}"'
        async with http.get(f"{base}/{name}", headers={"If-None-Match": old_etag}) as r:
            assert r.status == 200


async def test_disk_not_matching_the_catalog_is_not_served(served) -> None:
    base, name, _, settings = served
    (settings.files_dir / name).write_bytes(b"truncated by someone")
    async with aiohttp.ClientSession() as http, http.get(f"{base}/{name}") as r:
        assert r.status == 503 and "does not match its catalog" in await r.text()


async def test_unknown_stray_and_traversal(served, tmp_path: Path) -> None:
    base, name, _, settings = served
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 SECRET-CONTENT")
    (settings.files_dir / "stray.bin").write_bytes(b"no row for me")
    (settings.files_dir / ".upload-abc").write_bytes(b"half an upload")
    paths = [
        "/nope.bin",
        "/stray.bin",
        "/.upload-abc",
        "/..%2Fsecret.txt",
        "/..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e%2fsecret.txt",
        "/%2E%2E/secret.txt",
        "/..%5Csecret.txt",
        "/%2Fetc%2Fpasswd",
        f"/{name}%00.txt",
        f"/{name}/",
        f"/{name}/..",
        "/..",
        "/.",
    ]
    async with aiohttp.ClientSession() as http:
        for path in paths:
            async with http.get(URL(base + path, encoded=True)) as r:
                body = await r.read()
                assert r.status in (400, 404), (path, r.status)
                assert b"root:" not in body and b"SECRET-CONTENT" not in body, path
                assert b"no row" not in body and b"half an upload" not in body, path


async def test_raw_request_targets_cannot_escape(served, tmp_path: Path) -> None:
    """What a hostile client puts on the wire, unnormalised by any client library."""
    base, _, _, _ = served
    (tmp_path / "secret.txt").write_text("top secret")
    host, port = base.removeprefix("http://").split(":")
    for target in ("/../secret.txt", "/files/../../secret.txt", "/..%2fsecret.txt", "//etc/passwd"):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
        writer.close()
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 404), (target, answer[:200])
        assert b"top secret" not in answer and b"root:" not in answer


async def test_symlink_under_a_catalogued_name_is_not_followed(served, tmp_path: Path) -> None:
    base, name, _, settings = served
    outside = tmp_path / "outside.bin"
    outside.write_bytes(IMAGE)  # same size: only the link check can stop it
    path = settings.files_dir / name
    path.unlink()
    path.symlink_to(outside)
    async with aiohttp.ClientSession() as http, http.get(f"{base}/{name}") as r:
        assert r.status == 404


async def test_credentials_required_when_configured(
    db_pool: asyncpg.Pool, tmp_path: Path, unique_serial
) -> None:
    settings = Settings(data_dir=tmp_path, files_username="fw", files_password="pw")
    name = f"{unique_serial('auth')}.bin"
    async with db_pool.acquire() as conn:
        await files.store_file(
            conn, settings.files_dir, name, chunks(b"abc"), max_bytes=10, file_type=FW
        )
    runner, base = await serve(files_app(settings, db_pool))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/{name}") as r:
                assert r.status == 401 and b"abc" not in await r.read()
                schemes = [h.split()[0] for h in r.headers.getall("WWW-Authenticate")]
                assert schemes == ["Digest", "Basic"]
            async with http.head(f"{base}/{name}") as r:
                assert r.status == 401
            # unknown names do not leak whether they exist before authentication
            async with http.get(f"{base}/nope.bin") as r:
                assert r.status == 401
            basic = {"Authorization": aiohttp.encode_basic_auth("fw", "pw")}
            async with http.get(f"{base}/{name}", headers=basic) as r:
                assert r.status == 200 and await r.read() == b"abc"
            wrong = {"Authorization": aiohttp.encode_basic_auth("fw", "nope")}
            async with http.get(f"{base}/{name}", headers=wrong) as r:
                assert r.status == 401
        digest = (aiohttp.DigestAuthMiddleware("fw", "pw", preemptive=False),)
        async with aiohttp.ClientSession(middlewares=digest) as http:
            async with http.get(f"{base}/{name}", headers={"Range": "bytes=1-"}) as r:
                assert r.status == 206 and await r.read() == b"bc"
            async with http.head(f"{base}/{name}") as r:
                assert r.status == 200 and r.headers["Content-Length"] == "3"
        wrong_digest = (aiohttp.DigestAuthMiddleware("fw", "nope"),)
        async with aiohttp.ClientSession(middlewares=wrong_digest) as http:
            async with http.get(f"{base}/{name}") as r:
                assert r.status == 401
    finally:
        await runner.cleanup()

    # parameters override the settings (and an app without any asks for nothing)
    open_settings = Settings(data_dir=tmp_path)
    runner, base = await serve(files_app(open_settings, db_pool, username="u", password="p"))
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/{name}") as r:
            assert r.status == 401
    finally:
        await runner.cleanup()
