"""Files CPEs download: bytes on disk under one root, metadata in PostgreSQL.

Order of an upload, so that a crash leaves neither a row without its file nor
a half-written file under a public name: the body streams into a temporary
file in the same folder (hashed and counted as it comes, refused past the
limit), is fsynced, then the row is written in a transaction and the temporary
file is renamed over the public name before the commit. A crash before the
commit leaves at most a stray temporary file (named ``.upload-*``, never
served) and no row.
"""

from __future__ import annotations

import asyncio
import contextlib
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

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_COLUMNS = (
    "id, name, size, sha256, file_type, oui, product_class, version, hardware_versions,"
    " metadata, created_at, updated_at"
)


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
        return cls(**{f.name: row[f.name] for f in fields(cls)})


def validate_name(name: str) -> str:
    """1-200 characters of letters, digits, '.', '_', '-', not starting with a dot."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid file name {name!r}: use 1-200 letters, digits, '.', '_' or '-',"
            " not starting with '.'"
        )
    return name


def _temp_file(root: Path) -> tuple[int, str]:
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=".upload-", dir=root)


def _flush(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())


def path_of(root: Path, name: str) -> Path:
    return root / validate_name(name)


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
) -> FileRecord:
    target = path_of(root, name)
    if not replace and await get_file(conn, name) is not None:
        raise FileExists(name)
    # file I/O runs in a thread: a slow disk or fsync must not stall sessions
    fd, tmp_name = await asyncio.to_thread(_temp_file, root)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(f"over {max_bytes} bytes")
                digest.update(chunk)
                await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(_flush, out)
        async with conn.transaction():
            conflict = (
                "DO NOTHING"
                if not replace
                else (
                    "DO UPDATE SET size = EXCLUDED.size, sha256 = EXCLUDED.sha256,"
                    " file_type = EXCLUDED.file_type, oui = EXCLUDED.oui,"
                    " product_class = EXCLUDED.product_class, version = EXCLUDED.version,"
                    " hardware_versions = EXCLUDED.hardware_versions,"
                    " metadata = EXCLUDED.metadata, updated_at = now()"
                )
            )
            row = await conn.fetchrow(
                f"""
                INSERT INTO files (name, size, sha256, file_type, oui, product_class, version,
                                   hardware_versions, metadata)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (name) {conflict}
                RETURNING {_COLUMNS}
                """,
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
            if row is None:  # lost a race with another upload of the same name
                raise FileExists(name)
            os.replace(tmp, target)
        return FileRecord.from_row(row)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


async def get_file(conn: asyncpg.Connection, name: str) -> FileRecord | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM files WHERE name = $1", name)
    return None if row is None else FileRecord.from_row(row)


async def list_files(conn: asyncpg.Connection) -> list[FileRecord]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM files ORDER BY name")
    return [FileRecord.from_row(r) for r in rows]


async def delete_file(conn: asyncpg.Connection, root: Path, name: str) -> bool:
    async with conn.transaction():
        gone = await conn.fetchval("DELETE FROM files WHERE name = $1 RETURNING 1", name)
        if gone is None:
            return False
        with contextlib.suppress(FileNotFoundError, ValueError):
            path_of(root, name).unlink()
    return True
