"""Files CPEs download: bytes on disk under one root, metadata in PostgreSQL.

The catalog (table ``files``) is the truth: the file server serves a name only
when it has a row, so a file on disk without a row is invisible. The order of
an upload is chosen so that a crash at any point leaves no row without its
file and no half-written file under a public name:

1. the body streams into ``root/.upload-*`` (hashed and counted as it comes,
   refused past the limit); nothing public exists yet;
2. the temporary file is fsynced, so its bytes are on disk before any row
   can point at them;
3. in one transaction: the row is inserted (or updated, for ``replace``), the
   temporary file is renamed over the public name (``os.replace`` is atomic:
   a reader sees the old file or the new one, never a mix), the directory is
   fsynced so the rename survives a power cut, and only then the transaction
   commits.

A crash before 3 leaves a stray ``.upload-*`` (never served: names may not
start with a dot). A crash between the rename and the commit leaves, for a
new name, a file without a row (invisible; the next upload of that name
replaces it), and for a replaced name the new bytes with the old row; the file
server compares the file's size with the row's and refuses to serve such a
mismatch instead of sending bytes under a wrong ETag. Committing before the
rename would be worse: a row pointing at a missing or old file.

Uploads and deletes of one name are serialized across processes by a
session-level advisory lock held until the disk matches the catalog, so a
delete's unlink can never remove the bytes of an upload that raced it.

With ACS_FILE_STORE=postgres (``cache_dir`` given) step 3 also copies the
temporary file into ``file_chunks`` inside the same transaction
(acs/store/blobs.py), and the temporary file becomes this host's cached copy
(named by its SHA-256) instead of taking the public name: PostgreSQL is then
the truth for every host, and a crash before the commit leaves no chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg

from acs.store import blobs

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_COLUMNS = (
    "id, name, size, sha256, file_type, oui, product_class, version, hardware_versions,"
    " metadata, created_at, updated_at"
)
# first key of the two-int advisory locks on file names ("FILE"), so they
# cannot collide with other users of advisory locks
_LOCK_SPACE = 0x46494C45
TEMP_PREFIX = ".upload-"


class FileExists(Exception):
    pass


class FileTooLarge(Exception):
    pass


@dataclass(slots=True)
class FileRecord:
    id: int
    name: str
    size: int
    sha256: str
    file_type: str
    oui: str
    product_class: str
    version: str | None
    hardware_versions: list[str]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> FileRecord:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["hardware_versions"] = list(values["hardware_versions"])
        return cls(**values)


def validate_name(name: str) -> str:
    """1-200 characters of letters, digits, '.', '_', '-', not starting with a dot.

    No '/' and no leading dot: a name is always one entry directly under the
    root, and never '.', '..' or one of our temporary files.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid file name {name!r}: use 1-200 letters, digits, '.', '_' or '-',"
            " not starting with '.'"
        )
    return name


def path_of(root: Path, name: str) -> Path:
    """Where the bytes of ``name`` live; ValueError for a name that is not valid."""
    return root / validate_name(name)


# ----------------------------------------------------------------- blocking helpers (threads)


def open_temp(root: Path) -> tuple[BinaryIO, Path]:
    root.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=root)
    return os.fdopen(fd, "wb"), Path(name)


def finish_temp(out: BinaryIO) -> None:
    try:
        out.flush()
        os.fsync(out.fileno())
    finally:
        out.close()


def _fsync_dir(root: Path) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def discard(out: BinaryIO | None, tmp: Path | None) -> None:
    if out is not None:
        with contextlib.suppress(OSError):
            out.close()  # may fail again on a full disk; the unlink below still frees it
    if tmp is not None:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# ----------------------------------------------------------------- locking


@contextlib.asynccontextmanager
async def _name_lock(conn: asyncpg.Connection, name: str) -> AsyncIterator[None]:
    """Serialize uploads and deletes of one name across processes.

    Session-level, not transaction-level: a delete holds it past its commit
    until the unlink is done. A dropped connection releases it by itself.
    """
    await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", _LOCK_SPACE, name)
    try:
        yield
    finally:
        if not conn.is_closed():
            try:
                await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", _LOCK_SPACE, name)
            except BaseException:
                # the pool does not reset session state (acs.store.db): a lock
                # we could not give back goes with the connection
                conn.terminate()
                raise


# ----------------------------------------------------------------- repository

_UPSERT = f"""
    INSERT INTO files (name, size, sha256, file_type, oui, product_class, version,
                       hardware_versions, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (name) DO UPDATE SET
        size = EXCLUDED.size, sha256 = EXCLUDED.sha256, file_type = EXCLUDED.file_type,
        oui = EXCLUDED.oui, product_class = EXCLUDED.product_class,
        version = EXCLUDED.version, hardware_versions = EXCLUDED.hardware_versions,
        metadata = EXCLUDED.metadata, updated_at = now()
    RETURNING {_COLUMNS}
"""
_INSERT = f"""
    INSERT INTO files (name, size, sha256, file_type, oui, product_class, version,
                       hardware_versions, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    RETURNING {_COLUMNS}
"""


