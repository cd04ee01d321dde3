"""Bodies of a campaign's health soak: its definition, its view, its report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from acs.core.filters import FilterError, parse_filter
from acs.core.health import MAX_KPIS, HealthError, parse_spec


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KpiIn(_In):
    condition: str = Field(
        min_length=1,
        max_length=1000,
        description='the filter language over reported values: Device.IP.Interface.1.Status = "Up"',
    )
    maxFailures: int = Field(default=0, ge=0, le=1000, description="bad readings allowed")

    @field_validator("condition")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            parse_filter(value)
        except FilterError as err:
            raise ValueError(str(err)) from None
        return value


class HealthIn(_In):
    """What a stage's soak watches; each signal off with null."""

    reboots: int | None = Field(
        default=0, ge=0, le=1000, description="unexpected reboots (1 BOOT the ACS did not cause)"
    )
    missedInforms: int | None = Field(
        default=3, ge=1, le=1000, description="PeriodicInformIntervals without an Inform"
    )
    faultRate: str | None = Field(
        default=None, max_length=10, description="share of the device's later jobs that fault"
    )
    minJobs: int = Field(default=2, ge=1, le=1000, description="jobs before the fault rate counts")
    kpis: list[KpiIn] = Field(default_factory=list, max_length=MAX_KPIS)
    controlGroup: int = Field(
        default=20, ge=0, le=10000, description="devices not yet upgraded watched for comparison"
    )
    margin: str = Field(
        default="0%", max_length=10, description="points the soaked share may exceed the reference"
    )

    @model_validator(mode="after")
    def _valid(self) -> HealthIn:
        try:
            parse_spec(self.model_dump())
        except HealthError as err:
            raise ValueError(str(err)) from None
        return self


class ShareOut(BaseModel):
    devices: int
    showing: int
    share: str


class ComparedOut(BaseModel):
    signal: str
    upgraded: ShareOut
    baseline: ShareOut = Field(description="the same devices before their upgrade")
    control: ShareOut = Field(description="devices of the audience not yet upgraded")
    beyondReference: int = Field(description="upgraded devices beyond what the worse explains")


class HealthStageOut(BaseModel):
    stage: int
    soak: int
    soaking: int
    healthy: int
    unhealthy: int
    ignored: int = Field(description="left the campaign's audience: their signals are ignored")
    overall: ComparedOut | None = None
    signals: list[ComparedOut]
    unhealthyDevices: list[str]


class HealthGateOut(BaseModel):
    stage: int
    action: str = Field(description="passed | pause | abort")
    reason: str
    devices: list[str]
    at: datetime


class CampaignHealthOut(BaseModel):
    definition: dict[str, Any]
    control: ShareOut
    stages: list[HealthStageOut]
    gates: list[HealthGateOut]
    totals: dict[str, int] = Field(description="soaked devices by verdict")


class ReportQuery(_In):
    after: str | None = Field(default=None, max_length=400, description="device id to start after")
    limit: int = Field(default=1000, ge=1, le=10000)


class ReportDeviceOut(BaseModel):
    device: str
    stage: int | None
    state: str
    rollback: bool
    started: datetime | None = None
    finished: datetime | None = None
    versionBefore: str | None = None
    versionAfter: str | None = None
    health: str | None = Field(description="soaking | healthy | unhealthy | ignored | null")
    soakStarted: datetime | None = None
    soakFinished: datetime | None = None
    signals: list[dict[str, Any]] = []
    tripped: list[str] = []
    note: str | None = None
    failureCode: str | None = None
    faultCode: int | None = None
    reason: str | None = None


class ReportStageOut(BaseModel):
    stage: int
    size: str
    soak: int
    devices: int
    states: dict[str, int]
    health: dict[str, int]


class ReportOut(BaseModel):
    campaign: int
    name: str
    status: str
    statusReason: str | None = None
    stages: list[ReportStageOut]
    devices: list[ReportDeviceOut]
    next: str | None = None
