"""Files devices upload (config backups, logs) and the per-job grants of transfers.

The bytes live under one root (``data_dir/backups``), one file per row, named
by the row's random ``storage_name``. The order of an upload is that of the
firmware catalog (acs/store/files.py), so a crash or a refusal at any point
leaves no row without its file and no temporary file behind:

1. the body streams into ``root/.upload-*``, hashed and counted as it comes,
   refused past the limit (the temporary file is removed at once);
2. it is fsynced;
3. in one transaction: the grant is locked and checked again (its job still
   waiting, the grant not spent), the row is inserted, the grant marked used,
   the file renamed to its storage name and the directory fsynced; then commit.

A refusal at 3 (the job ended meanwhile, a second upload won) removes the
temporary file. A file without a row (a crash between rename and commit, a
device deleted with its rows by cascade) is removed by ``sweep``.

With ACS_FILE_STORE=postgres (``in_database``) step 3 copies the temporary file
into ``backup_chunks`` instead of renaming it (acs/store/blobs.py): the bytes
commit with the row, every host serves them, and deleting the row (API,
retention, a device's cascade) deletes them everywhere in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import asyncpg

from acs.store import blobs as chunked
from acs.store import files as blobs  # the file server's temp-write-publish steps

# uploads in flight are temp files of the file server's kind (the stray sweep skips them)
TEMP_PREFIX = blobs.TEMP_PREFIX

# a temporary file older than this belongs to no upload in flight
STALE_TEMP_S = 24 * 3600.0


class NotWaiting(Exception):
    """The grant's job is not waiting for this transfer (finished, or already uploaded)."""


class TooLarge(Exception):
    pass


@dataclass(slots=True)
class Backup:
    id: int
    device_id: str
    task_id: int | None
    file_type: str
    size: int
    sha256: str
    firmware_version: str | None
    storage_name: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Backup:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(slots=True)
class Grant:
    token: str
    task_id: int
    device_id: str
    direction: str
    username: str
    ha1: str
    backup_id: int | None
    used_at: datetime | None
    # of the job, read with the grant
    task_status: str
    file_type: str


_BACKUP_COLUMNS = (
    "id, device_id, task_id, file_type, size, sha256, firmware_version, storage_name, created_at"
)
_GRANT_SELECT = """
    SELECT g.token, g.task_id, g.device_id, g.direction, g.username, g.ha1, g.backup_id,
           g.used_at, t.status AS task_status,
           coalesce(t.args->>'fileType', '1 Vendor Configuration File') AS file_type
    FROM transfer_grants g JOIN tasks t ON t.id = g.task_id
"""


def _grant(row: asyncpg.Record | None) -> Grant | None:
    return None if row is None else Grant(**{f.name: row[f.name] for f in fields(Grant)})


# ----------------------------------------------------------------- grants


async def grant_token(conn: asyncpg.Connection, task_id: int) -> str | None:
    """The token of the job's grant, if it ran before."""
    token = await conn.fetchval("SELECT token FROM transfer_grants WHERE task_id = $1", task_id)
    return None if token is None else str(token)


async def put_grant(
    conn: asyncpg.Connection,
    *,
    token: str,
    task_id: int,
    device_id: str,
    direction: str,
    username: str,
    ha1: str,
    backup_id: int | None = None,
) -> str:
    """The job's grant with this credential (its token kept when the job runs
    again). Returns the token."""
    token = await conn.fetchval(
        """
        INSERT INTO transfer_grants (token, task_id, device_id, direction, username, ha1,
                                     backup_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (task_id) DO UPDATE SET ha1 = EXCLUDED.ha1, backup_id = EXCLUDED.backup_id
        RETURNING token
        """,
        token,
        task_id,
        device_id,
        direction,
        username,
        ha1,
        backup_id,
    )
    return str(token)


async def grant_by_username(conn: asyncpg.Connection, username: str) -> Grant | None:
    return _grant(await conn.fetchrow(_GRANT_SELECT + " WHERE g.username = $1", username))


async def grant_by_token(conn: asyncpg.Connection, token: str) -> Grant | None:
    return _grant(await conn.fetchrow(_GRANT_SELECT + " WHERE g.token = $1", token))


# ----------------------------------------------------------------- blocking helpers (threads)


