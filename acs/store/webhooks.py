"""Webhooks and their delivery outbox.

``emit`` is called in the transaction of the change that raises the event, so
the event is stored exactly when the change is; the sender
(acs/web/webhooks.py) delivers from the outbox afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from acs.core import webhooks as rules

_HOOK_COLUMNS = "id, url, secret, events, enabled, created_by, created_at"
_OUTBOX_COLUMNS = (
    "id, webhook_id, event_id, event_type, payload, state, attempts, next_attempt_at,"
    " last_status, last_error, created_at, finished_at"
)


@dataclass(slots=True)
class Webhook:
    id: int
    url: str
    secret: str
    events: list[str]
    enabled: bool
    created_by: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Webhook:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(slots=True)
class OutboxRow:
    id: int
    webhook_id: int
    event_id: Any  # uuid.UUID
    event_type: str
    payload: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> OutboxRow:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(slots=True)
class Delivery:
    """A claimed outbox row with what the sender needs to POST it."""

    id: int
    webhook_id: int
    event_type: str
    payload: dict[str, Any]
    attempts: int
    url: str
    secret: str


# --------------------------------------------------------------------------- hooks


async def create(
    conn: asyncpg.Connection,
    url: str,
    secret: str,
    events: Sequence[str],
    *,
    enabled: bool = True,
    created_by: str | None = None,
) -> Webhook:
    row = await conn.fetchrow(
        f"INSERT INTO webhooks (url, secret, events, enabled, created_by)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_HOOK_COLUMNS}",
        url,
        secret,
        list(events),
        enabled,
        created_by,
    )
    assert row is not None
    return Webhook.from_row(row)


async def list_all(conn: asyncpg.Connection) -> list[Webhook]:
    rows = await conn.fetch(f"SELECT {_HOOK_COLUMNS} FROM webhooks ORDER BY id")
    return [Webhook.from_row(r) for r in rows]


async def get(conn: asyncpg.Connection, webhook_id: int) -> Webhook | None:
    row = await conn.fetchrow(f"SELECT {_HOOK_COLUMNS} FROM webhooks WHERE id = $1", webhook_id)
    return None if row is None else Webhook.from_row(row)


async def delete(conn: asyncpg.Connection, webhook_id: int) -> bool:
    """Delete a hook and its undelivered events."""
    gone = await conn.fetchval("DELETE FROM webhooks WHERE id = $1 RETURNING 1", webhook_id)
    return gone is not None


async def outbox_counts(conn: asyncpg.Connection) -> dict[int, dict[str, int]]:
    """Per hook, how many deliveries are in each state."""
    rows = await conn.fetch(
        "SELECT webhook_id, state, count(*)::int AS n FROM webhook_outbox"
        " GROUP BY webhook_id, state"
    )
    counts: dict[int, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["webhook_id"], {})[r["state"]] = r["n"]
    return counts


async def list_deliveries(
    conn: asyncpg.Connection,
    webhook_id: int,
    *,
    state: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[OutboxRow]:
    """A hook's deliveries, newest first, paged by id."""
    rows = await conn.fetch(
        f"""
        SELECT {_OUTBOX_COLUMNS} FROM webhook_outbox
        WHERE webhook_id = $1 AND ($2::text IS NULL OR state = $2)
          AND ($3::bigint IS NULL OR id < $3)
        ORDER BY id DESC LIMIT $4
        """,
        webhook_id,
        state,
        before,
        limit,
    )
    return [OutboxRow.from_row(r) for r in rows]


async def redeliver(conn: asyncpg.Connection, webhook_id: int, delivery_id: int) -> str | None:
    """A finished delivery (delivered or abandoned) due again now with a fresh
    count of attempts; the event id stays, so receivers see the same event.
    Returns the state it had (``pending`` means it was left as it is), or None
    for no such delivery of that hook."""
    before: str | None = await conn.fetchval(
        """
        WITH old AS (
            SELECT id, state FROM webhook_outbox WHERE id = $2 AND webhook_id = $1 FOR UPDATE
        ), redone AS (
            UPDATE webhook_outbox o SET state = 'pending', attempts = 0, next_attempt_at = now(),
                finished_at = NULL
            FROM old WHERE o.id = old.id AND old.state <> 'pending'
        )
        SELECT state FROM old
        """,
        webhook_id,
        delivery_id,
    )
    return before


