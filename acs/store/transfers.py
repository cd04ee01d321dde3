"""Jobs of transfers the CPE holds: cancelled by CommandKey, and the version read back.

Kept apart from acs.store.tasks so the transfer-management statements stay in
one place; they act on the same ``tasks`` and ``devices`` tables.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from acs.store.tasks import _COLUMNS, Task

# The job a CancelTransfer took off the CPE's queue: one handed to the CPE and
# waiting for its TransferComplete, or one sent in a session that died (pending
# again, attempted) which the CPE may hold all the same.
_CANCEL = f"""
UPDATE tasks SET status = 'cancelled', finished_at = now(), fault_string = $3,
    result = coalesce(result, '{{}}'::jsonb) - 'awaitingTransferComplete' || $4::jsonb
WHERE id = (
    SELECT id FROM tasks
    WHERE device_id = $1 AND name IN ('download', 'upload', 'scheduleDownload') AND (
        (status = 'running' AND session_id IS NULL AND command_key = $2)
        OR (status = 'pending' AND attempts > 0
            AND coalesce(args->>'commandKey', 'task-' || id) = $2))
    ORDER BY id DESC LIMIT 1 FOR UPDATE)
RETURNING {_COLUMNS}
"""


async def cancel_by_command_key(
    conn: asyncpg.Connection,
    device_id: str,
    command_key: str,
    reason: str,
    result: dict[str, Any],
) -> Task | None:
    """Mark the device's transfer job with ``command_key`` cancelled, ``reason``
    as its fault_string and ``result`` merged into its result; None if no such
    job is open (the transfer was not the ACS's, or its job already closed)."""
    row = await conn.fetchrow(_CANCEL, device_id, command_key, reason, result)
    return None if row is None else Task.from_row(row)


async def set_software_version(conn: asyncpg.Connection, device_id: str, version: str) -> bool:
    """The device's stored SoftwareVersion, from an explicit read; True if it changed."""
    changed = await conn.fetchval(
        "UPDATE devices SET software_version = $2 WHERE id = $1"
        " AND software_version IS DISTINCT FROM $2 RETURNING 1",
        device_id,
        version,
    )
    return changed is not None


async def remember_rpc_methods(
    conn: asyncpg.Connection, device_id: str, methods: list[str]
) -> None:
    """The CPE's GetRPCMethods answer, kept for campaigns with transfer 'auto'."""
    await conn.execute(
        "UPDATE devices SET rpc_methods = $2 WHERE id = $1 AND rpc_methods IS DISTINCT FROM $2",
        device_id,
        methods,
    )


async def rpc_methods(conn: asyncpg.Connection, device_id: str) -> list[str] | None:
    """The CPE's last GetRPCMethods answer; None if it was never asked."""
    found: list[str] | None = await conn.fetchval(
        "SELECT rpc_methods FROM devices WHERE id = $1", device_id
    )
    return found