def _unlink(root: Path, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (root / name).unlink()


# ----------------------------------------------------------------- uploads


@dataclass(slots=True, frozen=True)
class Received:
    """An upload's body on disk under a temporary name, fsynced, not yet recorded."""

    path: Path
    size: int
    sha256: str


async def receive(root: Path, chunks: AsyncIterator[bytes], *, max_bytes: int) -> Received:
    """Steps 1-2 of the module doc, with no database connection held while a slow
    CPE sends. Raises TooLarge or OSError, leaving nothing behind."""
    out: BinaryIO | None = None
    tmp: Path | None = None
    try:
        writing, written = await asyncio.to_thread(blobs.open_temp, root)
        out, tmp = writing, written
        digest = hashlib.sha256()
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"the upload is over the limit of {max_bytes} bytes")
            digest.update(chunk)
            await asyncio.to_thread(writing.write, chunk)
        out = None  # finish_temp closes it
        await asyncio.to_thread(blobs.finish_temp, writing)
        return Received(written, size, digest.hexdigest())
    except BaseException:
        # cancellation included: the temporary file must not outlive the upload
        await asyncio.shield(asyncio.to_thread(blobs.discard, out, tmp))
        raise


async def discard(received: Received) -> None:
    """Remove the temporary file; nothing once ``commit`` renamed it into place."""
    await asyncio.shield(asyncio.to_thread(blobs.discard, None, received.path))


async def commit(
    conn: asyncpg.Connection,
    root: Path,
    grant: Grant,
    received: Received,
    *,
    in_database: bool = False,
) -> Backup:
    """Step 3: record the received file and rename it into place, or raise
    NotWaiting (the caller discards the temporary file either way)."""
    storage_name = secrets.token_hex(16)
    async with conn.transaction():
        # the grant and its job again, locked: the job may have ended (timeout,
        # cancel) or another upload of it won while this body streamed
        state = await conn.fetchrow(
            """
            SELECT g.used_at, t.status, d.software_version
            FROM transfer_grants g JOIN tasks t ON t.id = g.task_id
                 JOIN devices d ON d.id = g.device_id
            WHERE g.token = $1 FOR UPDATE OF g
            """,
            grant.token,
        )
        if state is None or state["used_at"] is not None or state["status"] != "running":
            raise NotWaiting("the job is not waiting for an upload")
        row = await conn.fetchrow(
            f"""
            INSERT INTO device_backups (device_id, task_id, file_type, size, sha256,
                                        firmware_version, storage_name)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_BACKUP_COLUMNS}
            """,
            grant.device_id,
            grant.task_id,
            grant.file_type,
            received.size,
            received.sha256,
            state["software_version"],
            storage_name,
        )
        await conn.execute(
            "UPDATE transfer_grants SET used_at = now() WHERE token = $1", grant.token
        )
        assert row is not None
        if in_database:
            await chunked.write(conn, "backup", row["id"], received.path)
        else:
            await asyncio.to_thread(blobs.publish, received.path, root / storage_name)
    return Backup.from_row(row)


async def store_upload(
    conn: asyncpg.Connection,
    root: Path,
    grant: Grant,
    chunks: AsyncIterator[bytes],
    *,
    max_bytes: int,
    in_database: bool = False,
) -> Backup:
    """``receive`` then ``commit``; raises TooLarge, NotWaiting, OSError, and in
    every case nothing is stored."""
    received = await receive(root, chunks, max_bytes=max_bytes)
    try:
        return await commit(conn, root, grant, received, in_database=in_database)
    finally:
        await discard(received)


# ----------------------------------------------------------------- the history


async def list_backups(conn: asyncpg.Connection, device_id: str) -> list[Backup]:
    rows = await conn.fetch(
        f"SELECT {_BACKUP_COLUMNS} FROM device_backups WHERE device_id = $1"
        " ORDER BY created_at DESC, id DESC",
        device_id,
    )
    return [Backup.from_row(r) for r in rows]


async def open_content(
    conn: asyncpg.Connection, root: Path, backup: Backup, *, in_database: bool
) -> BinaryIO | None:
    """The backup's bytes as an open file at offset 0, or None when they are gone.

    From PostgreSQL they are copied (and their SHA-256 checked) into an
    anonymous temporary file first: a configuration file may hold the device's
    secrets, so no named copy is left on a host's disk, and no database
    connection is held while a slow CPE downloads it. Raises blobs.Corrupt.
    """
    if in_database:
        return await chunked.to_private_file(conn, "backup", backup.id, backup.size, backup.sha256)
    try:
        return await asyncio.to_thread((root / backup.storage_name).open, "rb")
    except OSError:
        return None


