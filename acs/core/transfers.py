"""Scheduled downloads and transfer management (TR-069 A.4.1.6-A.4.1.8, A.4.2).

Job kinds and their RPC plans, registered in acs.core.tasks:

- ``scheduleDownload``: like ``download`` (a ``url``, or a ``fileName`` of the
  ACS's file server), with one or two TimeWindows instead of a DelaySeconds.
  The CPE picks its own moment inside a window and reports TransferComplete;
  the job waits for it like a Download's, up to the last window's end plus
  the TransferComplete timeout.
- ``getQueuedTransfers`` / ``getAllQueuedTransfers``: the CPE's transfer queue
  as the job's result.
- ``cancelTransfer`` {commandKey}: the CPE drops a queued transfer; the job the
  transfer belongs to is then cancelled by the session driver (a CPE fault,
  9021 when the transfer already started, fails only the cancel job).

Pure: validation and plans, no I/O.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from acs.core.plans import Plan, expect
from acs.cwmp import messages as m

# TR-069 A.4.1.8 Table 41: the standard WindowModes, or a vendor's "X <OUI> <name>"
WINDOW_MODES = ("1 At Any Time", "2 Immediately", "3 When Idle", "4 Confirmation Needed")
WINDOW_MODE_PATTERN = "^(" + "|".join(WINDOW_MODES) + r"|X [0-9A-F]{6} .{1,57})$"
# TR-069 A.4.1.8: at most two windows; TimeWindowList has 1..2 entries
MAX_WINDOWS = 2
# TR-069 A.4.1.8: WindowStart/WindowEnd are unsignedInt seconds after the RPC
MAX_WINDOW_S = 2**32 - 1


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TimeWindow(_Args):
    windowStart: int = Field(ge=0, le=MAX_WINDOW_S)
    windowEnd: int = Field(ge=0, le=MAX_WINDOW_S)
    windowMode: Annotated[str, Field(pattern=WINDOW_MODE_PATTERN)] = "1 At Any Time"
    userMessage: str = Field(default="", max_length=256)
    # -1: as many retries as the CPE likes; 0: none
    maxRetries: int = Field(default=0, ge=-1, le=2**31 - 1)

    @model_validator(mode="after")
    def _ends_after_start(self) -> TimeWindow:
        if self.windowEnd <= self.windowStart:
            raise ValueError("windowEnd must be greater than windowStart")
        return self


class ScheduleDownloadArgs(_Args):
    """Either a ``url``, or a ``fileName`` (also ``file``) of our file server, as
    for ``download``; ``timeWindows`` replaces DelaySeconds."""

    fileType: str = Field(default="1 Firmware Upgrade Image", min_length=1, max_length=64)
    url: str | None = Field(default=None, min_length=1, max_length=1024)
    fileName: str | None = Field(default=None, min_length=1, alias="file")
    username: str = Field(default="", max_length=256)
    password: str = Field(default="", max_length=256)
    fileSize: int = Field(default=0, ge=0, le=2**32 - 1)
    targetFileName: str = Field(default="", max_length=256)
    timeWindows: list[TimeWindow] = Field(min_length=1, max_length=MAX_WINDOWS)
    commandKey: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _checked(self) -> ScheduleDownloadArgs:
        if (self.url is None) == (self.fileName is None):
            raise ValueError("give exactly one of url or fileName")
        # TR-069 A.4.1.8: the second window starts no earlier than the first ends
        for first, second in zip(self.timeWindows, self.timeWindows[1:], strict=False):
            if second.windowStart < first.windowEnd:
                raise ValueError(
                    "timeWindows must be in order and must not overlap: the second "
                    f"starts at {second.windowStart} s, before the first ends at "
                    f"{first.windowEnd} s"
                )
        return self


class CancelTransferArgs(_Args):
    commandKey: str = Field(min_length=1, max_length=32)


class NoArgs(_Args):
    pass


TASK_ARGS: dict[str, type[_Args]] = {
    "scheduleDownload": ScheduleDownloadArgs,
    "cancelTransfer": CancelTransferArgs,
    "getQueuedTransfers": NoArgs,
    "getAllQueuedTransfers": NoArgs,
}

#: the job kinds whose plan hands a transfer to the CPE (awaits TransferComplete)
TRANSFER_TASKS = frozenset({"download", "upload", "scheduleDownload"})


# The oldest CWMP namespace whose schema declares each RPC (schemas/bbf): a CPE
# whose Inform used an older one would get an element its schema does not have.
_NS = "urn:dslforum-org:cwmp-1-"
_RPC_SINCE = {
    "scheduleDownload": ("ScheduleDownload", 2),
    "cancelTransfer": ("CancelTransfer", 2),
    "getAllQueuedTransfers": ("GetAllQueuedTransfers", 1),
}


def refused_by_namespace(name: str, cwmp_ns: str) -> str | None:
    """Why a ``name`` job cannot go to a CPE speaking ``cwmp_ns``, or None."""
    since = _RPC_SINCE.get(name)
    if since is None or not cwmp_ns.startswith(_NS):
        return None
    rpc, minor = since
    spoken = cwmp_ns.removeprefix(_NS)
    if spoken.isdigit() and int(spoken) < minor:
        return (
            f"the CPE speaks {cwmp_ns}, whose schema has no {rpc} "
            f"(it came with {_NS}{minor}); the job is not sent"
        )
    return None


def asks_rpc_methods(cwmp_ns: str) -> bool:
    """Whether discovery also asks the CPE's GetRPCMethods: only CPEs that can be
    sent ScheduleDownload (cwmp-1-2) need their list, for campaigns' ``auto``."""
    return refused_by_namespace("scheduleDownload", cwmp_ns) is None


