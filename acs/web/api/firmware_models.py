"""Bodies of the firmware catalog, campaign and explanation routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from acs.core.campaigns import Amount, CampaignError
from acs.core.filters import FilterError, parse_filter
from acs.core.health import HealthError, check_soaks
from acs.core.versions import SCHEMES, validate_scheme
from acs.core.windows import WindowError, parse_window
from acs.web.api.bounds import BIGINT_MAX, INT_MAX, UtcTime
from acs.web.api.health_models import CampaignHealthOut, HealthIn

Name = Field(min_length=1, max_length=200)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchemeIn(_In):
    versionScheme: Literal[tuple(SCHEMES)] = "auto"  # type: ignore[valid-type]
    versionPattern: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _valid(self) -> SchemeIn:
        validate_scheme(self.versionScheme, self.versionPattern)
        return self


class SchemeOut(BaseModel):
    oui: str
    productClass: str
    versionScheme: str
    versionPattern: str | None = None


class RegionIn(_In):
    name: str = Field(min_length=1, max_length=100)
    source: Literal["provisioningCode", "tag", "parameter"]
    values: list[str] = Field(min_length=1, max_length=1000)
    parameter: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _parameter_named(self) -> RegionIn:
        if (self.source == "parameter") != (self.parameter is not None):
            raise ValueError("give parameter exactly when source is 'parameter'")
        return self


class ImageIn(_In):
    file: str = Field(min_length=1, max_length=200, description="a file of the file server")
    oui: str = Field(min_length=1, max_length=6)
    productClass: str = Field(min_length=1, max_length=64)
    hardwareVersions: list[str] = Field(
        min_length=1, max_length=100, description="the hardware versions the image fits"
    )
    version: str = Field(min_length=1, max_length=128, description="the version it installs")
    channel: str = Field(default="stable", min_length=1, max_length=32)
    region: RegionIn | None = None
    minVersion: str | None = Field(
        default=None, max_length=128, description="installs only from this version or later"
    )
    allowDowngrade: bool = False
    releaseNotes: str = Field(default="", max_length=20_000)

    @field_validator("hardwareVersions")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value]
        if any(not v for v in cleaned):
            raise ValueError("a hardware version may not be blank")
        return cleaned


class RegionOut(BaseModel):
    name: str
    source: str
    values: list[str]
    parameter: str | None = None


class ImageOut(BaseModel):
    id: int
    file: str
    url: str
    size: int
    sha256: str
    oui: str
    productClass: str
    hardwareVersions: list[str]
    version: str
    channel: str
    region: RegionOut | None = None
    minVersion: str | None = None
    allowDowngrade: bool
    releaseNotes: str


class ImageListOut(BaseModel):
    items: list[ImageOut]


class StageIn(_In):
    size: str | int = Field(description="cumulative share ('10%') or count of the audience")
    successThreshold: str | int = Field(
        default="100%", description="succeeded devices (count or % of the stage) to go on"
    )
    failureThreshold: str | int = Field(
        default="10%", description="failed devices (count or % of the stage) that halt"
    )
    onSuccess: Literal["next", "pause"] = "next"
    onFailure: Literal["pause", "abort"] = "pause"
    soak: int = Field(
        default=0,
        ge=0,
        le=INT_MAX,
        description="seconds each device is watched after it reports the target version"
        " (the campaign's health); 0: reporting it is success",
    )

    @field_validator("size", "successThreshold", "failureThreshold")
    @classmethod
    def _amount(cls, value: str | int) -> str | int:
        try:
            Amount.parse(value)
        except CampaignError as err:
            raise ValueError(str(err)) from None
        return value


class WindowIn(_In):
    cron: str = Field(min_length=1, max_length=200, description="5-field cron: when it opens")
    durationMinutes: int = Field(ge=1, le=7 * 24 * 60)
    timezone: str = Field(default="UTC", max_length=64)

    @model_validator(mode="after")
    def _valid(self) -> WindowIn:
        try:
            parse_window(self.cron, self.durationMinutes, self.timezone)
        except WindowError as err:
            raise ValueError(str(err)) from None
        return self


class CampaignIn(_In):
    name: str = Field(min_length=1, max_length=200)
    image: int | None = Field(default=None, ge=1, le=BIGINT_MAX, description="a catalog image id")
    channel: str | None = Field(
        default=None, max_length=32, description="or: the newest fitting image of this channel"
    )
    filter: str = Field(default="", max_length=4096, description="the API's filter language")
    membership: Literal["snapshot", "continuous"] = "snapshot"
    stages: list[StageIn] = Field(min_length=1, max_length=20)
    startAt: UtcTime | None = None
    windows: list[WindowIn] = Field(default_factory=list, max_length=50)
    maxInFlight: int | None = Field(default=None, ge=1, le=INT_MAX, description="downloads at once")
    startsPerMinute: int | None = Field(default=None, ge=1, le=INT_MAX)
    maxAttempts: int = Field(default=3, ge=1, le=20)
    retryBackoffS: float = Field(default=300, ge=0, le=86400)
    verifyTimeoutS: float = Field(default=3600, ge=1, le=30 * 86400)
    rollback: bool = False
    connectionRequest: bool = Field(
        default=True,
        description="knock on pending devices (inside a window, within the rate limits) "
        "instead of waiting for their periodic Inform; false waits for the Inform",
    )
    priority: int = Field(default=0, ge=-1000, le=1000)
    transfer: Literal["download", "scheduleDownload", "auto"] = Field(
        default="download",
        description="scheduleDownload: a ScheduleDownload whose TimeWindow is the rest of the "
        "maintenance window, so the CPE picks its moment; auto: that where the CPE lists "
        "ScheduleDownload in GetRPCMethods, a Download elsewhere",
    )
    health: HealthIn | None = Field(
        default=None, description="what the stages' soaks watch, and the comparison"
    )

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str) -> str:
        try:
            parse_filter(value)
        except FilterError as err:
            raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _valid(self) -> CampaignIn:
        if (self.image is None) == (self.channel is None):
            raise ValueError("give exactly one of image or channel")
        sizes = [Amount.parse(s.size) for s in self.stages]
        if len({s.percent for s in sizes}) > 1:
            raise ValueError("stage sizes must all be percentages or all be counts")
        values = [s.value for s in sizes]
        if values != sorted(values) or len(set(values)) != len(values):
            raise ValueError("stage sizes are cumulative: each must be larger than the one before")
        try:
            check_soaks([s.model_dump() for s in self.stages], self.health is not None)
        except HealthError as err:
            raise ValueError(str(err)) from None
        return self


class CampaignQuery(_In):
    dryRun: bool = False


class StageOut(BaseModel):
    stage: int
    size: str
    successThreshold: str
    failureThreshold: str
    onSuccess: str
    onFailure: str
    soak: int = 0
    devices: int = 0
    states: dict[str, int] = {}


class CampaignOut(BaseModel):
    id: int
    name: str
    status: str
    statusReason: str | None = None
    awaitingApproval: bool = Field(
        default=False, description="paused at a stage gate: approve starts the next stage"
    )
    image: int | None = None
    channel: str | None = None
    filter: str
    membership: str
    currentStage: int = Field(description="1-based")
    stages: list[StageOut]
    startAt: datetime | None = None
    windows: list[dict[str, object]]
    maxInFlight: int | None = None
    startsPerMinute: int | None = None
    maxAttempts: int
    retryBackoffS: float
    verifyTimeoutS: float
    rollback: bool
    connectionRequest: bool
    priority: int
    transfer: str = "download"
    audience: int
    totals: dict[str, int] = {}
    health: CampaignHealthOut | None = Field(
        default=None, description="the health soak: null when no stage soaks"
    )
    createdBy: str | None = None
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None


class CampaignListOut(BaseModel):
    items: list[CampaignOut]


class DryRunStageOut(BaseModel):
    stage: int
    devices: int
    sample: list[str]


class DryRunOut(BaseModel):
    dryRun: Literal[True] = True
    audience: int
    stages: list[DryRunStageOut]
    outsideStages: int
    skipped: dict[str, int]
    skippedSamples: dict[str, list[str]]
    overlapping: dict[str, int] = Field(
        description="other unfinished campaigns -> devices they share with this one"
    )


class MemberOut(BaseModel):
    device: str
    stage: int | None = Field(description="1-based; null when skipped at admission")
    state: str
    rollback: bool
    fromVersion: str | None = None
    targetVersion: str | None = None
    attempts: int
    nextAttemptAt: datetime | None = None
    reason: str | None = None
    code: str | None = Field(default=None, description="the reason as a stable code")
    faultCode: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    job: int | None = None


class MemberPageOut(BaseModel):
    items: list[MemberOut]
    next: str | None = Field(default=None, description="pass as after= for the next page")


class MemberQuery(_In):
    state: (
        Literal[
            "pending",
            "downloading",
            "installing",
            "verifying",
            "succeeded",
            "failed",
            "skipped",
            "rolled_back",
        ]
        | None
    ) = None
    stage: int | None = Field(default=None, ge=1, le=INT_MAX)
    after: str | None = Field(default=None, max_length=1024)
    limit: int = Field(default=100, ge=1, le=1000)


class RetryOut(BaseModel):
    retried: int


class ImageVerdictOut(BaseModel):
    image: int
    version: str
    channel: str
    offered: bool
    code: str
    reason: str
    downloadUrl: str | None = Field(
        default=None, description="where the device would fetch it: a region mirror or ours"
    )


class CampaignVerdictOut(BaseModel):
    campaign: int
    name: str
    status: str
    state: str | None = Field(description="the device's state in the campaign; null: not in it")
    stage: int | None = None
    code: str
    reason: str
    downloadUrl: str | None = Field(
        default=None,
        description="the URL the device's Download gave (sent) or would give (pending): "
        "a region mirror or the ACS's file server",
    )


class FirmwareExplainOut(BaseModel):
    device: str
    softwareVersion: str | None
    parsedVersion: str | None
    versionScheme: str
    hardwareVersion: str | None
    provisioningCode: str | None
    lastInform: datetime | None
    images: list[ImageVerdictOut]
    campaigns: list[CampaignVerdictOut]
