"""The audit log: who did what to which object through the operator API."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

_COLUMNS = (
    "id, at, actor, role, method, route, action, object_type, object_id, status, remote, detail"
)


@dataclass(slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    role: str
    method: str
    route: str
    action: str
    object_type: str | None
    object_id: str | None
    status: int
    remote: str | None
    detail: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AuditEntry:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


async def record(
    conn: asyncpg.Connection,
    *,
    actor: str,
    role: str,
    method: str,
    route: str,
    action: str,
    object_type: str | None,
    object_id: str | None,
    status: int,
    remote: str | None,
    detail: dict[str, Any] | None = None,
) -> int:
    entry_id: int = await conn.fetchval(
        """
        INSERT INTO audit_log (actor, role, method, route, action, object_type, object_id,
                               status, remote, detail)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        RETURNING id
        """,
        actor,
        role,
        method,
        route,
        action,
        object_type,
        object_id,
        status,
        remote,
        detail,
    )
    return entry_id


async def search(
    conn: asyncpg.Connection,
    *,
    actor: str | None = None,
    object_id: str | None = None,
    object_type: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first; page on with ``before_id`` (the last id of the previous page).

    Only the given conditions go into the statement, so each combination gets
    a plan that can use its index (actor, id) or (object_id, id).
    """
    where: list[str] = []
    args: list[Any] = []
    for column, op, value in (
        ("actor", "=", actor),
        ("object_id", "=", object_id),
        ("object_type", "=", object_type),
        ("action", "=", action),
        ("at", ">=", since),
        ("at", "<", until),
        ("id", "<", before_id),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{column} {op} ${len(args)}")
    args.append(limit)
    sql = f"SELECT {_COLUMNS} FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY id DESC LIMIT ${len(args)}"
    rows = await conn.fetch(sql, *args)
    return [AuditEntry.from_row(r) for r in rows]