async def get_backup(conn: asyncpg.Connection, backup_id: int) -> Backup | None:
    row = await conn.fetchrow(
        f"SELECT {_BACKUP_COLUMNS} FROM device_backups WHERE id = $1", backup_id
    )
    return None if row is None else Backup.from_row(row)


async def delete_backup(conn: asyncpg.Connection, root: Path, backup_id: int) -> bool:
    """The row first, then the bytes: a crash between leaves a file ``sweep`` removes."""
    name = await conn.fetchval(
        "DELETE FROM device_backups WHERE id = $1 RETURNING storage_name", backup_id
    )
    if name is None:
        return False
    await asyncio.to_thread(_unlink, root, [name])
    return True


async def prune(
    conn: asyncpg.Connection, root: Path, *, keep: int, max_age_s: float, batch: int = 10_000
) -> int:
    """Delete what the retention settings no longer keep (beyond the newest ``keep``
    per device, older than ``max_age_s``; 0 turns either off), rows then files."""
    total = 0
    while True:
        names = await conn.fetch(
            """
            DELETE FROM device_backups WHERE id IN (
                SELECT id FROM (
                    SELECT id, created_at,
                           row_number() OVER (PARTITION BY device_id
                                              ORDER BY created_at DESC, id DESC) AS n
                    FROM device_backups) ranked
                WHERE ($1 > 0 AND n > $1)
                   OR ($2 > 0 AND created_at < now() - make_interval(secs => $2))
                LIMIT $3)
            RETURNING storage_name
            """,
            keep,
            float(max_age_s),
            batch,
        )
        await asyncio.to_thread(_unlink, root, [r["storage_name"] for r in names])
        total += len(names)
        if len(names) < batch:
            return total


def _strays(root: Path, known: set[str], now: float) -> list[str]:
    if not root.is_dir():
        return []
    out = []
    for entry in os.scandir(root):
        if not entry.is_file(follow_symlinks=False) or entry.name in known:
            continue
        # a temporary file may belong to an upload streaming now
        if entry.name.startswith(TEMP_PREFIX) and now - entry.stat().st_mtime < STALE_TEMP_S:
            continue
        out.append(entry.name)
    return out


async def sweep(conn: asyncpg.Connection, root: Path) -> int:
    """Remove files without a row: a device deleted (its rows went by cascade), a
    crash between rename and commit, a temporary file a dead process left."""
    # names first, then the listing: a file published after the query is younger
    # than its row and would look stray, so only files older than the query go
    started = time.time()
    known = {r["storage_name"] for r in await conn.fetch("SELECT storage_name FROM device_backups")}
    strays = await asyncio.to_thread(_strays, root, known, started)
    old = [n for n in strays if (root / n).exists() and (root / n).stat().st_mtime < started - 60]
    await asyncio.to_thread(_unlink, root, old)
    return len(old)


# ----------------------------------------------------------------- policies' backups


async def last_policy_run(
    conn: asyncpg.Connection, policy_id: int, device_id: str
) -> datetime | None:
    value = await conn.fetchval(
        "SELECT last_run FROM policy_backup_runs WHERE policy_id = $1 AND device_id = $2",
        policy_id,
        device_id,
    )
    return value  # type: ignore[no-any-return]


async def set_policy_run(
    conn: asyncpg.Connection, policy_id: int, device_id: str, at: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO policy_backup_runs (policy_id, device_id, last_run) VALUES ($1, $2, $3)
        ON CONFLICT (policy_id, device_id) DO UPDATE SET last_run = EXCLUDED.last_run
        """,
        policy_id,
        device_id,
        at,
    )


async def newest_firmware(conn: asyncpg.Connection, device_id: str) -> tuple[bool, str | None]:
    """(whether the device has a backup, the firmware its newest one was taken on)."""
    row = await conn.fetchrow(
        "SELECT firmware_version FROM device_backups WHERE device_id = $1"
        " ORDER BY created_at DESC, id DESC LIMIT 1",
        device_id,
    )
    return (False, None) if row is None else (True, row["firmware_version"])
