"""Migration 0024: presence and lease move to device_sessions, with their values."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest

from acs.store.db import connect, drop_database, ensure_database, migrate, migration_files

pytestmark = pytest.mark.db

HEARD = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXPIRES = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


async def test_last_inform_and_lease_are_copied_and_new_devices_get_their_row(
    pg_admin_url: str,
) -> None:
    name = f"acs_test_presence_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    try:
        conn = await connect(url)
        try:
            # the schema as it was before 0024, with a device in session and one never heard
            # (found by its content: the number may change when branches merge)
            [ours] = [f for f, sql in migration_files() if "CREATE TABLE device_sessions" in sql]
            before = [(f, sql) for f, sql in migration_files() if f < ours]
            for _, sql in before:
                await conn.execute(sql)
            await conn.execute(
                "INSERT INTO devices (id, oui, product_class, serial_number, manufacturer,"
                " last_inform, session_id, session_expires_at)"
                " VALUES ('D1', 'O', 'P', 'S1', 'M', $1, 'w0-abc', $2),"
                "        ('D2', 'O', 'P', 'S2', 'M', NULL, NULL, NULL)",
                HEARD,
                EXPIRES,
            )
            await conn.execute(
                "CREATE TABLE schema_migrations (name text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.executemany(
                "INSERT INTO schema_migrations (name) VALUES ($1)", [(f,) for f, _ in before]
            )
            applied = await migrate(conn)
            assert applied[0] == ours

            rows = await conn.fetch(
                "SELECT device_id, last_inform, session_id, session_expires_at"
                " FROM device_sessions ORDER BY device_id"
            )
            assert [tuple(r) for r in rows] == [
                ("D1", HEARD, "w0-abc", EXPIRES),
                ("D2", None, None, None),
            ]
            moved = await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'devices'"
                " AND column_name IN ('last_inform', 'session_id', 'session_expires_at')"
            )
            assert moved == 0
            # a device created afterwards, by any path, has its row at once
            await conn.execute(
                "INSERT INTO devices (id, oui, product_class, serial_number, manufacturer)"
                " VALUES ('D3', 'O', 'P', 'S3', 'M')"
            )
            assert (
                await conn.fetchval("SELECT count(*) FROM device_sessions WHERE device_id = 'D3'")
                == 1
            )
            # and it goes with its device
            await conn.execute("DELETE FROM devices WHERE id = 'D1'")
            assert (
                await conn.fetchval("SELECT count(*) FROM device_sessions WHERE device_id = 'D1'")
                == 0
            )
        finally:
            await conn.close()
    finally:
        await drop_database(pg_admin_url, name)
