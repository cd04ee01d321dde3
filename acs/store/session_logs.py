"""CWMP session logs: the last sessions of each device with their messages."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

_SUMMARY = (
    "id, device_id, session_key, started_at, ended_at, outcome, reason, events,"
    " remote_address, message_count, stored_bytes, truncated"
)


@dataclass(slots=True)
class SessionSummary:
    id: int
    device_id: str
    session_key: str
    started_at: datetime
    ended_at: datetime
    outcome: str
    reason: str | None
    events: list[str]
    remote_address: str | None
    message_count: int
    stored_bytes: int
    truncated: bool

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> SessionSummary:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(slots=True)
class NewSessionLog:
    device_id: str
    session_key: str
    started_at: datetime
    ended_at: datetime
    outcome: str
    reason: str | None
    events: list[str]
    remote_address: str | None
    message_count: int
    stored_bytes: int
    truncated: bool
    messages: list[dict[str, Any]]
    # a quiet session's messages without bodies, stored in place of ``messages``
    # unless the device carries ``full_tag`` (acs.core.session_log.is_quiet)
    elided: list[dict[str, Any]] | None = None
    full_tag: str | None = None


# One statement: the insert, and the delete that keeps the device's newest
# ``keep`` sessions. The DELETE runs on the statement's snapshot, which does
# not see the new row: it keeps keep-1 old ones, and the new one makes keep.
_INSERT = """
WITH {release} added AS (
    INSERT INTO session_logs (device_id, session_key, started_at, ended_at, outcome, reason,
                              events, remote_address, message_count, stored_bytes, truncated,
                              messages)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9,
           CASE WHEN full_log THEN $10 ELSE 0 END, $11,
           CASE WHEN full_log THEN $12::jsonb ELSE $14::jsonb END
    FROM (SELECT $14::jsonb IS NULL OR EXISTS (
              SELECT 1 FROM devices WHERE id = $1 AND $15::text = ANY (tags)) AS full_log) AS f
    RETURNING id
), pruned AS (
    DELETE FROM session_logs
    WHERE device_id = $1 AND id <= (
        SELECT id FROM session_logs WHERE device_id = $1
        ORDER BY id DESC OFFSET $13 - 1 LIMIT 1)
)
-- A quiet session's end (its elided messages given) commits without waiting
-- for the WAL flush: a database crash in the next fraction of a second loses
-- that log row and the lease release, which expires by itself; no job's state
-- is in this statement. Every other session's end waits as configured.
SELECT id, set_config('synchronous_commit',
                      CASE WHEN $14::jsonb IS NULL THEN current_setting('synchronous_commit')
                           ELSE 'off' END, true) AS commit
FROM added
"""


# ...and, in the same round trip, the device lock the session held (its key is
# the lock's session id): a periodic session then ends in one statement
_RELEASE = """released AS (
    UPDATE device_sessions SET session_id = NULL, session_expires_at = NULL
    WHERE device_id = $1 AND session_id = $2),"""
_INSERT_ONLY = _INSERT.format(release="")
_INSERT_RELEASING = _INSERT.format(release=_RELEASE)


async def insert(
    conn: asyncpg.Connection, log: NewSessionLog, keep: int, *, release_lock: bool = False
) -> int:
    """Store a finished session; the device keeps its newest ``keep`` sessions.

    ``release_lock`` also gives back the device lock the session held.
    """
    session_id: int = await conn.fetchval(
        _INSERT_RELEASING if release_lock else _INSERT_ONLY,
        log.device_id,
        log.session_key,
        log.started_at,
        log.ended_at,
        log.outcome,
        log.reason,
        log.events,
        log.remote_address,
        log.message_count,
        log.stored_bytes,
        log.truncated,
        log.messages,
        keep,
        log.elided,
        log.full_tag,
    )
    return session_id


async def list_sessions(conn: asyncpg.Connection, device_id: str) -> list[SessionSummary]:
    """A device's stored sessions, newest first (the messages are not read)."""
    rows = await conn.fetch(
        f"SELECT {_SUMMARY} FROM session_logs WHERE device_id = $1 ORDER BY id DESC", device_id
    )
    return [SessionSummary.from_row(r) for r in rows]


async def get_session(
    conn: asyncpg.Connection, device_id: str, session_id: int
) -> tuple[SessionSummary, list[dict[str, Any]]] | None:
    row = await conn.fetchrow(
        f"SELECT {_SUMMARY}, messages FROM session_logs WHERE device_id = $1 AND id = $2",
        device_id,
        session_id,
    )
    if row is None:
        return None
    return SessionSummary.from_row(row), list(row["messages"])