def with_rpc_methods(plan: Plan) -> Plan:
    """``plan`` (a discovery), then GetRPCMethods; the session driver stores the
    answer. A CPE that faults it (the RPC is mandatory, but) loses nothing else."""
    result = yield from plan
    resp = yield m.GetRPCMethods()
    if isinstance(resp, m.GetRPCMethodsResponse):
        return result | {"rpcMethods": len(resp.method_list)}
    return result


def last_window_end(args: dict[str, Any]) -> int:
    """Seconds after the RPC when the job's last window closes (0: no windows)."""
    return max((int(w.get("windowEnd", 0)) for w in args.get("timeWindows") or []), default=0)


def _schedule_download(a: Any, ck: str, _t: Any, _b: int, _r: str) -> Plan:
    windows = [
        m.TimeWindowStruct(
            window_start=w.windowStart,
            window_end=w.windowEnd,
            window_mode=w.windowMode,
            user_message=w.userMessage,
            max_retries=w.maxRetries,
        )
        for w in a.timeWindows
    ]
    resp = yield m.ScheduleDownload(
        command_key=ck,
        file_type=a.fileType,
        url=a.url,
        username=a.username,
        password=a.password,
        file_size=a.fileSize,
        target_file_name=a.targetFileName,
        time_window_list=windows,
    )
    expect(resp, m.ScheduleDownloadResponse)
    # status 1 (as a Download's): the transfer comes later, in a window; the
    # TransferComplete with this CommandKey closes the job
    return {
        "commandKey": ck,
        "status": 1,
        "windowEndS": max(w.windowEnd for w in a.timeWindows),
    }


def _cancel_transfer(a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    expect((yield m.CancelTransfer(command_key=a.commandKey)), m.CancelTransferResponse)
    return {"cancelled": a.commandKey}


def _queued(_a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    got = expect((yield m.GetQueuedTransfers()), m.GetQueuedTransfersResponse)
    queue = got.transfer_list
    return {"transfers": [{"commandKey": t.command_key, "state": t.state} for t in queue]}


def _all_queued(_a: Any, _ck: str, _t: Any, _b: int, _r: str) -> Plan:
    got = expect((yield m.GetAllQueuedTransfers()), m.GetAllQueuedTransfersResponse)
    return {
        "transfers": [
            {
                "commandKey": t.command_key,
                "state": t.state,
                "isDownload": t.is_download,
                "fileType": t.file_type,
                "fileSize": t.file_size,
                "targetFileName": t.target_file_name,
            }
            for t in got.transfer_list
        ]
    }


PLANS = {
    "scheduleDownload": _schedule_download,
    "cancelTransfer": _cancel_transfer,
    "getQueuedTransfers": _queued,
    "getAllQueuedTransfers": _all_queued,
}


# --------------------------------------------------------------------------- campaigns

CAMPAIGN_TRANSFERS = ("download", "scheduleDownload", "auto")
#: the shortest TimeWindow worth a ScheduleDownload; less, and a Download is sent
MIN_CAMPAIGN_WINDOW_S = 60


def campaign_window(rest_s: float | None, verify_timeout_s: float) -> dict[str, Any] | None:
    """The TimeWindow of a campaign's ScheduleDownload: from now to the end of the
    open maintenance window (``rest_s`` seconds away), capped at half the
    campaign's verify timeout so the version check still has time after the
    latest start. None (send a plain Download): no window bounds the campaign,
    or too little of it is left."""
    if rest_s is None:
        return None
    end = int(min(rest_s, verify_timeout_s / 2))
    if end < MIN_CAMPAIGN_WINDOW_S:
        return None
    return {"windowStart": 0, "windowEnd": end, "windowMode": "1 At Any Time"}
