"""The ACS's answers to a CPE's own requests: RequestDownload, Kicked,
AutonomousTransferComplete (TR-069 A.3.2.3-A.3.2.7).

Each is recorded as a device event (acs.store.device_events), so an operator
sees what the CPE asked for and what the ACS did about it:

- RequestDownload of ``1 Firmware Upgrade Image``: the device gets what a
  campaign owes it, queued by the campaign engine itself
  (rollout.queue_download); when there is nothing, the event says why, in the
  words of the firmware explanation (acs.services.explain). Other FileTypes
  are recorded only: the ACS has no catalog of them.
- Kicked: answered with ``ACS_KICKED_NEXT_URL``; without one, fault 8000.
- AutonomousTransferComplete: recorded; a firmware image installed without a
  fault makes the ACS read DeviceInfo.SoftwareVersion back in the same session
  (a getParameterValues job), so the stored version is the running one before
  the session ends, whatever the Inform carried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from acs.config import Settings
from acs.core.times import rfc3339_or_none
from acs.cwmp import messages as m
from acs.logs import log
from acs.services import explain, rollout
from acs.store import device_events
from acs.store import tasks as task_store

logger = logging.getLogger("acs.cwmp")

FIRMWARE = "1 Firmware Upgrade Image"
RECONCILE_KEY = "reconcile-software-version"
MAX_REASONS = 5  # campaigns/images named in a "none" event


@dataclass(slots=True)
class Answer:
    response: m.Message
    queued: bool = False  # a job was queued for this session


async def answer(
    pool: asyncpg.Pool, settings: Settings, device_id: str, root: str, request: m.Message
) -> Answer | None:
    """The answer to one of the three requests; None for any other request."""
    if isinstance(request, m.RequestDownload):
        async with pool.acquire() as conn, conn.transaction():
            queued = await _request_download(conn, device_id, request)
        return Answer(m.RequestDownloadResponse(), queued)
    if isinstance(request, m.Kicked):
        return Answer(await _kicked(pool, settings, device_id, request))
    if isinstance(request, m.AutonomousTransferComplete):
        async with pool.acquire() as conn, conn.transaction():
            queued = await _autonomous(conn, device_id, root, request)
        return Answer(m.AutonomousTransferCompleteResponse(), queued)
    return None


async def _request_download(
    conn: asyncpg.Connection, device_id: str, req: m.RequestDownload
) -> bool:
    detail: dict[str, Any] = {
        "fileType": req.file_type,
        "fileTypeArg": {a.name: a.value for a in req.file_type_arg},
    }
    queued = False
    if req.file_type != FIRMWARE:
        detail |= {"outcome": "recorded", "reason": "the ACS offers only firmware images"}
    else:
        task_id = await rollout.queue_download(conn, device_id)
        if task_id is not None:
            task = await task_store.get_task(conn, task_id)
            detail |= {
                "outcome": "queued",
                "job": task_id,
                "fileName": task.args.get("fileName") if task else None,
            }
            queued = True
        else:
            detail |= {"outcome": "none", "reason": await _why_none(conn, device_id)}
    await device_events.record(conn, device_id, "RequestDownload", detail)
    log(logger, logging.INFO, "request_download", device=device_id, **_brief(detail))
    return queued


async def _why_none(conn: asyncpg.Connection, device_id: str) -> str:
    """Why no campaign has a download for the device now, as the explanation says."""
    found = await explain.explain(conn, device_id)
    if found is None:
        return "unknown device"
    reasons = [
        f"campaign {c.name!r}: {v.reason}"
        for c, _member, v in found.campaigns
        if c.status not in ("completed", "aborted", "cancelled")
    ]
    if not reasons:
        reasons = [f"image {img.version}: {v.reason}" for img, v in found.images]
        reasons.insert(0, "no running campaign includes this device")
    return "; ".join(reasons[:MAX_REASONS]) or "the firmware catalog has no image for it"


async def _kicked(
    pool: asyncpg.Pool, settings: Settings, device_id: str, req: m.Kicked
) -> m.Message:
    detail = {
        "command": req.command,
        "referer": _no_secret(req.referer),
        "next": _no_secret(req.next),
    }
    if settings.kicked_next_url:
        response: m.Message = m.KickedResponse(next_url=settings.kicked_next_url)
        detail["answer"] = _no_secret(settings.kicked_next_url)
    else:
        # TR-069 A.3.2.6: an ACS that does not serve Kicked faults 8000
        response = m.Fault(8000, "Method not supported: no ACS_KICKED_NEXT_URL is configured")
        detail["answer"] = "fault 8000"
    async with pool.acquire() as conn:
        await device_events.record(conn, device_id, "Kicked", detail)
    return response


async def _autonomous(
    conn: asyncpg.Connection, device_id: str, root: str, req: m.AutonomousTransferComplete
) -> bool:
    detail: dict[str, Any] = {
        "announceURL": _no_secret(req.announce_url),
        "transferURL": _no_secret(req.transfer_url),
        "isDownload": req.is_download,
        "fileType": req.file_type,
        "fileSize": req.file_size,
        "targetFileName": req.target_file_name,
        "faultCode": req.fault.fault_code,
        "faultString": req.fault.fault_string,
        "startTime": rfc3339_or_none(req.start_time),
        "completeTime": rfc3339_or_none(req.complete_time),
    }
    queued = False
    if req.is_download and req.file_type == FIRMWARE and not req.fault.fault_code:
        task = await task_store.enqueue(
            conn,
            device_id,
            "getParameterValues",
            {"parameterNames": [root + "DeviceInfo.SoftwareVersion"]},
            unique_key=RECONCILE_KEY,
        )
        detail["reconcileJob"] = task.id
        queued = True
    await device_events.record(conn, device_id, "AutonomousTransferComplete", detail)
    log(
        logger,
        logging.INFO,
        "autonomous_transfer_complete",
        device=device_id,
        file_type=req.file_type,
        fault=req.fault.fault_code or None,
    )
    return queued


def _no_secret(url: str) -> str:
    """A URL without the user:password a CPE may have put in it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _brief(detail: dict[str, Any]) -> dict[str, Any]:
    return {"file_type": detail["fileType"], "outcome": detail["outcome"], "job": detail.get("job")}
