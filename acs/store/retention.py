"""Pruning old rows in batches.

Each batch is its own short statement (``DELETE ... WHERE id IN (SELECT ...
LIMIT n)``), committed on its own: a prune of millions of rows never holds
long row locks or one huge transaction, and sessions writing meanwhile wait
at most for one batch.
"""

from __future__ import annotations

import asyncpg

BATCH = 10_000

# What each prune deletes; $1 is the age in seconds, $2 the batch size. The
# inner SELECT walks the index on the age column (see 0006_observability.sql).
_SESSION_LOGS = """
DELETE FROM session_logs WHERE id IN (
    SELECT id FROM session_logs WHERE ended_at < now() - make_interval(secs => $1) LIMIT $2)
"""
_AUDIT = """
DELETE FROM audit_log WHERE id IN (
    SELECT id FROM audit_log WHERE at < now() - make_interval(secs => $1) LIMIT $2)
"""
_OUTBOX = """
DELETE FROM webhook_outbox WHERE id IN (
    SELECT id FROM webhook_outbox
    WHERE state IN ('delivered', 'abandoned') AND finished_at < now() - make_interval(secs => $1)
    LIMIT $2)
"""
# A finished job a firmware campaign still watches (its device is downloading,
# installing or verifying) stays: the campaign reads its outcome.
_TASKS = """
DELETE FROM tasks WHERE id IN (
    SELECT t.id FROM tasks t
    WHERE t.status IN ('done', 'fault', 'expired', 'cancelled')
      AND t.finished_at < now() - make_interval(secs => $1)
      AND NOT EXISTS (
          SELECT 1 FROM campaign_devices cd
          WHERE cd.device_id = t.device_id AND cd.task_id = t.id
            AND cd.state IN ('pending', 'downloading', 'installing', 'verifying'))
    LIMIT $2)
"""


async def _prune(conn: asyncpg.Connection, sql: str, age_s: float, batch: int) -> int:
    total = 0
    while True:
        status = await conn.execute(sql, age_s, batch)
        deleted = int(status.split()[-1])  # "DELETE <n>"
        total += deleted
        if deleted < batch:
            return total


async def prune_session_logs(conn: asyncpg.Connection, age_s: float, batch: int = BATCH) -> int:
    return await _prune(conn, _SESSION_LOGS, age_s, batch)


async def prune_audit(conn: asyncpg.Connection, age_s: float, batch: int = BATCH) -> int:
    return await _prune(conn, _AUDIT, age_s, batch)


async def prune_outbox(conn: asyncpg.Connection, age_s: float, batch: int = BATCH) -> int:
    return await _prune(conn, _OUTBOX, age_s, batch)


async def prune_tasks(conn: asyncpg.Connection, age_s: float, batch: int = BATCH) -> int:
    return await _prune(conn, _TASKS, age_s, batch)
