"""Region mirrors of catalog images (firmware_image_mirrors)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from acs.core.mirrors import Mirror


async def set_mirrors(conn: asyncpg.Connection, image_id: int, mirrors: Sequence[Mirror]) -> bool:
    """Replace the image's mirrors, in one transaction; False for an unknown image."""
    async with conn.transaction():
        found = await conn.fetchval(
            "SELECT 1 FROM firmware_images WHERE id = $1 FOR UPDATE", image_id
        )
        if found is None:
            return False
        await conn.execute("DELETE FROM firmware_image_mirrors WHERE image_id = $1", image_id)
        await conn.executemany(
            "INSERT INTO firmware_image_mirrors (image_id, position, base_url, tag, filter)"
            " VALUES ($1, $2, $3, $4, $5)",
            [(image_id, i, m.base_url, m.tag, m.filter) for i, m in enumerate(mirrors)],
        )
    return True


async def mirrors_of(conn: asyncpg.Connection, image_id: int) -> list[Mirror]:
    rows = await conn.fetch(
        "SELECT base_url, tag, filter FROM firmware_image_mirrors WHERE image_id = $1"
        " ORDER BY position",
        image_id,
    )
    return [Mirror(r["base_url"], r["tag"], r["filter"]) for r in rows]


async def file_name_of(conn: asyncpg.Connection, image_id: int) -> str | None:
    """The file-server name of the image's file; None for an unknown image."""
    name: str | None = await conn.fetchval(
        "SELECT f.name FROM firmware_images i JOIN files f ON f.id = i.file_id WHERE i.id = $1",
        image_id,
    )
    return name