# --------------------------------------------------------------------------- events


async def emit(conn: asyncpg.Connection, event_type: str, data: dict[str, Any]) -> int:
    """Queue an event for every enabled hook that wants it; returns how many.

    Call it on the connection (and in the transaction) of the change itself.
    """
    assert event_type in rules.EVENT_TYPES, event_type
    document = rules.envelope(event_type, data)
    queued: int = await conn.fetchval(
        """
        WITH queued AS (
            INSERT INTO webhook_outbox (webhook_id, event_id, event_type, payload)
            SELECT id, $1::uuid, $2, $3 FROM webhooks WHERE enabled AND $2 = ANY(events)
            RETURNING 1)
        SELECT count(*)::int FROM queued
        """,
        document["id"],
        event_type,
        document,
    )
    return queued


# --------------------------------------------------------------------------- the sender


async def claim(
    conn: asyncpg.Connection,
    *,
    limit: int,
    per_hook: int,
    busy: Sequence[int],
    lease_s: float,
) -> list[Delivery]:
    """Take due deliveries: at most ``per_hook`` of each hook not in ``busy``, at
    most ``limit`` in all, oldest first. A claimed row is leased (its
    next_attempt_at pushed ``lease_s`` ahead): other senders skip it, and if this
    one dies it is due again when the lease runs out."""
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT o.id FROM webhooks w
            CROSS JOIN LATERAL (
                SELECT id FROM webhook_outbox o
                WHERE o.webhook_id = w.id AND o.state = 'pending' AND o.next_attempt_at <= now()
                ORDER BY o.next_attempt_at, o.id
                LIMIT $2
                FOR UPDATE SKIP LOCKED) o
            WHERE w.enabled AND w.id <> ALL($3::bigint[])
            LIMIT $1
        )
        UPDATE webhook_outbox o SET next_attempt_at = now() + make_interval(secs => $4)
        FROM webhooks w
        WHERE o.id IN (SELECT id FROM due) AND w.id = o.webhook_id
        RETURNING o.id, o.webhook_id, o.event_type, o.payload, o.attempts, w.url, w.secret
        """,
        limit,
        per_hook,
        list(busy),
        lease_s,
    )
    return [Delivery(**dict(r)) for r in sorted(rows, key=lambda r: r["id"])]


async def release(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    """Give claimed rows back at once (claimed beyond a hook's room)."""
    await conn.execute(
        "UPDATE webhook_outbox SET next_attempt_at = now() WHERE id = ANY($1::bigint[])"
        " AND state = 'pending'",
        list(ids),
    )


async def mark_delivered(conn: asyncpg.Connection, delivery_id: int, status: int) -> None:
    await conn.execute(
        "UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1,"
        " last_status = $2, last_error = NULL, finished_at = now() WHERE id = $1",
        delivery_id,
        status,
    )


async def mark_failed(
    conn: asyncpg.Connection,
    delivery_id: int,
    *,
    status: int | None,
    error: str,
    retry_in_s: float,
    max_attempts: int,
) -> str:
    """Record a failed try: due again after ``retry_in_s``, or abandoned once
    ``max_attempts`` tries have failed. Returns the row's new state."""
    state: str | None = await conn.fetchval(
        """
        UPDATE webhook_outbox SET attempts = attempts + 1, last_status = $2, last_error = $3,
            state = CASE WHEN attempts + 1 >= $5 THEN 'abandoned' ELSE 'pending' END,
            finished_at = CASE WHEN attempts + 1 >= $5 THEN now() END,
            next_attempt_at = now() + make_interval(secs => $4)
        WHERE id = $1
        RETURNING state
        """,
        delivery_id,
        status,
        error[:1000],
        retry_in_s,
        max_attempts,
    )
    return state or "gone"
