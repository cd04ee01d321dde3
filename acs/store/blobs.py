"""File bytes in PostgreSQL, so that every ACS host serves every file (ACS_FILE_STORE=postgres).

Why PostgreSQL and not a shared directory or an S3 store: the database is the
one thing every host of a cluster already reaches and that already survives
losing a machine (Patroni), and a file's bytes then commit in the same
transaction as its row, so a refusal or a crash can never leave a row without
its bytes or bytes without a row, on any host. The price is read speed (a
chunked bytea read is slower than sendfile from a disk), which is why each host
keeps a disk cache of catalog images (``fill_cache``), verified by SHA-256 and
filled on the first request: Range, If-Range and ETag are then served from disk
exactly as with ``local`` files (README "Files on several hosts" has the
figures).

The bytes are chunked bytea rows (``file_chunks``, ``backup_chunks``, migration
0027) rather than large objects: a chunk row is deleted by ``ON DELETE CASCADE``
with its file or backup (large objects would need a trigger or lo_unlink calls
and leak when one is missed), it goes through logical replication and
pg_dump like any row, and COPY writes it in a streaming way.

Writing streams from the upload's fsynced temporary file in chunks of
``CHUNK_BYTES`` (COPY from an async generator): the whole file is never in
memory. Reading streams chunk by chunk with a cursor in one REPEATABLE READ
transaction, so a replace committing meanwhile cannot splice old and new
bytes; the digest is checked at the end anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, BinaryIO, Literal

import asyncpg

# big enough that a 32 MB image is 32 rows, small enough that a chunk is a
# modest allocation in the ACS and in PostgreSQL (bytea is built in memory)
CHUNK_BYTES = 1024 * 1024

Kind = Literal["file", "backup"]
_TABLES: dict[str, tuple[str, str]] = {
    "file": ("file_chunks", "file_id"),
    "backup": ("backup_chunks", "backup_id"),
}
CACHE_TEMP_PREFIX = ".fill-"


class Corrupt(Exception):
    """The bytes read back do not have the row's size or SHA-256."""


class DatabaseFull(OSError):
    """PostgreSQL refused the chunks for want of room (SQLSTATE class 53): the
    upload is refused like one on a full disk (507), not a server error."""


async def write(conn: asyncpg.Connection, kind: Kind, owner: int, path: Path) -> int:
    """Replace the owner's chunks by the content of ``path``; returns the bytes written.

    Call inside the transaction that writes the owner's row, so both commit
    or neither does.
    """
    table, column = _TABLES[kind]
    await conn.execute(f"DELETE FROM {table} WHERE {column} = $1", owner)
    written = 0

    async def records() -> AsyncIterator[tuple[int, int, bytes]]:
        nonlocal written
        fobj = await asyncio.to_thread(path.open, "rb")
        try:
            seq = 0
            while data := await asyncio.to_thread(fobj.read, CHUNK_BYTES):
                written += len(data)
                yield (owner, seq, data)
                seq += 1
        finally:
            await asyncio.to_thread(fobj.close)

    try:
        await conn.copy_records_to_table(table, records=records(), columns=[column, "seq", "data"])
    except asyncpg.InsufficientResourcesError as exc:
        raise DatabaseFull(
            errno.ENOSPC, f"PostgreSQL has no room for the {kind}'s bytes: {exc}"
        ) from exc
    return written


async def chunks(conn: asyncpg.Connection, kind: Kind, owner: int) -> AsyncIterator[bytes]:
    """The owner's bytes in order, one snapshot (see the module doc)."""
    table, column = _TABLES[kind]
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        query = f"SELECT data FROM {table} WHERE {column} = $1 ORDER BY seq"
        async for row in conn.cursor(query, owner, prefetch=2):
            yield row["data"]


async def _copy_to(
    conn: asyncpg.Connection, kind: Kind, owner: int, out: IO[bytes], size: int, sha256: str
) -> None:
    digest = hashlib.sha256()
    got = 0
    async for data in chunks(conn, kind, owner):
        got += len(data)
        if got > size:
            break
        digest.update(data)
        await asyncio.to_thread(out.write, data)
    if got != size or digest.hexdigest() != sha256:
        raise Corrupt(f"{kind} {owner}: {got} bytes read back, {size} recorded, or another SHA-256")


async def to_private_file(
    conn: asyncpg.Connection, kind: Kind, owner: int, size: int, sha256: str
) -> BinaryIO:
    """The bytes in an anonymous temporary file (gone from the disk once closed),
    positioned at 0: how a CPE's backup, which may hold its secrets, is served
    without leaving a copy on any host. Raises Corrupt."""
    out = await asyncio.to_thread(tempfile.TemporaryFile)
    try:
        await _copy_to(conn, kind, owner, out, size, sha256)
        await asyncio.to_thread(out.flush)
        await asyncio.to_thread(out.seek, 0)
        return out
    except BaseException:
        await asyncio.to_thread(out.close)
        raise


# ----------------------------------------------------------------- the per-host image cache

# one fill per image at a time in this process: a campaign's first hundred
# CPEs asking for a cold image wait for one read of it, not a hundred
_filling: dict[Path, asyncio.Lock] = {}


def cache_path(cache_dir: Path, sha256: str) -> Path:
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a SHA-256: {sha256!r}")
    return cache_dir / sha256


