"""A device's uploaded files (config backups, logs): list, download, delete, restore.

A backup is taken by an ``upload`` job without a ``url`` (POST
/devices/{id}/tasks) or by a policy; ``restore`` queues the Download of one
onto the same device or a replacement.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from acs.core.tasks import InvalidTask
from acs.logs import log
from acs.services import backups as backup_rules
from acs.services import jobs
from acs.store import backups, blobs, devices
from acs.web.api import models as M
from acs.web.api.errors import ApiError, not_found
from acs.web.api.plumbing import TOKEN, api, audit_note, body_of, json_out, path_id, services
from acs.web.api.task_views import task_out

logger = logging.getLogger("acs.api")

ONE = "/devices/{device_id}/backups/{backup_id}"
CHUNK = 256 * 1024


class BackupOut(BaseModel):
    id: int
    device: str
    fileType: str = Field(description="the Upload's FileType, e.g. 1 Vendor Configuration File")
    size: int
    sha256: str
    firmware: str | None = Field(description="the SoftwareVersion the device ran")
    created: datetime
    task: int | None = Field(description="the upload job (null once retention pruned it)")
    restorable: bool = Field(description="a configuration file (a log cannot be restored)")


class BackupListOut(BaseModel):
    items: list[BackupOut]


class RestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targetDevice: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="the device to restore onto (a replacement); default the backup's own",
    )


def backup_out(b: backups.Backup) -> BackupOut:
    return BackupOut(
        id=b.id,
        device=b.device_id,
        fileType=b.file_type,
        size=b.size,
        sha256=b.sha256,
        firmware=b.firmware_version,
        created=b.created_at,
        task=b.task_id,
        restorable=backup_rules.restorable(b.file_type),
    )


async def _backup_of(request: web.Request) -> backups.Backup:
    """The path's backup, of the path's device; 404 otherwise."""
    dev_id = request.match_info["device_id"]
    backup_id = path_id(request, "backup_id")
    async with services(request).pool.acquire() as conn:
        found = await backups.get_backup(conn, backup_id)
    if found is None or found.device_id != dev_id:
        raise not_found(f"backup {backup_id} of device {dev_id!r}")
    return found


@api.route(
    "GET",
    "/devices/{device_id}/backups",
    role="viewer",
    tag="backups",
    summary="A device's uploaded files (config backups, logs), newest first",
    responses={200: (BackupListOut, "the history"), 404: (None, "unknown device")},
)
async def list_backups(request: web.Request) -> web.Response:
    dev_id = request.match_info["device_id"]
    async with services(request).pool.acquire() as conn:
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
        items = await backups.list_backups(conn, dev_id)
    return json_out(BackupListOut(items=[backup_out(b) for b in items]))


@api.route(
    "GET",
    ONE,
    role="viewer",
    tag="backups",
    summary="One backup's metadata",
    responses={200: (BackupOut, "the backup"), 404: (None, "unknown backup")},
)
async def get_backup(request: web.Request) -> web.Response:
    return json_out(backup_out(await _backup_of(request)))


@api.route(
    "GET",
    ONE + "/content",
    role="operator",
    tag="backups",
    summary="Download a backup's bytes (streamed)",
    responses={200: (None, "the file, application/octet-stream"), 404: (None, "unknown backup")},
)
async def download_backup(request: web.Request) -> web.StreamResponse:
    """Operator, not viewer: a configuration file may hold the device's secrets."""
    backup = await _backup_of(request)
    svc = services(request)
    async with svc.pool.acquire() as conn:
        try:
            fobj = await backups.open_content(
                conn, svc.settings.backups_dir, backup, in_database=svc.settings.shared_files
            )
        except blobs.Corrupt as err:
            log(logger, logging.WARNING, "backup_corrupt", backup=backup.id, error=str(err))
            raise ApiError(
                503, "corrupt", f"the stored bytes of backup {backup.id} do not match its digest"
            ) from None
    if fobj is None:
        log(logger, logging.WARNING, "backup_missing_on_disk", backup=backup.id)
        raise not_found(f"the bytes of backup {backup.id}")
    try:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="backup-{backup.id}.cfg"',
                "ETag": f'"{backup.sha256}"',
            }
        )
        resp.content_length = backup.size
        await resp.prepare(request)
        while chunk := await asyncio.to_thread(fobj.read, CHUNK):
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        await asyncio.to_thread(fobj.close)


@api.route(
    "DELETE",
    ONE,
    audit="backup.delete",
    audit_object="backup:{backup_id}",
    role="operator",
    tag="backups",
    summary="Delete a backup (its row and its file)",
    responses={204: (None, "deleted"), 404: (None, "unknown backup")},
)
async def delete_backup(request: web.Request) -> web.Response:
    backup = await _backup_of(request)
    svc = services(request)
    async with svc.pool.acquire() as conn:
        gone = await backups.delete_backup(conn, svc.settings.backups_dir, backup.id)
    if not gone:
        raise not_found(f"backup {backup.id}")
    return web.Response(status=204)


@api.route(
    "POST",
    ONE + "/restore",
    audit="backup.restore",
    audit_object="backup:{backup_id}",
    role="operator",
    tag="backups",
    summary="Queue the Download (3 Vendor Configuration File) of a backup onto a device",
    body=RestoreIn,
    responses={
        201: (M.TaskOut, "the restore job, queued for the target device"),
        404: (None, "unknown backup or target device"),
        409: (None, "the backup is not a configuration file, or the target never runs jobs"),
    },
)
async def restore_backup(request: web.Request) -> web.Response:
    """The CPE-swap workflow: ``targetDevice`` is the replacement. Its Download URL
    is served only to the target device's job credential."""
    body: RestoreIn = await body_of(request, RestoreIn)
    backup = await _backup_of(request)
    target = body.targetDevice or backup.device_id
    svc = services(request)
    try:
        async with svc.pool.acquire() as conn:
            args = await backup_rules.restore_args(conn, backup, target)
            task = await jobs.queue(conn, target, "download", args)
    except backup_rules.NotRestorable as err:
        raise ApiError(409, "not_restorable", str(err)) from None
    except (LookupError, jobs.UnknownDevice):
        raise ApiError(
            404,
            "not_found",
            f"device {target!r} not found",
            [{"path": "targetDevice", "message": "unknown device"}],
        ) from None
    except jobs.NeverRuns as err:
        raise ApiError(409, "never_runs", err.reason) from None
    except InvalidTask as bad:
        raise ApiError(400, "invalid_task", bad.reason, bad.errors) from None
    audit_note(request, job=task.id, target=target)
    log(
        logger,
        logging.INFO,
        "backup_restore_queued",
        backup=backup.id,
        device=target,
        task=task.id,
        token=request[TOKEN].name,
    )
    return json_out(task_out(task), 201)
