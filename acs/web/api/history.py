"""The fleet's and a device's history: series of counts over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from acs.core import history as rules
from acs.store import devices
from acs.store import history as store
from acs.web.api.bounds import UtcTime
from acs.web.api.errors import not_found
from acs.web.api.plumbing import api, json_out, query_of, services

# points one answer may hold: 30 days of 5-minute buckets fit, a year of them not
MAX_POINTS = 9000


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metrics: str = Field(
        default="sessions,boots,cpe_faults,jobs_faulted,connection_requests,online",
        max_length=500,
        description=f"comma-separated series: {', '.join(rules.SERIES)}",
    )
    since: UtcTime | None = Field(default=None, description="default: 24 hours ago")
    until: UtcTime | None = Field(default=None, description="default: now")
    step: Literal["5m", "1h", "1d"] = "1h"

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: str) -> str:
        for name in cls.names_of(value):
            if name not in rules.SERIES:
                raise ValueError(f"unknown series {name!r}; known: {', '.join(rules.SERIES)}")
        if not cls.names_of(value):
            raise ValueError("name at least one series")
        return value

    @staticmethod
    def names_of(value: str) -> list[str]:
        return list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))

    @model_validator(mode="after")
    def _span(self) -> HistoryQuery:
        until = self.until or datetime.now(UTC)
        since = self.since or until - timedelta(days=1)
        if since >= until:
            raise ValueError("since must be before until")
        if (until - since) / rules.STEPS[self.step] > MAX_POINTS:
            raise ValueError(
                f"more than {MAX_POINTS} points: take a coarser step or a shorter span"
            )
        return self


class SeriesOut(BaseModel):
    metric: str
    description: str
    points: list[tuple[datetime, int]] = Field(description="[start of the step, value]")


class HistoryOut(BaseModel):
    step: str
    since: datetime
    until: datetime
    series: list[SeriesOut]


@api.route(
    "GET",
    "/history",
    role="viewer",
    tag="observability",
    summary="The fleet's sessions, boots, faults, knocks and online devices over time",
    query=HistoryQuery,
    responses={200: (HistoryOut, "one series per metric, every step filled")},
)
async def fleet_history(request: web.Request) -> web.Response:
    """Counters are summed per step; ``online`` (devices seen in the hour before)
    takes its highest 5-minute value. Kept ACS_HISTORY_KEEP_DAYS."""
    q: HistoryQuery = query_of(request, HistoryQuery)
    until = q.until or datetime.now(UTC)
    since = q.since or until - timedelta(days=1)
    step = rules.STEPS[q.step]
    names = HistoryQuery.names_of(q.metrics)
    async with services(request).reads.acquire() as conn:  # a standby may answer
        found = await store.series(conn, names, since, until, step)
    return json_out(
        HistoryOut(
            step=q.step,
            since=since,
            until=until,
            series=[
                SeriesOut(
                    metric=n,
                    description=rules.SERIES[n],
                    points=rules.fill(found[n], since, until, step),
                )
                for n in names
            ],
        )
    )


class DeviceHistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int = Field(default=30, ge=1, le=366)


@api.route(
    "GET",
    "/devices/{device_id}/history",
    role="viewer",
    tag="observability",
    summary="A device's sessions and faulted jobs per day",
    query=DeviceHistoryQuery,
    responses={
        200: (HistoryOut, "sessions and jobs_faulted per day"),
        404: (None, "unknown device"),
    },
)
async def device_history(request: web.Request) -> web.Response:
    """Sessions come from the device's session logs (as many as are kept:
    ACS_SESSION_LOG_PER_DEVICE, ACS_SESSION_LOG_MAX_AGE_S), faults from its jobs."""
    q: DeviceHistoryQuery = query_of(request, DeviceHistoryQuery)
    dev_id = request.match_info["device_id"]
    step = rules.STEPS["1d"]
    until = rules.step_start(datetime.now(UTC), step) + step
    since = until - q.days * step
    async with services(request).reads.acquire() as conn:  # a standby may answer
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
        found = await store.device_days(conn, dev_id, since)
    return json_out(
        HistoryOut(
            step="1d",
            since=since,
            until=until,
            series=[
                SeriesOut(
                    metric=n,
                    description=rules.SERIES[n],
                    points=rules.fill(found[n], since, until, step),
                )
                for n in ("sessions", "jobs_faulted")
            ],
        )
    )
