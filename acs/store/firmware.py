"""The firmware catalog: images (files of the file server with where they fit)
and each product's version scheme."""

from __future__ import annotations

from typing import Any

import asyncpg

from acs.core.firmware import Image, Region, Scheme

_IMAGE_COLUMNS = (
    "i.id, f.name AS file_name, f.size AS file_size, f.sha256, i.oui, i.product_class,"
    " i.hardware_versions, i.version, i.region, i.channel, i.min_version, i.allow_downgrade,"
    " i.release_notes, i.created_at"
)
_IMAGES = f"SELECT {_IMAGE_COLUMNS} FROM firmware_images i JOIN files f ON f.id = i.file_id"


def region_from_json(data: dict[str, Any] | None) -> Region | None:
    if not data:
        return None
    return Region(
        name=data["name"],
        source=data["source"],
        values=tuple(data["values"]),
        parameter=data.get("parameter"),
    )


def region_to_json(region: Region | None) -> dict[str, Any] | None:
    if region is None:
        return None
    return {
        "name": region.name,
        "source": region.source,
        "values": list(region.values),
        "parameter": region.parameter,
    }


def image_from_row(row: asyncpg.Record) -> Image:
    return Image(
        id=row["id"],
        file_name=row["file_name"],
        oui=row["oui"],
        product_class=row["product_class"],
        hardware_versions=tuple(row["hardware_versions"]),
        version=row["version"],
        channel=row["channel"],
        region=region_from_json(row["region"]),
        min_version=row["min_version"],
        allow_downgrade=row["allow_downgrade"],
        release_notes=row["release_notes"],
        file_size=row["file_size"],
        sha256=row["sha256"],
    )


async def add_image(
    conn: asyncpg.Connection,
    *,
    file_name: str,
    oui: str,
    product_class: str,
    hardware_versions: list[str],
    version: str,
    channel: str,
    region: Region | None,
    min_version: str | None,
    allow_downgrade: bool,
    release_notes: str,
) -> Image | None:
    """Add an image; None when the file does not exist."""
    image_id = await conn.fetchval(
        """
        INSERT INTO firmware_images (file_id, oui, product_class, hardware_versions, version,
                                     region, channel, min_version, allow_downgrade, release_notes)
        SELECT f.id, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM files f WHERE f.name = $1
        RETURNING id
        """,
        file_name,
        oui,
        product_class,
        hardware_versions,
        version,
        region_to_json(region),
        channel,
        min_version,
        allow_downgrade,
        release_notes,
    )
    return None if image_id is None else await get_image(conn, image_id)


async def get_image(conn: asyncpg.Connection, image_id: int) -> Image | None:
    row = await conn.fetchrow(f"{_IMAGES} WHERE i.id = $1", image_id)
    return None if row is None else image_from_row(row)


async def list_images(
    conn: asyncpg.Connection, oui: str | None = None, product_class: str | None = None
) -> list[Image]:
    rows = await conn.fetch(
        f"{_IMAGES} WHERE ($1::text IS NULL OR i.oui = $1)"
        " AND ($2::text IS NULL OR i.product_class = $2) ORDER BY i.id",
        oui,
        product_class,
    )
    return [image_from_row(r) for r in rows]


async def delete_image(conn: asyncpg.Connection, image_id: int) -> bool:
    """False when there is no such image. Raises RestrictViolationError (older
    servers: ForeignKeyViolationError) while a campaign names it."""
    return (
        await conn.fetchval("DELETE FROM firmware_images WHERE id = $1 RETURNING 1", image_id)
        is not None
    )


async def get_scheme(conn: asyncpg.Connection, oui: str, product_class: str) -> Scheme:
    row = await conn.fetchrow(
        "SELECT version_scheme, version_pattern FROM firmware_products"
        " WHERE oui = $1 AND product_class = $2",
        oui,
        product_class,
    )
    return Scheme() if row is None else Scheme(row["version_scheme"], row["version_pattern"])


async def set_scheme(
    conn: asyncpg.Connection, oui: str, product_class: str, scheme: Scheme
) -> None:
    await conn.execute(
        """
        INSERT INTO firmware_products (oui, product_class, version_scheme, version_pattern)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (oui, product_class)
        DO UPDATE SET version_scheme = $3, version_pattern = $4
        """,
        oui,
        product_class,
        scheme.name,
        scheme.pattern,
    )


async def list_schemes(conn: asyncpg.Connection) -> list[tuple[str, str, Scheme]]:
    rows = await conn.fetch(
        "SELECT oui, product_class, version_scheme, version_pattern FROM firmware_products"
        " ORDER BY oui, product_class"
    )
    return [
        (r["oui"], r["product_class"], Scheme(r["version_scheme"], r["version_pattern"]))
        for r in rows
    ]
