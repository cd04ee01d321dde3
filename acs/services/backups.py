"""Config backup and restore: the per-job transfer grants, restores, retention.

An upload job without a ``url`` and a download job of a ``backupId`` are given
their URL and credential when they run (as a download by ``fileName`` gets
the file server's): a random URL under ``/transfers/`` of the file server and a
fresh password of a username that belongs to that job and so to that device.
Only the password's HA1 is stored; the password exists only in the RPC (the
session log masks it). It is derived from the URL's token with the
installation's sealing key, so a job sent again (its session died) gets the
same URL and password: a transfer the CPE had queued from the first attempt,
and that the ACS adopts, still authenticates.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import asyncpg

from acs.config import Settings
from acs.core.sealing import Sealer
from acs.core.secrets import SEALED_PREFIX
from acs.store import backups, devices
from acs.store import tasks as task_store
from acs.store.credentials import compute_ha1

#: the realm of the file server's challenges (acs/web/files.py says the same)
TRANSFER_REALM = "files"
RESTORE_FILE_TYPE = "3 Vendor Configuration File"


def needs_grant(name: str, args: dict[str, Any]) -> bool:
    """Whether the job's transfer goes through a per-job grant of ours."""
    if name == "upload":
        return not args.get("url")
    return name == "download" and args.get("backupId") is not None


def username_of(task_id: int) -> str:
    return f"transfer-{task_id}"


def transfer_url(settings: Settings, token: str) -> str:
    return f"{settings.files_base_url}transfers/{token}"


def password_of(sealer: Sealer, token: str) -> str:
    """The grant's password: AES-SIV is deterministic, so sealing the token gives
    the same unguessable string each time, and only this installation can make it."""
    return sealer.seal(token, "transfer-password").removeprefix(SEALED_PREFIX)


async def grant_args(
    conn: asyncpg.Connection,
    settings: Settings,
    sealer: Sealer,
    task: task_store.Task,
    args: dict[str, Any],
) -> tuple[dict[str, Any] | None, str]:
    """The job's arguments with the grant's URL and credential filled in, or
    (None, why) when the backup to restore is gone."""
    username = username_of(task.id)
    token = await backups.grant_token(conn, task.id) or secrets.token_urlsafe(24)
    password = password_of(sealer, token)
    ha1 = compute_ha1(username, TRANSFER_REALM, password)
    resolved = {k: v for k, v in args.items() if k != "backupId"}
    if task.name == "upload":
        token = await backups.put_grant(
            conn,
            token=token,
            task_id=task.id,
            device_id=task.device_id,
            direction="upload",
            username=username,
            ha1=ha1,
        )
    else:
        backup = await backups.get_backup(conn, int(args["backupId"]))
        if backup is None:
            return None, f"backup {args['backupId']} is gone (deleted or past retention)"
        token = await backups.put_grant(
            conn,
            token=token,
            task_id=task.id,
            device_id=task.device_id,
            direction="download",
            username=username,
            ha1=ha1,
            backup_id=backup.id,
        )
        resolved["fileSize"] = backup.size
        resolved.setdefault("fileType", RESTORE_FILE_TYPE)
    resolved["url"] = transfer_url(settings, token)
    resolved["username"] = username
    resolved["password"] = password
    return resolved, ""


class NotRestorable(Exception):
    """The backup is not a configuration file (API 409)."""


def restorable(file_type: str) -> bool:
    # TR-069 A.4.1.5/A.3.3.1.6: "1"/"3 Vendor Configuration File" (and vendor
    # "X ... Configuration" types); logs are kept but cannot be downloaded back
    return "configuration" in file_type.lower()


async def restore_args(
    conn: asyncpg.Connection, backup: backups.Backup, target_device: str
) -> dict[str, Any]:
    """The download job's arguments restoring ``backup`` onto ``target_device``."""
    if not restorable(backup.file_type):
        raise NotRestorable(
            f"backup {backup.id} is a {backup.file_type!r}, not a configuration file"
        )
    if await devices.get_device(conn, target_device) is None:
        raise LookupError(target_device)
    return {"fileType": RESTORE_FILE_TYPE, "backupId": backup.id}


async def queue_policy_backup(
    conn: asyncpg.Connection,
    device_id: str,
    policy_id: int,
    spec: dict[str, Any],
    at: datetime,
) -> bool:
    """Queue the config backup a policy asks for, when it is due; True when queued.

    Due: with ``onFirmwareChange``, when the device runs firmware its newest
    backup was not taken on (or it has none); with ``every``, when the last one
    this policy queued is that old; with neither, in each session the policy
    applies to (its ``events`` say which, e.g. "M Download"). Never a second
    one while the policy's last is still open.
    """
    key = f"policy-{policy_id}-backup"
    if await task_store.open_with_key(conn, device_id, key):
        return False
    every, on_change = spec.get("every"), bool(spec.get("onFirmwareChange"))
    due = every is None and not on_change
    if on_change:
        device = await devices.get_device(conn, device_id)
        has_one, firmware = await backups.newest_firmware(conn, device_id)
        due = due or not has_one or (device is not None and device.software_version != firmware)
    if every is not None:
        last = await backups.last_policy_run(conn, policy_id, device_id)
        due = due or last is None or (at - last).total_seconds() >= float(every)
    if not due:
        return False
    await task_store.enqueue(
        conn,
        device_id,
        "upload",
        {"fileType": spec.get("fileType") or "1 Vendor Configuration File"},
        unique_key=key,
    )
    await backups.set_policy_run(conn, policy_id, device_id, at)
    return True


async def prune(conn: asyncpg.Connection, settings: Settings) -> int:
    """Backups beyond the retention settings, and files left without a row."""
    root = settings.backups_dir
    gone = await backups.prune(
        conn, root, keep=settings.backups_per_device, max_age_s=settings.backup_max_age_s
    )
    return gone + await backups.sweep(conn, root)
