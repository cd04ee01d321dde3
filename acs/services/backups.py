"""Config backup and restore: the per-job transfer grants, restores, retention.

An upload job without a ``url`` and a download job of a ``backupId`` are given
their URL and credential when they run (as a download by ``fileName`` gets
the file server's): a random URL under ``/transfers/`` of the file server and a
fresh password of a username that belongs to that job and so to that device.
Only the password's HA1 is stored; the password exists only in the RPC (the
session log masks it). A job run again gets a new password and keeps its URL.
"""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg

from acs.config import Settings
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


async def grant_args(
    conn: asyncpg.Connection, settings: Settings, task: task_store.Task, args: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The job's arguments with the grant's URL and credential filled in, or
    (None, why) when the backup to restore is gone."""
    username = username_of(task.id)
    password = secrets.token_urlsafe(18)
    ha1 = compute_ha1(username, TRANSFER_REALM, password)
    resolved = {k: v for k, v in args.items() if k != "backupId"}
    if task.name == "upload":
        token = await backups.put_grant(
            conn,
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


async def prune(conn: asyncpg.Connection, settings: Settings) -> int:
    """Backups beyond the retention settings, and files left without a row."""
    root = settings.backups_dir
    gone = await backups.prune(
        conn, root, keep=settings.backups_per_device, max_age_s=settings.backup_max_age_s
    )
    return gone + await backups.sweep(conn, root)
