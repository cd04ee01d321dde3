"""Provisioning policies, per-device overrides, outcomes and value provenance."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(slots=True)
class PolicyRow:
    id: int
    name: str
    description: str
    enabled: bool
    priority: int
    precondition: str
    events: list[str]
    windows: list[dict[str, Any]]
    spec: dict[str, Any]
    version: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> PolicyRow:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["events"] = list(values["events"])
        return cls(**values)


_COLUMNS = ", ".join(f.name for f in fields(PolicyRow))
_WRITABLE = (
    "name",
    "description",
    "enabled",
    "priority",
    "precondition",
    "events",
    "windows",
    "spec",
)


async def create(conn: asyncpg.Connection, values: dict[str, Any], who: str | None) -> PolicyRow:
    names = [n for n in _WRITABLE if n in values]
    row = await conn.fetchrow(
        f"INSERT INTO policies ({', '.join(names)}, created_by)"
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(names) + 2))})"
        f" RETURNING {_COLUMNS}",
        *(values[n] for n in names),
        who,
    )
    assert row is not None
    return PolicyRow.from_row(row)


async def replace(
    conn: asyncpg.Connection, policy_id: int, values: dict[str, Any]
) -> PolicyRow | None:
    """Overwrite a policy; its version goes up, so devices apply it at their next session."""
    names = [n for n in _WRITABLE if n in values]
    sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    row = await conn.fetchrow(
        f"UPDATE policies SET {sets}, version = version + 1, updated_at = now()"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        policy_id,
        *(values[n] for n in names),
    )
    return None if row is None else PolicyRow.from_row(row)


async def get(conn: asyncpg.Connection, policy_id: int) -> PolicyRow | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM policies WHERE id = $1", policy_id)
    return None if row is None else PolicyRow.from_row(row)


async def get_by_name(conn: asyncpg.Connection, name: str) -> PolicyRow | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM policies WHERE name = $1", name)
    return None if row is None else PolicyRow.from_row(row)


async def list_all(conn: asyncpg.Connection, *, enabled_only: bool = False) -> list[PolicyRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM policies WHERE enabled OR NOT $1 ORDER BY priority DESC, id",
        enabled_only,
    )
    return [PolicyRow.from_row(r) for r in rows]


async def delete(conn: asyncpg.Connection, policy_id: int) -> bool:
    return (
        await conn.fetchval("DELETE FROM policies WHERE id = $1 RETURNING 1", policy_id) is not None
    )


async def fingerprint(conn: asyncpg.Connection) -> tuple[int, datetime | None]:
    """Changes whenever a policy is added, edited or deleted: the cache key."""
    row = await conn.fetchrow("SELECT count(*)::int AS n, max(updated_at) AS at FROM policies")
    assert row is not None
    return row["n"], row["at"]


# --------------------------------------------------------------------------- overrides


async def overrides(conn: asyncpg.Connection, device_id: str) -> list[tuple[str, str, str | None]]:
    rows = await conn.fetch(
        "SELECT path, value, xsd_type FROM device_overrides WHERE device_id = $1 ORDER BY path",
        device_id,
    )
    return [(r["path"], r["value"], r["xsd_type"]) for r in rows]


async def set_overrides(
    conn: asyncpg.Connection, device_id: str, values: Sequence[tuple[str, str, str | None]]
) -> None:
    """Replace the device's overrides with ``values``."""
    async with conn.transaction():
        await conn.execute("DELETE FROM device_overrides WHERE device_id = $1", device_id)
        await conn.executemany(
            "INSERT INTO device_overrides (device_id, path, value, xsd_type)"
            " VALUES ($1, $2, $3, $4)",
            [(device_id, p, v, t) for p, v, t in values],
        )


# --------------------------------------------------------------------------- outcomes


@dataclass(slots=True)
class PolicyResult:
    policy_id: int
    policy_version: int
    applied_at: datetime
    changes: int
    faults: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    file_sha256: str | None


async def results(conn: asyncpg.Connection, device_id: str) -> dict[int, PolicyResult]:
    rows = await conn.fetch(
        "SELECT policy_id, policy_version, applied_at, changes, faults, conflicts, file_sha256"
        " FROM policy_results WHERE device_id = $1",
        device_id,
    )
    return {r["policy_id"]: PolicyResult(**dict(r)) for r in rows}


async def save_result(
    conn: asyncpg.Connection,
    device_id: str,
    policy_id: int,
    version: int,
    at: datetime,
    changes: int,
    faults: list[dict[str, Any]],
    conflicts: list[dict[str, Any]],
) -> None:
    await conn.execute(
        """
        INSERT INTO policy_results (device_id, policy_id, policy_version, applied_at, changes,
                                    faults, conflicts)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (device_id, policy_id) DO UPDATE SET
            policy_version = $3, applied_at = $4, changes = $5, faults = $6, conflicts = $7
        """,
        device_id,
        policy_id,
        version,
        at,
        changes,
        faults,
        conflicts,
    )


async def save_file_queued(
    conn: asyncpg.Connection, device_id: str, policy_id: int, version: int, sha256: str
) -> None:
    await conn.execute(
        """
        INSERT INTO policy_results (device_id, policy_id, policy_version, applied_at, file_sha256)
        VALUES ($1, $2, $3, now(), $4)
        ON CONFLICT (device_id, policy_id) DO UPDATE SET file_sha256 = $4
        """,
        device_id,
        policy_id,
        version,
        sha256,
    )


async def record_sources(
    conn: asyncpg.Connection,
    device_id: str,
    values: Sequence[tuple[str, int | None, str, str]],
    at: datetime,
) -> None:
    """(path, policy id or None for an override, policy name, value) for each value set."""
    await conn.executemany(
        """
        INSERT INTO parameter_sources (device_id, path, policy_id, policy_name, value, set_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (device_id, path) DO UPDATE SET
            policy_id = $3, policy_name = $4, value = $5, set_at = $6
        """,
        [(device_id, path, pid, name, value, at) for path, pid, name, value in values],
    )


async def sources(conn: asyncpg.Connection, device_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT path, policy_id, policy_name, value, set_at FROM parameter_sources"
        " WHERE device_id = $1 ORDER BY path",
        device_id,
    )


# --------------------------------------------------------------------------- keys


async def instance_key(conn: asyncpg.Connection, name: str = "templates") -> bytes:
    """This installation's secret of that name, made on first use (256 random bits)."""
    await conn.execute(
        "INSERT INTO acs_keys (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        name,
        os.urandom(32),
    )
    value: bytes = await conn.fetchval("SELECT value FROM acs_keys WHERE name = $1", name)
    return value
