"""Queuing a device's job: refused at once when it could never run.

Two jobs used to be accepted only to fail much later, out of the operator's
sight: a job for a FOTA-only terminal (it never opens the CWMP session a job
runs in, so the job pended for ever) and a download of a file the file server
does not have (fault 8003 whenever the device came). Both are known at queue
time, so they are refused then, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from acs.core import tasks as rules
from acs.logs import log
from acs.metrics import Metrics
from acs.services import events as notify
from acs.store import backups, devices, files
from acs.store import tasks as task_store
from acs.store.db import UNAVAILABLE


class UnknownDevice(LookupError):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"device {device_id!r}")
        self.device_id = device_id


class UnknownFile(LookupError):
    """The job names a file the file server does not hold (API 404)."""

    def __init__(self, name: str, field: str) -> None:
        super().__init__(f"file {name!r} is not on the file server; upload it first (PUT /files/…)")
        self.name = name
        self.field = field  # the argument that named it, for the error's path


class UnknownBackup(UnknownFile):
    """A restore (a download by ``backupId``) of a backup that does not exist (API 404)."""

    def __init__(self, backup_id: int) -> None:
        LookupError.__init__(self, f"backup {backup_id} does not exist (deleted or past retention)")
        self.name = str(backup_id)
        self.field = "backupId"


class NeverRuns(Exception):
    """The device can never carry out the job (API 409)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def check_file(conn: asyncpg.Connection, name: str, args: dict[str, Any]) -> None:
    """UnknownFile when the ``name`` job downloads a file we do not have."""
    wanted = rules.file_of(name, args)
    if wanted is not None and await files.get_file(conn, wanted) is None:
        raise UnknownFile(wanted, "fileName" if "fileName" in args else "file")
    if name == "changeDUState":  # each Install from the file server
        for named, path in rules.software.files_of(args):
            if await files.get_file(conn, named) is None:
                raise UnknownFile(named, path)
    backup_id = args.get("backupId") if name == "download" else None
    if isinstance(backup_id, int) and await backups.get_backup(conn, backup_id) is None:
        raise UnknownBackup(backup_id)


async def queue(
    conn: asyncpg.Connection,
    device_id: str,
    name: str,
    args: dict[str, Any],
    *,
    not_before: datetime | None = None,
    expires_at: datetime | None = None,
    unique_key: str | None = None,
    stored: dict[str, Any] | None = None,
) -> task_store.Task:
    """Queue a job whose arguments are valid (rules.validate_task) for a device.

    ``stored``: the arguments as kept, secrets sealed (``args`` are checked, in
    clear). rules.InvalidTask when a value does not fit the type the device reported."""
    device = await devices.get_device(conn, device_id)
    if device is None:
        raise UnknownDevice(device_id)
    reason = rules.never_runs(name, device_id, cwmp_seen=device.cwmp_version is not None)
    if reason is None and name == "changeDUState":
        reason = rules.software.unsupported(device.cwmp_version)
    if reason is not None:
        raise NeverRuns(reason)
    await check_file(conn, name, args)
    if name in rules.NEEDS_TYPES:  # the device's own types, beside the data model's
        tree = await devices.get_parameters(conn, device_id)
        rules.validate_task(name, args, lambda p: tree[p].xsd_type if p in tree else None)
    return await task_store.enqueue(
        conn,
        device_id,
        name,
        args if stored is None else stored,
        not_before=not_before,
        expires_at=expires_at,
        unique_key=unique_key,
    )


async def close_expired(
    pool: asyncpg.Pool,
    expire: Callable[[asyncpg.Connection], Awaitable[list[task_store.Task]]],
    *,
    tick: str,
    event: str,
    logger: logging.Logger,
    metrics: Metrics | None = None,
) -> None:
    """One timeout tick: fault the jobs ``expire`` finds in its transaction, with
    their job.finished events; then count and log each (a transfer's
    TransferComplete, a test's 8 DIAGNOSTICS COMPLETE that never came)."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            expired = await expire(conn)
            for task in expired:
                await notify.job_closed(conn, task, fault_string=task.fault_string)
    except UNAVAILABLE as exc:
        log(logger, logging.WARNING, "tick_failed", tick=tick, error=exc)
        return
    for task in expired:
        if metrics is not None:
            metrics.job_finished("fault")
        log(logger, logging.INFO, event, device=task.device_id, task=task.id)
