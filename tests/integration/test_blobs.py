"""acs/store/blobs.py on the real PostgreSQL: bytes written in chunks with their row,
read back in order, and a single host's local files moved in (`acs files import-local`)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from acs.store import blobs, db, files

pytestmark = pytest.mark.db


async def body(data: bytes, step: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]


async def read_back(conn: asyncpg.Connection, file_id: int) -> bytes:
    return b"".join([chunk async for chunk in blobs.chunks(conn, "file", file_id)])


async def test_chunks_commit_with_the_row_and_a_replace_swaps_them(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    name = f"{unique_serial('blob')}.bin"
    cache = tmp_path / ".cache"
    first = secrets.token_bytes(blobs.CHUNK_BYTES * 2 + 3)  # two full chunks and a short one
    rec = await files.store_file(
        conn,
        tmp_path,
        name,
        body(first),
        max_bytes=10**8,
        file_type="1 Firmware Upgrade Image",
        cache_dir=cache,
    )
    assert await read_back(conn, rec.id) == first
    assert await conn.fetchval("SELECT count(*) FROM file_chunks WHERE file_id = $1", rec.id) == 3
    assert not (tmp_path / name).exists()  # no public name on disk: PostgreSQL is the store
    assert (cache / rec.sha256).read_bytes() == first

    second = b"smaller"
    again = await files.store_file(
        conn,
        tmp_path,
        name,
        body(second),
        max_bytes=10**8,
        file_type="1 Firmware Upgrade Image",
        replace=True,
        cache_dir=cache,
    )
    assert again.id == rec.id and await read_back(conn, rec.id) == second
    # refused past the limit: the old bytes stay, nothing half-written
    with pytest.raises(files.FileTooLarge):
        await files.store_file(
            conn,
            tmp_path,
            name,
            body(first),
            max_bytes=1000,
            file_type="1 Firmware Upgrade Image",
            replace=True,
            cache_dir=cache,
        )
    assert await read_back(conn, rec.id) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache"]

    assert await files.delete_file(conn, tmp_path, name, cache_dir=cache)
    assert await conn.fetchval("SELECT count(*) FROM file_chunks WHERE file_id = $1", rec.id) == 0
    assert second and hashlib.sha256(second).hexdigest() not in {p.name for p in cache.iterdir()}


async def test_local_files_are_imported_only_when_they_match_their_row(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    good, changed, gone = (f"{unique_serial('imp')}.bin" for _ in range(3))
    ids = {}
    for name in (good, changed, gone):
        rec = await files.store_file(
            conn,
            tmp_path,
            name,
            body(name.encode() * 1000),
            max_bytes=10**8,
            file_type="1 Firmware Upgrade Image",
        )  # ACS_FILE_STORE=local: bytes on disk only
        ids[name] = rec.id
    (tmp_path / changed).write_bytes(b"edited behind the catalog's back")
    (tmp_path / gone).unlink()

    result = await blobs.import_local(conn, "file", tmp_path)
    assert good in result["copied"]
    assert changed in result["mismatch"] and changed not in result["copied"]
    assert gone in result["missing"]
    assert await read_back(conn, ids[good]) == good.encode() * 1000
    for name in (changed, gone):
        assert (
            await conn.fetchval("SELECT count(*) FROM file_chunks WHERE file_id = $1", ids[name])
            == 0
        )
    # a second run has nothing left to copy for the good one
    assert good not in (await blobs.import_local(conn, "file", tmp_path))["copied"]


def test_the_import_command_moves_a_single_hosts_files_in(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """`acs files import-local` on a database of its own: what it copied, then that
    nothing is left, and exit 1 naming a file whose bytes are gone."""
    name = f"acs_import_{secrets.token_hex(4)}"

    async def setup() -> str:
        dsn = await db.ensure_database(pg_admin_url, name)
        c = await db.connect(dsn)
        try:
            await db.migrate(c)
            for image in ("a.bin", "b.bin"):
                await files.store_file(
                    c,
                    tmp_path / "files",
                    image,
                    body(image.encode() * 10),
                    max_bytes=10**6,
                    file_type="1 Firmware Upgrade Image",
                )
        finally:
            await c.close()
        return dsn

    dsn = asyncio.run(setup())
    env = {**os.environ, "ACS_DATABASE_URL": dsn, "ACS_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-c", "from acs.cli import main; main()", "files", "import-local"]
    try:
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert "images: 2 copied, 0 missing on disk" in first.stdout
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert "images: 0 copied" in again.stdout and again.returncode == 0

        async def lose_one() -> None:
            c = await db.connect(dsn)
            try:
                await c.execute("DELETE FROM file_chunks")  # as if never imported
            finally:
                await c.close()

        asyncio.run(lose_one())
        (tmp_path / "files" / "b.bin").unlink()
        last = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert last.returncode == 1
        assert "images: 1 copied, 1 missing on disk" in last.stdout
        assert "not copied: b.bin" in last.stderr
    finally:
        asyncio.run(db.drop_database(pg_admin_url, name))


def test_a_database_without_room_refuses_the_file_and_stores_nothing(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """The chunks' table on a real 1 MiB tmpfs tablespace: PostgreSQL's "could not
    extend file" (SQLSTATE 53100) becomes an OSError naming the file (the API's 507),
    and neither the row nor a chunk nor a temporary file is left."""
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user: the test database's server is not on this machine")
    # not under tmp_path: pytest makes /tmp/pytest-of-<user> 0700, which would keep
    # the server's own user out of the tablespace
    base = Path(tempfile.mkdtemp(prefix="acs-tiny-tablespace-"))
    base.chmod(0o755)
    mount = base / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    os.chown(mount, owner.pw_uid, owner.pw_gid)
    name = f"acs_full_{secrets.token_hex(4)}"
    space = f"acs_tiny_{secrets.token_hex(4)}"

    async def scenario() -> None:
        admin = await asyncpg.connect(pg_admin_url)
        try:
            try:
                await admin.execute(f"CREATE TABLESPACE {space} LOCATION '{mount}'")
            except asyncpg.PostgresError as exc:
                pytest.skip(f"the test database's server cannot use {mount}: {exc}")
            dsn = await db.ensure_database(pg_admin_url, name)
            c = await db.connect(dsn)
            try:
                await db.migrate(c)
                await c.execute(f"ALTER TABLE file_chunks SET TABLESPACE {space}")
                await c.execute(f"ALTER INDEX file_chunks_pkey SET TABLESPACE {space}")
                root = tmp_path / "files"
                with pytest.raises(OSError) as refused:
                    await files.store_file(
                        c,
                        root,
                        "big.bin",
                        body(os.urandom(3 * 1024 * 1024)),
                        max_bytes=10**8,
                        file_type="1 Firmware Upgrade Image",
                        cache_dir=root / ".cache",
                    )
                message = str(refused.value)
                assert "PostgreSQL has no room" in message and "'big.bin' was not stored" in message
                assert await c.fetchval("SELECT count(*) FROM files") == 0
                assert await c.fetchval("SELECT count(*) FROM file_chunks") == 0
                assert [p.name for p in root.rglob("*") if p.is_file()] == []
            finally:
                await c.close()
                await db.drop_database(pg_admin_url, name)
        finally:
            try:
                await admin.execute(f"DROP TABLESPACE IF EXISTS {space}")
            finally:
                await admin.close()

    try:
        asyncio.run(scenario())
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(base, ignore_errors=True)
