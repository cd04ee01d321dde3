"""Migration 0012: audit rows from before stable actions take their route's action."""

from __future__ import annotations

import secrets

import pytest

from acs.store.db import connect, drop_database, ensure_database, migrate, migration_files

pytestmark = pytest.mark.db

# what the ACS wrote before: free-text actions, summaries, guessed object types
OLD_ROWS = [
    ("POST", "/api/v1/devices/{device_id}/tasks", "task queued", "device", "D1", 201),
    ("DELETE", "/api/v1/tasks/{task_id}", "task cancelled", "job", "7", 200),
    ("POST", "/api/v1/policies", "Create a provisioning policy", None, None, 201),
    ("POST", "/api/v1/policies/{policy_id}/dry-run", "Dry run a policy", "policie", "3", 200),
    ("POST", "/api/v1/bulk-jobs", "Apply a job to every device matching a filter", None, None, 201),
    ("POST", "/api/v1/bulk-jobs", "Apply a job to every device matching a filter", None, None, 200),
    ("POST", "/api/v1/bulk-jobs/{bulk_id}/pause", "Pause: queue no more", "bulk-job", "4", 200),
    ("POST", "/api/v1/campaigns", "campaign previewed", None, None, 200),
    ("POST", "/api/v1/campaigns", "campaign created", "campaign", "5", 201),
    ("POST", "/api/v1/users", "Create a web UI user", None, None, 201),
    ("POST", "/api/v1/nowhere", "a route that is gone", "thing", "1", 200),
]  # fmt: skip

NEW_ROWS = [
    ("device.task.create", "device", "D1"),
    ("task.cancel", "task", "7"),
    ("policy.create", "policy", None),
    ("policy.dry_run", "policy", "3"),
    ("bulk_job.create", "bulk_job", None),
    ("bulk_job.dry_run", "bulk_job", None),
    ("bulk_job.pause", "bulk_job", "4"),
    ("campaign.dry_run", "campaign", None),
    ("campaign.create", "campaign", "5"),
    ("user.create", "user", None),
    ("a route that is gone", "thing", "1"),  # nothing declares it now: left as it was
]


async def test_old_audit_rows_take_the_declared_actions(pg_admin_url: str) -> None:
    name = f"acs_test_audit_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    try:
        conn = await connect(url)
        try:
            # the schema as it was before 0012, with rows written then
            for file, sql in migration_files():
                if file < "0012":
                    await conn.execute(sql)
            for row in OLD_ROWS:
                await conn.execute(
                    "INSERT INTO audit_log (actor, role, method, route, action, object_type,"
                    " object_id, status) VALUES ('ci', 'admin', $1, $2, $3, $4, $5, $6)",
                    *row,
                )
            await conn.execute(
                "CREATE TABLE schema_migrations (name text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.executemany(
                "INSERT INTO schema_migrations (name) VALUES ($1)",
                [(f,) for f, _ in migration_files() if f < "0012"],
            )
            applied = await migrate(conn)
            assert applied[0].startswith("0012_")
            rows = await conn.fetch(
                "SELECT action, object_type, object_id FROM audit_log ORDER BY id"
            )
            assert [tuple(r) for r in rows] == NEW_ROWS
        finally:
            await conn.close()
    finally:
        await drop_database(pg_admin_url, name)
