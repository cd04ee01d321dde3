"""Bodies of the fleet-wide job routes: search, groups, faults, bulk actions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from acs.store.task_search import GROUP_KEYS
from acs.store.tasks import STATUSES
from acs.web.api.bounds import BIGINT_MAX, Id, UtcTime
from acs.web.api.models import TaskOut

Status = Literal["pending", "running", "done", "fault", "expired", "cancelled"]
GroupKey = Literal[tuple(GROUP_KEYS)]  # type: ignore[valid-type]
JobName = str


def _words(value: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise ValueError(f"unknown {what} {bad[0]!r}; known: {', '.join(allowed)}")
    return items


class _Narrowing(BaseModel):
    """What every selection of jobs may say (query parameters and bodies alike)."""

    model_config = ConfigDict(extra="forbid")
    faultCode: int | None = Field(
        default=None,
        ge=0,
        le=99999,
        description="the job's fault code, or one of a 9003's per-parameter fault codes",
    )
    device: str | None = Field(default=None, min_length=1, max_length=512, description="device id")
    filter: str = Field(
        default="",
        max_length=4096,
        description='devices in the filter language, e.g. DeviceID.ProductClass = "HG8245"',
    )
    since: UtcTime | None = Field(default=None, description="jobs created at or after this time")
    until: UtcTime | None = Field(default=None, description="jobs created before this time")
    openFaults: bool = Field(default=False, description="only faults not dismissed yet")

    @model_validator(mode="after")
    def _ordered(self) -> _Narrowing:
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class TaskSearchQuery(_Narrowing):
    status: str = Field(default="", max_length=200, description="comma-separated statuses")
    name: str = Field(default="", max_length=1000, description="comma-separated job names")
    limit: int = Field(default=50, ge=1, le=500)
    cursor: int | None = Field(
        default=None, ge=1, le=BIGINT_MAX, description="nextCursor of the previous page"
    )

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: str) -> str:
        _words(value, STATUSES, "status")
        return value

    def statuses(self) -> list[str]:
        return _words(self.status, STATUSES, "status")

    def names(self) -> list[str]:
        return _words(self.name, None, "name")


class TaskGroupQuery(TaskSearchQuery):
    by: str = Field(
        default="faultCode",
        max_length=100,
        description=f"comma-separated group keys: {', '.join(GROUP_KEYS)}",
    )

    @field_validator("by")
    @classmethod
    def _keys(cls, value: str) -> str:
        keys = _words(value, tuple(GROUP_KEYS), "group key")
        if not 1 <= len(keys) <= 3 or len(set(keys)) != len(keys):
            raise ValueError("name one to three different group keys")
        return value

    def keys(self) -> list[str]:
        return _words(self.by, tuple(GROUP_KEYS), "group key")


class FaultQuery(_Narrowing):
    name: str = Field(default="", max_length=1000, description="comma-separated job names")

    def names(self) -> list[str]:
        return _words(self.name, None, "name")


class TaskSelectionIn(_Narrowing):
    """Jobs by id, or every job a narrowing selects; an empty selection (every
    job of the fleet) is refused, so a bulk action is always asked for."""

    ids: list[Id] | None = Field(default=None, min_length=1, max_length=10_000)
    status: list[Status] | None = Field(default=None, min_length=1)
    name: list[JobName] | None = Field(default=None, min_length=1, max_length=50)

    @model_validator(mode="after")
    def _narrowed(self) -> TaskSelectionIn:
        given = (self.ids, self.status, self.name, self.faultCode, self.device, self.since)
        if all(v is None for v in given) and not (
            self.filter.strip() or self.until or self.openFaults
        ):
            raise ValueError("select jobs: give ids or at least one of the filters")
        return self


class TaskPageOut(BaseModel):
    items: list[TaskOut]
    total: int = Field(description="jobs the selection matches")
    counts: dict[str, int] = Field(description="jobs per status, the status filter left out")
    nextCursor: int | None = None


class TaskGroupOut(BaseModel):
    key: dict[str, str | None]
    count: int
    devices: int
    firstSeen: datetime | None = None
    lastSeen: datetime | None = None
    example: str | None = Field(default=None, description="one fault text of the group")
    causes: list[dict[str, Any]] = Field(
        default_factory=list, description="most frequent per-parameter causes of 9003 faults"
    )


class TaskGroupsOut(BaseModel):
    by: list[str]
    groups: list[TaskGroupOut]


class FaultGroupOut(TaskGroupOut):
    faultCode: int | None = None
    productClass: str | None = None
    cause: str | None = Field(default=None, description="the fault in words")


class FaultGroupsOut(BaseModel):
    groups: list[FaultGroupOut]
    total: int = Field(description="open faults the selection matches")


class SelectionActionOut(BaseModel):
    matched: int = Field(description="jobs the action took")
    action: Literal["retried", "cancelled", "dismissed"]