def _open_cached(path: Path, size: int) -> IO[bytes] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    fobj = os.fdopen(fd, "rb")
    if os.fstat(fd).st_size != size:
        fobj.close()  # a copy we did not write (named by content, so never a stale one)
        return None
    return fobj


async def open_cached(
    pool: asyncpg.Pool, cache_dir: Path, file_id: int, size: int, sha256: str
) -> tuple[IO[bytes], bool]:
    """An open copy of the image on this host's disk, and whether it was filled now.

    The copy is named by its SHA-256 and written only after the bytes read
    from PostgreSQL hashed to it, so a copy found is the right one. Raises
    Corrupt when the database's bytes do not match the catalog.
    """
    path = cache_path(cache_dir, sha256)
    fobj = await asyncio.to_thread(_open_cached, path, size)
    if fobj is not None:
        return fobj, False
    lock = _filling.setdefault(path, asyncio.Lock())
    try:
        async with lock:
            fobj = await asyncio.to_thread(_open_cached, path, size)
            if fobj is not None:
                return fobj, False  # another request filled it while we waited
            await _fill(pool, cache_dir, path, file_id, size, sha256)
    finally:
        if not lock.locked():
            _filling.pop(path, None)
    fobj = await asyncio.to_thread(_open_cached, path, size)
    if fobj is None:
        raise Corrupt(f"image {sha256} vanished from the cache right after its fill")
    return fobj, True


async def _fill(
    pool: asyncpg.Pool, cache_dir: Path, path: Path, file_id: int, size: int, sha256: str
) -> None:
    await asyncio.to_thread(cache_dir.mkdir, parents=True, exist_ok=True)
    fd, name = await asyncio.to_thread(tempfile.mkstemp, prefix=CACHE_TEMP_PREFIX, dir=cache_dir)
    tmp = Path(name)
    out = os.fdopen(fd, "wb")
    try:
        async with pool.acquire() as conn:
            await _copy_to(conn, "file", file_id, out, size, sha256)
            known = {r["sha256"] for r in await conn.fetch("SELECT DISTINCT sha256 FROM files")}
        await asyncio.to_thread(out.close)
        await asyncio.to_thread(os.replace, tmp, path)
        tmp = None  # type: ignore[assignment]
        await asyncio.to_thread(prune_cache, cache_dir, known | {sha256})
    finally:
        if not out.closed:
            await asyncio.to_thread(out.close)
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(tmp.unlink)


# a fill's temporary file older than this belongs to a process that died mid-fill
STALE_FILL_S = 3600.0


def prune_cache(cache_dir: Path, keep: set[str]) -> int:
    """Remove this host's copies of images no catalog row names any more (deleted or
    replaced on any host): the cache holds at most the catalog. Runs after each fill
    and each delete on this host."""
    if not cache_dir.is_dir():
        return 0
    gone = 0
    now = time.time()
    for entry in os.scandir(cache_dir):
        if entry.name in keep:
            continue  # an image still in the catalog
        if entry.name.startswith(CACHE_TEMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                if now - entry.stat().st_mtime < STALE_FILL_S:
                    continue  # a fill in flight
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            gone += 1
    return gone


# ----------------------------------------------------------------- moving a single host's files in


def _digest_of(path: Path) -> tuple[int, str] | None:
    try:
        with path.open("rb") as fobj:
            digest = hashlib.sha256()
            size = 0
            while data := fobj.read(CHUNK_BYTES):
                size += len(data)
                digest.update(data)
    except FileNotFoundError:
        return None
    return size, digest.hexdigest()


_WITHOUT_CHUNKS = {
    "file": "SELECT id, name AS stored_as, size, sha256 FROM files f"
    " WHERE NOT EXISTS (SELECT 1 FROM file_chunks c WHERE c.file_id = f.id) ORDER BY id",
    "backup": "SELECT id, storage_name AS stored_as, size, sha256 FROM device_backups b"
    " WHERE NOT EXISTS (SELECT 1 FROM backup_chunks c WHERE c.backup_id = b.id) ORDER BY id",
}
_LOCK_ROW = {
    "file": "SELECT sha256 FROM files WHERE id = $1 FOR UPDATE",
    "backup": "SELECT sha256 FROM device_backups WHERE id = $1 FOR UPDATE",
}


async def import_local(conn: asyncpg.Connection, kind: Kind, root: Path) -> dict[str, list[str]]:
    """Copy into PostgreSQL the bytes of every row that has none yet, from the local
    store of ``ACS_FILE_STORE=local`` (``root``): how an installation of one host
    moves to ``postgres``. A file is copied only when its size and SHA-256 are the
    row's, each in a transaction holding the row (a delete meanwhile wins); the
    names of those copied, missing on disk and not matching are returned."""
    out: dict[str, list[str]] = {"copied": [], "missing": [], "mismatch": []}
    for row in await conn.fetch(_WITHOUT_CHUNKS[kind]):
        path = root / row["stored_as"]
        found = await asyncio.to_thread(_digest_of, path)
        if found is None:
            out["missing"].append(row["stored_as"])
            continue
        if found != (row["size"], row["sha256"]):
            out["mismatch"].append(row["stored_as"])
            continue
        async with conn.transaction():
            if await conn.fetchval(_LOCK_ROW[kind], row["id"]) != row["sha256"]:
                continue  # deleted or replaced since the listing: nothing to import
            await write(conn, kind, row["id"], path)
        out["copied"].append(row["stored_as"])
    return out
