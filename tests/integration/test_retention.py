"""Retention against a real PostgreSQL: old rows go, recent ones and the ones
still in use stay; the ACS prunes on its own schedule."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest

from acs.services.retention import prune as prune_all
from acs.store import retention
from acs.web.server import running_acs
from tests.e2e.conftest import make_settings

pytestmark = pytest.mark.db

DAY = 86400.0


async def a_device(conn: asyncpg.Connection, serial: str) -> str:
    dev = f"ACDE48-RET-{serial}"
    await conn.execute(
        "INSERT INTO devices (id, oui, product_class, serial_number, manufacturer)"
        " VALUES ($1, 'ACDE48', 'RET', $2, 'Acme')",
        dev,
        serial,
    )
    return dev


async def a_session_log(conn: asyncpg.Connection, dev: str, age_days: float) -> int:
    return await conn.fetchval(
        """
        INSERT INTO session_logs (device_id, session_key, started_at, ended_at, outcome,
                                  message_count, stored_bytes, messages)
        VALUES ($1, 'k', now() - make_interval(secs => $2), now() - make_interval(secs => $2),
                'completed', 0, 0, '[]')
        RETURNING id
        """,
        dev,
        age_days * DAY,
    )


async def a_task(
    conn: asyncpg.Connection, dev: str, status: str, finished_days_ago: float | None
) -> int:
    return await conn.fetchval(
        """
        INSERT INTO tasks (device_id, name, status, created_at, finished_at)
        VALUES ($1, 'reboot', $2, now() - interval '400 days',
                now() - make_interval(secs => $3))
        RETURNING id
        """,
        dev,
        status,
        None if finished_days_ago is None else finished_days_ago * DAY,
    )


async def an_audit_row(conn: asyncpg.Connection, actor: str, age_days: float) -> int:
    return await conn.fetchval(
        """
        INSERT INTO audit_log (at, actor, role, method, route, action, status)
        VALUES (now() - make_interval(secs => $2), $1, 'admin', 'POST', '/x', 'tested', 200)
        RETURNING id
        """,
        actor,
        age_days * DAY,
    )


async def a_delivery(
    conn: asyncpg.Connection, hook: int, state: str, finished_days_ago: float | None
) -> int:
    return await conn.fetchval(
        """
        INSERT INTO webhook_outbox (webhook_id, event_id, event_type, payload, state,
                                    created_at, finished_at)
        VALUES ($1, $2, 'job.finished', '{}', $3, now() - interval '400 days',
                now() - make_interval(secs => $4))
        RETURNING id
        """,
        hook,
        uuid.uuid4(),
        state,
        None if finished_days_ago is None else finished_days_ago * DAY,
    )


async def remaining(conn: asyncpg.Connection, table: str, ids: list[int]) -> set[int]:
    rows = await conn.fetch(f"SELECT id FROM {table} WHERE id = ANY($1::bigint[])", ids)
    return {r["id"] for r in rows}


async def test_retention_deletes_old_rows_in_batches_and_keeps_recent_ones(
    db_pool: asyncpg.Pool, unique_serial
) -> None:
    async with db_pool.acquire() as conn:
        dev = await a_device(conn, unique_serial("RET"))
        old_logs = [await a_session_log(conn, dev, 8) for _ in range(5)]
        new_logs = [await a_session_log(conn, dev, 1) for _ in range(2)]

        old_jobs = [
            await a_task(conn, dev, status, 40)
            for status in ("done", "fault", "expired", "cancelled", "done")
        ]
        kept_jobs = [
            await a_task(conn, dev, "done", 5),  # recent
            await a_task(conn, dev, "pending", None),  # old but not finished
            await a_task(conn, dev, "running", None),
        ]
        # an old finished Download a firmware campaign still verifies
        watched = await a_task(conn, dev, "done", 40)
        campaign = await conn.fetchval(
            "INSERT INTO campaigns (name, channel, stages) VALUES ($1, 'stable', '[]')"
            " RETURNING id",
            unique_serial("ret-campaign-"),
        )
        await conn.execute(
            "INSERT INTO campaign_devices (campaign_id, device_id, state, task_id)"
            " VALUES ($1, $2, 'verifying', $3)",
            campaign,
            dev,
            watched,
        )

        actor = unique_serial("ret-actor-")
        old_audit = [await an_audit_row(conn, actor, 400) for _ in range(3)]
        new_audit = [await an_audit_row(conn, actor, 10)]

        hook = await conn.fetchval(
            "INSERT INTO webhooks (url, secret, events, enabled)"
            " VALUES ('http://127.0.0.1:9/', 's', '{job.finished}', false) RETURNING id"
        )
        try:
            old_deliveries = [
                await a_delivery(conn, hook, "delivered", 10),
                await a_delivery(conn, hook, "abandoned", 10),
                await a_delivery(conn, hook, "delivered", 10),
            ]
            kept_deliveries = [
                await a_delivery(conn, hook, "delivered", 1),
                await a_delivery(conn, hook, "pending", None),  # still to be sent
            ]

            # batches of 2: every prune needs several rounds to finish
            assert await retention.prune_session_logs(conn, 7 * DAY, batch=2) >= 5
            assert await retention.prune_tasks(conn, 30 * DAY, batch=2) >= 5
            assert await retention.prune_audit(conn, 365 * DAY, batch=2) >= 3
            assert await retention.prune_outbox(conn, 7 * DAY, batch=2) >= 3

            assert await remaining(conn, "session_logs", old_logs + new_logs) == set(new_logs)
            assert await remaining(conn, "tasks", old_jobs + kept_jobs + [watched]) == set(
                kept_jobs + [watched]
            )
            assert await remaining(conn, "audit_log", old_audit + new_audit) == set(new_audit)
            assert await remaining(conn, "webhook_outbox", old_deliveries + kept_deliveries) == set(
                kept_deliveries
            )
            # a second run finds nothing more of ours
            await retention.prune_session_logs(conn, 7 * DAY)
            assert await remaining(conn, "session_logs", new_logs) == set(new_logs)
        finally:
            await conn.execute("DELETE FROM webhooks WHERE id = $1", hook)
            await conn.execute("DELETE FROM campaigns WHERE id = $1", campaign)


async def test_the_acs_prunes_on_its_schedule(
    database_url: str, db_pool: asyncpg.Pool, tmp_path: Any, unique_serial
) -> None:
    async with db_pool.acquire() as conn:
        dev = await a_device(conn, unique_serial("RET"))
        stale = await a_session_log(conn, dev, 2)
        fresh = await a_session_log(conn, dev, 0)
    settings = make_settings(data_dir=tmp_path, retention_interval_s=0.2, session_log_max_age_s=DAY)
    async with running_acs(settings, database_url):
        deadline = time.monotonic() + 10
        while True:
            async with db_pool.acquire() as conn:
                left = await remaining(conn, "session_logs", [stale, fresh])
            if left == {fresh}:
                break
            assert time.monotonic() < deadline, f"not pruned: {left}"
            await asyncio.sleep(0.1)


async def test_prune_reports_counts_by_kind(db_pool: asyncpg.Pool, unique_serial) -> None:
    async with db_pool.acquire() as conn:
        dev = await a_device(conn, unique_serial("RET"))
        await a_session_log(conn, dev, 3)
    counts = await prune_all(db_pool, make_settings(session_log_max_age_s=2 * DAY))
    assert set(counts) == {
        "session_logs",
        "jobs",
        "audit",
        "webhook_deliveries",
        "history",
        "backups",
    }
    assert counts["session_logs"] >= 1
