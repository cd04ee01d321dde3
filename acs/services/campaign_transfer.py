"""How a firmware campaign hands its image to one device: Download or ScheduleDownload.

With ``transfer: "scheduleDownload"`` (or ``"auto"`` for a CPE whose
GetRPCMethods answer lists ScheduleDownload) the campaign sends ScheduleDownload
with one TimeWindow, the rest of the current maintenance window (see
acs.core.transfers.campaign_window), so the CPE picks its own quiet moment in it.
Everything else about the member (TransferComplete, verification, timeouts) is
the same as for a Download: the job closes the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from acs.core import transfers as rules
from acs.core.windows import open_window
from acs.services.catalog import windows_of
from acs.store import campaigns as store
from acs.store import transfers as transfer_store


async def job_for(
    conn: asyncpg.Connection,
    campaign: store.Campaign,
    device_id: str,
    args: dict[str, Any],
    now: datetime,
) -> tuple[str, dict[str, Any]]:
    """The job kind and arguments of this campaign's download for the device."""
    if campaign.transfer == "download":
        return "download", args
    if campaign.transfer == "auto":
        methods = await transfer_store.rpc_methods(conn, device_id)
        if methods is None or "ScheduleDownload" not in methods:
            return "download", args
    span = open_window(windows_of(campaign), now)
    rest = (span[1] - now).total_seconds() if span is not None else None
    window = rules.campaign_window(rest, campaign.verify_timeout_s)
    if window is None:
        return "download", args
    return "scheduleDownload", args | {"timeWindows": [window]}
