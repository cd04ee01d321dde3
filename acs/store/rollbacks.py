"""When a campaign started rolling back (campaign_rollbacks), and the member
moves a rollback makes. Every move is a conditional UPDATE, like the rest of
campaign_devices, so a tick racing a session never moves one device twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from acs.core.campaigns import IN_FLIGHT_STATES


@dataclass(frozen=True, slots=True)
class Rollback:
    campaign_id: int
    started_at: datetime
    reason: str


async def begin(conn: asyncpg.Connection, campaign_id: int, reason: str) -> bool:
    """Record the start; False when the campaign was rolling back already."""
    done = await conn.fetchval(
        "INSERT INTO campaign_rollbacks (campaign_id, reason) VALUES ($1, $2)"
        " ON CONFLICT (campaign_id) DO NOTHING RETURNING 1",
        campaign_id,
        reason,
    )
    return done is not None


async def get(conn: asyncpg.Connection, campaign_id: int) -> Rollback | None:
    row = await conn.fetchrow(
        "SELECT campaign_id, started_at, reason FROM campaign_rollbacks WHERE campaign_id = $1",
        campaign_id,
    )
    return None if row is None else Rollback(row["campaign_id"], row["started_at"], row["reason"])


async def send_back_succeeded(conn: asyncpg.Connection, campaign_id: int, reason: str) -> int:
    """Devices verified on the image are owed the version they had."""
    moved: int = await conn.fetchval(
        """
        WITH moved AS (
            UPDATE campaign_devices SET state = 'pending', rollback = true, attempts = 0,
                next_attempt_at = NULL, finished_at = NULL, updated_at = now(),
                target_version = from_version, from_version = target_version,
                reason = $2, code = NULL, fault_code = NULL
            WHERE campaign_id = $1 AND state = 'succeeded' AND NOT rollback
              AND from_version IS NOT NULL
            RETURNING 1)
        SELECT count(*)::int FROM moved
        """,
        campaign_id,
        reason,
    )
    return moved


async def unknown_before(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Devices on the image whose earlier version nobody knows cannot go back:
    they are listed as failed rollbacks, with the reason."""
    moved: int = await conn.fetchval(
        """
        WITH moved AS (
            UPDATE campaign_devices SET state = 'failed', rollback = true,
                target_version = NULL, from_version = target_version,
                finished_at = now(), updated_at = now(), code = 'rollback_impossible',
                reason = 'rollback impossible: the version the device ran before the '
                         || 'campaign is unknown (it reported none)'
            WHERE campaign_id = $1 AND state = 'succeeded' AND NOT rollback
              AND from_version IS NULL
            RETURNING 1)
        SELECT count(*)::int FROM moved
        """,
        campaign_id,
    )
    return moved


async def withdraw_unsent(conn: asyncpg.Connection, campaign_id: int, reason: str) -> int:
    """Nothing newly starts the image: pending devices are skipped, and a Download
    queued but not yet sent is cancelled with its member skipped. Rollbacks owed
    are left alone."""
    await conn.execute(
        """
        UPDATE tasks t SET status = 'cancelled', finished_at = now()
        FROM campaign_devices cd
        WHERE cd.campaign_id = $1 AND cd.task_id = t.id AND t.status = 'pending'
          AND NOT cd.rollback AND cd.state = ANY($2)
        """,
        campaign_id,
        list(IN_FLIGHT_STATES),
    )
    moved: int = await conn.fetchval(
        """
        WITH moved AS (
            UPDATE campaign_devices cd SET state = 'skipped', reason = $2,
                code = 'rollback_started', finished_at = now(), updated_at = now()
            WHERE cd.campaign_id = $1 AND NOT cd.rollback AND (cd.state = 'pending'
                  OR (cd.state = ANY($3) AND EXISTS (SELECT 1 FROM tasks t
                      WHERE t.id = cd.task_id AND t.status = 'cancelled')))
            RETURNING 1)
        SELECT count(*)::int FROM moved
        """,
        campaign_id,
        reason,
        list(IN_FLIGHT_STATES),
    )
    return moved


async def in_flight(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Downloads of the image already sent: caught when they finish."""
    n: int = await conn.fetchval(
        "SELECT count(*)::int FROM campaign_devices WHERE campaign_id = $1"
        " AND NOT rollback AND state = ANY($2)",
        campaign_id,
        list(IN_FLIGHT_STATES),
    )
    return n


async def catch(
    conn: asyncpg.Connection,
    campaign_id: int,
    device_id: str,
    version: str,
    reason: str,
) -> bool:
    """A device that finished installing the image after the rollback started:
    owed its earlier version now, as if it had succeeded before the abort."""
    done = await conn.fetchval(
        """
        UPDATE campaign_devices SET state = 'pending', rollback = true, attempts = 0,
            next_attempt_at = NULL, finished_at = NULL, updated_at = now(),
            target_version = from_version, from_version = $3,
            reason = $4, code = NULL, fault_code = NULL
        WHERE campaign_id = $1 AND device_id = $2 AND NOT rollback AND state = ANY($5)
          AND from_version IS NOT NULL
        RETURNING 1
        """,
        campaign_id,
        device_id,
        version,
        reason,
        list(IN_FLIGHT_STATES),
    )
    return done is not None


async def retry_failed(conn: asyncpg.Connection, campaign_id: int) -> int:
    """Failed rollbacks get another round of attempts."""
    moved: int = await conn.fetchval(
        """
        WITH moved AS (
            UPDATE campaign_devices SET state = 'pending', attempts = 0,
                next_attempt_at = NULL, finished_at = NULL, updated_at = now(),
                reason = 'rollback retried by operator after: ' || coalesce(reason, '')
            WHERE campaign_id = $1 AND state = 'failed' AND rollback
              AND target_version IS NOT NULL
            RETURNING 1)
        SELECT count(*)::int FROM moved
        """,
        campaign_id,
    )
    return moved
