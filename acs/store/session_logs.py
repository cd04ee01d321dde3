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


# Quiet sessions' ends, many in one statement (acs/services/session_ends.py):
# each one's log row (bodies only for a device carrying its ``full_tag``), its
# lease given back, and each device's older rows past ``keep`` pruned. A device
# deleted meanwhile has no row here: its session is simply not logged. The
# DELETE, on the statement's snapshot, sees none of the new rows: a device that
# ended two sessions in one batch keeps one more than ``keep`` until its next.
# It commits without the WAL flush wait, as _INSERT does for one quiet session.
_INSERT_QUIET_BATCH = """
WITH given AS (
    SELECT g.*, EXISTS (SELECT 1 FROM devices d
                        WHERE d.id = g.device_id AND g.full_tag = ANY (d.tags)) AS full_log
    FROM jsonb_to_recordset($1::jsonb) AS g(
        device_id text, session_key text, started_at timestamptz, ended_at timestamptz,
        outcome text, reason text, events text[], remote_address text, message_count integer,
        stored_bytes integer, truncated boolean, messages jsonb, elided jsonb, full_tag text)
    WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = g.device_id)
), released AS (
    UPDATE device_sessions s SET session_id = NULL, session_expires_at = NULL
    FROM given
    -- the array makes it a probe of the key per device: joined to the recordset
    -- alone (which the planner guesses at 100 rows) it read the whole table
    WHERE s.device_id = ANY (ARRAY(SELECT device_id FROM given))
      AND s.device_id = given.device_id AND s.session_id = given.session_key
), added AS (
    INSERT INTO session_logs (device_id, session_key, started_at, ended_at, outcome, reason,
                              events, remote_address, message_count, stored_bytes, truncated,
                              messages)
    SELECT device_id, session_key, started_at, ended_at, outcome, reason, events,
           remote_address, message_count, CASE WHEN full_log THEN stored_bytes ELSE 0 END,
           truncated, CASE WHEN full_log THEN messages ELSE elided END
    FROM given ORDER BY ended_at
    RETURNING session_key
), cutoffs AS MATERIALIZED (
    -- each device's newest row to go, found once per device
    SELECT k.device_id, c.id AS cutoff
    FROM (SELECT DISTINCT device_id FROM given) k
    CROSS JOIN LATERAL (SELECT id FROM session_logs WHERE device_id = k.device_id
                        ORDER BY id DESC OFFSET $2 - 1 LIMIT 1) c
), pruned AS (
    DELETE FROM session_logs l USING cutoffs k
    WHERE l.device_id = k.device_id AND l.id <= k.cutoff
)
SELECT session_key, set_config('synchronous_commit', 'off', true) AS commit FROM added
"""


async def insert_quiet(conn: asyncpg.Connection, logs: list[NewSessionLog], keep: int) -> set[str]:
    """Store quiet sessions that ended (each with its ``elided`` messages) and give
    their device locks back, in one statement; the session keys that were logged."""
    given = [
        {
            "device_id": log.device_id,
            "session_key": log.session_key,
            # text, so that either JSON encoder of acs.store.db takes them
            "started_at": log.started_at.isoformat(),
            "ended_at": log.ended_at.isoformat(),
            "outcome": log.outcome,
            "reason": log.reason,
            "events": log.events,
            "remote_address": log.remote_address,
            "message_count": log.message_count,
            "stored_bytes": log.stored_bytes,
            "truncated": log.truncated,
            "messages": log.messages,
            "elided": log.elided,
            "full_tag": log.full_tag,
        }
        for log in logs
    ]
    rows = await conn.fetch(_INSERT_QUIET_BATCH, given, keep)
    return {row["session_key"] for row in rows}


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
