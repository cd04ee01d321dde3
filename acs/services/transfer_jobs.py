"""What a finished transfer-management job changes beyond its own row.

- ``cancelTransfer`` done: the CPE dropped the transfer, so the Download or
  ScheduleDownload job waiting for its TransferComplete is cancelled, with the
  reason; the cancel job's result names it. (A CPE fault — 9021, the transfer
  already started — faults only the cancel job: the other goes on.)
- a read of DeviceInfo.SoftwareVersion (``getParameterValues``, which the ACS
  queues itself after an AutonomousTransferComplete of a firmware image) sets
  the device's stored version, which otherwise only an Inform updates.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from acs.logs import log
from acs.store import tasks as task_store
from acs.store import transfers as store

logger = logging.getLogger("acs.transfers")

SOFTWARE_VERSION_PATHS = frozenset(
    root + "DeviceInfo.SoftwareVersion" for root in ("Device.", "InternetGatewayDevice.")
)


async def job_done(
    conn: asyncpg.Connection, device_id: str, task: task_store.Task, result: dict[str, Any]
) -> dict[str, Any]:
    """Called in the transaction that marks ``task`` done; returns its result."""
    if task.name == "cancelTransfer":
        return await _cancelled(conn, device_id, task, result)
    if task.name == "getParameterValues":
        for name, value, *_ in result.get("values", []):
            if name in SOFTWARE_VERSION_PATHS and value:
                if await store.set_software_version(conn, device_id, str(value)):
                    log(logger, logging.INFO, "version_reconciled", device=device_id, version=value)
    return result


async def _cancelled(
    conn: asyncpg.Connection, device_id: str, task: task_store.Task, result: dict[str, Any]
) -> dict[str, Any]:
    key = str(result.get("cancelled", ""))
    reason = f"cancelled: the CPE dropped the transfer on CancelTransfer (job #{task.id})"
    other = await store.cancel_by_command_key(
        conn, device_id, key, reason, {"cancelledBy": task.id}
    )
    log(
        logger,
        logging.INFO,
        "transfer_cancelled",
        device=device_id,
        command_key=key,
        job=other.id if other else None,
    )
    return result | {"commandKey": key, "job": other.id if other else None}