async def store_file(
    conn: asyncpg.Connection,
    root: Path,
    name: str,
    chunks: AsyncIterator[bytes],
    *,
    max_bytes: int,
    file_type: str,
    oui: str = "",
    product_class: str = "",
    version: str | None = None,
    hardware_versions: Iterable[str] = (),
    metadata: dict[str, Any] | None = None,
    replace: bool = False,
    cache_dir: Path | None = None,
) -> FileRecord:
    """Stream ``chunks`` to ``root/name`` and record it; see the module doc for the order.

    Raises ValueError (bad name), FileExists (name taken and not ``replace``),
    FileTooLarge (more than ``max_bytes``), OSError (disk full or other I/O
    failure, with a message naming the file); in every case nothing is stored.
    """
    target = path_of(root, name)
    # early refusal, before reading a possibly huge body; the unique
    # constraint below decides races
    if not replace and await get_file(conn, name) is not None:
        raise FileExists(name)
    out: BinaryIO | None = None
    tmp: Path | None = None
    size = 0
    try:
        # file I/O runs in threads: a slow disk or fsync must not stall CWMP sessions
        writing, written = await asyncio.to_thread(open_temp, root)
        out, tmp = writing, written
        digest = hashlib.sha256()
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise FileTooLarge(f"{name!r} is over the limit of {max_bytes} bytes")
            digest.update(chunk)
            await asyncio.to_thread(writing.write, chunk)
        out = None  # finish_temp closes it, even when the fsync fails
        await asyncio.to_thread(finish_temp, writing)
        args = (
            name,
            size,
            digest.hexdigest(),
            file_type,
            oui,
            product_class,
            version,
            list(hardware_versions),
            metadata or {},
        )
        async with _name_lock(conn, name), conn.transaction():
            try:
                row = await conn.fetchrow(_UPSERT if replace else _INSERT, *args)
            except asyncpg.UniqueViolationError:
                raise FileExists(name) from None  # another upload of this name won
            if cache_dir is None:
                await asyncio.to_thread(publish, written, target)
            else:
                await blobs.write(conn, "file", row["id"], written)
                # named by content: a copy left by a failed commit is still right
                await asyncio.to_thread(cache_dir.mkdir, parents=True, exist_ok=True)
                await asyncio.to_thread(
                    publish, written, blobs.cache_path(cache_dir, row["sha256"])
                )
            tmp = None
        assert row is not None
        return FileRecord.from_row(row)
    except OSError as exc:
        await asyncio.to_thread(discard, out, tmp)
        if isinstance(exc, ConnectionError):
            raise  # the uploader or the database went away: not a storage failure
        if isinstance(exc, blobs.DatabaseFull):
            raise OSError(exc.errno, f"{exc.strerror}; {name!r} was not stored") from exc
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            message = f"no space left for file {name!r} in {root} after {size} bytes"
            raise OSError(exc.errno, message + "; nothing was stored") from exc
        raise OSError(
            exc.errno, f"cannot store file {name!r} in {root}: {exc}; nothing was stored"
        ) from exc
    except BaseException:
        # cancellation included: the temporary file must not outlive the upload
        await asyncio.shield(asyncio.to_thread(discard, out, tmp))
        raise


async def get_file(conn: asyncpg.Connection, name: str) -> FileRecord | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM files WHERE name = $1", name)
    return None if row is None else FileRecord.from_row(row)


async def list_files(conn: asyncpg.Connection) -> list[FileRecord]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM files ORDER BY name")
    return [FileRecord.from_row(r) for r in rows]


async def delete_file(
    conn: asyncpg.Connection, root: Path, name: str, *, cache_dir: Path | None = None
) -> bool:
    """Remove the row, then the bytes. False when there was no such file.

    The row goes first: a crash in between leaves an invisible stray file, never
    a row whose file is gone. With ``cache_dir`` (ACS_FILE_STORE=postgres) the
    chunks go with the row (cascade) and this host's cached copy after it;
    other hosts drop theirs at their next fill, and serve nothing meanwhile
    since the row is gone.
    """
    try:
        path = path_of(root, name)
    except ValueError:
        return False  # no row can have an invalid name
    async with _name_lock(conn, name):
        gone = await conn.fetchval("DELETE FROM files WHERE name = $1 RETURNING 1", name)
        if gone is None:
            return False
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)
        if cache_dir is not None:
            known = {r["sha256"] for r in await conn.fetch("SELECT DISTINCT sha256 FROM files")}
            await asyncio.to_thread(blobs.prune_cache, cache_dir, known)
    return True
