"""Retention: what is old enough to delete, by the settings' ages."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from acs.config import Settings
from acs.services import backups
from acs.store import history, retention


async def prune(pool: asyncpg.Pool, settings: Settings) -> dict[str, int]:
    """Delete old rows of every kind; returns how many of each went."""
    async with pool.acquire() as conn:
        return {
            "session_logs": await retention.prune_session_logs(
                conn, settings.session_log_max_age_s
            ),
            "jobs": await retention.prune_tasks(conn, settings.job_retention_s),
            "audit": await retention.prune_audit(conn, settings.audit_retention_s),
            "webhook_deliveries": await retention.prune_outbox(conn, settings.webhook_retention_s),
            "history": await history.prune(conn, timedelta(days=settings.history_keep_days)),
            "backups": await backups.prune(conn, settings),  # rows and their files
        }
