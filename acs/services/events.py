"""The events webhooks receive, raised where the change happens.

Every function takes the connection of the change and is meant to run in its
transaction: the event is queued in the outbox exactly when the change
commits (acs.store.webhooks.emit).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from acs.core import webhooks as rules
from acs.store import devices
from acs.store import tasks as task_store
from acs.store import webhooks as hooks


async def device_registered(conn: asyncpg.Connection, dev: devices.DeviceRecord) -> None:
    await hooks.emit(
        conn,
        rules.DEVICE_REGISTERED,
        {
            "device": dev.id,
            "oui": dev.oui,
            "productClass": dev.product_class,
            "serialNumber": dev.serial_number,
            "manufacturer": dev.manufacturer,
            "softwareVersion": dev.software_version,
            "hardwareVersion": dev.hardware_version,
            "events": dev.last_events,
            "remoteAddress": dev.remote_address,
        },
    )


async def job_closed(
    conn: asyncpg.Connection,
    task: task_store.Task,
    *,
    fault_code: int | None = None,
    fault_string: str | None = None,
) -> None:
    """job.finished for a job done, job.faulted for one that faulted (with or
    without a CPE fault code: timeouts have none)."""
    faulted = fault_code is not None or fault_string is not None
    data: dict[str, Any] = {
        "job": task.id,
        "device": task.device_id,
        "name": task.name,
        "status": "fault" if faulted else "done",
        "commandKey": task.command_key,
    }
    if faulted:
        data["fault"] = {"code": fault_code, "message": fault_string}
    await hooks.emit(conn, rules.JOB_FAULTED if faulted else rules.JOB_FINISHED, data)


async def fault_raised(
    conn: asyncpg.Connection,
    task: task_store.Task,
    code: int,
    string: str,
    *,
    detail: dict[str, Any] | None = None,
    retrying: bool = False,
) -> None:
    """A CPE answered a job's request with a fault (or reported one in
    TransferComplete); ``retrying`` when the job will be tried again."""
    await hooks.emit(
        conn,
        rules.FAULT_RAISED,
        {
            "job": task.id,
            "device": task.device_id,
            "name": task.name,
            "faultCode": code,
            "faultString": string,
            "detail": detail or None,
            "retrying": retrying,
        },
    )


async def campaign_changed(
    conn: asyncpg.Connection,
    campaign_id: int,
    name: str,
    *,
    before: tuple[str, int],
    after: tuple[str, int],
    reason: str | None,
) -> None:
    """campaign.state_changed; ``before``/``after`` are (status, stage index)."""
    if before == after:
        return
    await hooks.emit(
        conn,
        rules.CAMPAIGN_STATE_CHANGED,
        {
            "campaign": campaign_id,
            "name": name,
            "from": {"status": before[0], "stage": before[1] + 1},
            "to": {"status": after[0], "stage": after[1] + 1},
            "reason": reason,
        },
    )
