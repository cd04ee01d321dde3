"""Device events: what a CPE reported on its own, kept per device, newest first.

Each device keeps its newest ``KEEP`` events: a CPE that repeats an autonomous
report in a loop fills only its own history, never the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

KEEP = 500

# The DELETE runs on the statement's snapshot, which does not see the new row:
# it keeps KEEP-1 old ones and the new one makes KEEP.
_INSERT = """
WITH added AS (
    INSERT INTO device_events (device_id, kind, detail) VALUES ($1, $2, $3)
    RETURNING id
), pruned AS (
    DELETE FROM device_events WHERE id IN (
        SELECT id FROM device_events WHERE device_id = $1 ORDER BY id DESC OFFSET $4)
)
SELECT id FROM added
"""


@dataclass(slots=True, frozen=True)
class DeviceEvent:
    id: int
    device_id: str
    at: datetime
    kind: str
    detail: dict[str, Any]


async def record(
    conn: asyncpg.Connection, device_id: str, kind: str, detail: dict[str, Any]
) -> int:
    """Store one event in the caller's transaction; returns its id. ``conn`` is a
    pool connection (acs.store.db.init_connection encodes the jsonb)."""
    event_id: int = await conn.fetchval(
        _INSERT, device_id, kind, detail, KEEP - 1
    )
    return event_id


async def list_events(
    conn: asyncpg.Connection,
    device_id: str,
    *,
    kind: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[DeviceEvent]:
    """Newest first; ``before`` is the id of the last event of the previous page."""
    rows = await conn.fetch(
        "SELECT id, device_id, at, kind, detail FROM device_events"
        " WHERE device_id = $1 AND ($2::text IS NULL OR kind = $2)"
        " AND ($3::bigint IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        device_id,
        kind,
        before,
        limit,
    )
    return [
        DeviceEvent(r["id"], r["device_id"], r["at"], r["kind"], r["detail"])
        for r in rows
    ]
