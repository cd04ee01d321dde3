"""Bodies of the bulk job routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from acs.core.bulk import DEVICE_STATES, JOB_STATES, MAX_RATE_PER_MINUTE
from acs.web.api.bounds import BIGINT_MAX, INT_MAX, UtcTime
from acs.web.api.firmware_models import WindowIn
from acs.web.api.models import TaskName


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BulkTaskIn(BaseModel):
    """The task, in the shape of a single device's job: ``name`` plus that
    task's arguments at the top level."""

    model_config = ConfigDict(extra="allow")
    name: TaskName


class BulkJobIn(_In):
    name: str = Field(min_length=1, max_length=200)
    task: BulkTaskIn
    filter: str = Field(
        min_length=1,
        max_length=4096,
        description="the API's filter language; required, so a job never reaches every device "
        "by accident (say DeviceID.ID IS NOT NULL to mean that)",
    )
    ratePerMinute: int = Field(
        default=60, ge=1, le=MAX_RATE_PER_MINUTE, description="devices queued per minute at most"
    )
    connectionRequest: bool = Field(
        default=False, description="knock on each device as its task is queued"
    )
    expiry: int | None = Field(
        default=None, ge=1, le=INT_MAX, description="seconds a queued task may wait for its device"
    )
    startAt: UtcTime | None = Field(
        default=None, description="queue nothing before this time (at most a year ahead)"
    )
    windows: list[WindowIn] = Field(
        default_factory=list,
        max_length=50,
        description="maintenance windows: devices are queued and knocked only while one is "
        "open; a task not yet taken when its window closes waits for the next opening",
    )


class BulkJobQuery(_In):
    dryRun: bool = Field(default=False, description="count the matching devices; write nothing")


class BulkDryRunOut(BaseModel):
    dryRun: Literal[True] = True
    devices: int
    sample: list[str] = Field(description="the first matching device ids, in queuing order")


Progress = dict[Literal[DEVICE_STATES], int]  # type: ignore[valid-type]


class BulkJobOut(BaseModel):
    id: int
    name: str
    task: dict[str, Any] = Field(description="name and arguments (passwords masked)")
    filter: str
    ratePerMinute: int
    connectionRequest: bool
    expiry: int | None = None
    status: Literal[JOB_STATES]  # type: ignore[valid-type]
    reason: str | None = None
    total: int = Field(description="devices the filter matched at creation")
    queued: int
    progress: Progress = Field(
        description="devices per state: notQueued, skipped, or their task's status"
    )
    createdBy: str | None = None
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    startAt: datetime | None = None
    windows: list[dict[str, Any]] = Field(default_factory=list)
    waiting: str | None = Field(
        default=None, description="why a running job queues nothing now: its start, its windows"
    )


class BulkJobListQuery(_In):
    limit: int = Field(default=50, ge=1, le=200)
    before: int | None = Field(
        default=None, ge=1, le=BIGINT_MAX, description="next of the previous page"
    )


class BulkJobListOut(BaseModel):
    items: list[BulkJobOut]
    next: int | None = Field(default=None, description="pass as before= for the next page")


class BulkDeviceQuery(_In):
    status: Literal[DEVICE_STATES] | None = None  # type: ignore[valid-type]
    after: str | None = Field(default=None, max_length=1024, description="next of the last page")
    limit: int = Field(default=100, ge=1, le=1000)


class BulkDeviceOut(BaseModel):
    device: str
    status: str
    task: int | None = Field(default=None, description="the queued job's id")
    queued: datetime | None = None
    finished: datetime | None = None
    fault: dict[str, Any] | None = None
    connectionRequest: dict[str, Any] | None = Field(
        default=None, description="when the device was knocked and why that failed, if it did"
    )
    reason: str | None = Field(
        default=None, description="why the device was skipped (its task could never run there)"
    )


class BulkDevicePageOut(BaseModel):
    items: list[BulkDeviceOut]
    next: str | None = Field(default=None, description="pass as after= for the next page")
