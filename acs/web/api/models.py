"""Request and response bodies of the operator API (pydantic v2).

These models validate what comes in and describe what goes out; the OpenAPI
document is generated from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from acs.core.tasks import TASK_ARGS
from acs.web.api.bounds import INT_MAX, UtcTime

if TYPE_CHECKING:
    from acs.services.knock_waiting import KnockReport

TaskName = Literal[tuple(TASK_ARGS)]  # type: ignore[valid-type]


class ParameterOut(BaseModel):
    value: str | None = None
    type: str | None = None
    writable: bool | None = None
    notification: int | None = None
    accessList: list[str] | None = None
    valueAt: datetime | None = None
    object: bool = False


class DeviceOut(BaseModel):
    id: str
    oui: str
    productClass: str
    serialNumber: str
    manufacturer: str
    registered: datetime | None = None
    lastInform: datetime | None = None
    lastBoot: datetime | None = None
    lastBootstrap: datetime | None = None
    lastEvents: list[str] = []
    remoteAddress: str | None = None
    connectionRequestUrl: str | None = None
    softwareVersion: str | None = None
    hardwareVersion: str | None = None
    provisioningCode: str | None = None
    cwmpVersion: str | None = None
    tags: list[str] = []
    parameterCount: int = 0
    parameters: dict[str, ParameterOut] | None = None


class DeviceListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filter: str = Field(
        default="",
        max_length=4096,
        description='e.g. DeviceID.ProductClass = "HG8245" AND tag = "lab"',
    )
    sort: Literal["id", "last_inform", "product_class", "software_version", "serial_number"] = "id"
    order: Literal["asc", "desc"] = "asc"
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = Field(
        default=None, max_length=1024, description="next_cursor of the previous page"
    )
    projection: str = Field(
        default="",
        max_length=4096,
        description="comma-separated parameter paths or prefixes (ending with '.')",
    )


class DevicePageOut(BaseModel):
    items: list[dict[str, Any]]
    total: int
    nextCursor: str | None = None


class DeviceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prefix: str = Field(default="", max_length=1024, description="only parameters under this path")


Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: list[Tag] = Field(min_length=1, max_length=100)


class TaskIn(BaseModel):
    """A job, in GenieACS NBI's shape: ``name`` plus that task's arguments at the top level."""

    model_config = ConfigDict(extra="allow")
    name: TaskName
    expiry: int | None = Field(
        default=None, ge=1, le=INT_MAX, description="seconds until a pending job expires"
    )
    uniqueKey: str | None = Field(
        default=None,
        max_length=200,
        description="replaces a pending job of the device with this key",
    )
    timestamp: UtcTime | None = Field(default=None, description="do not run before this time")


class TaskQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connection_request: bool = Field(default=False, description="knock on the device and wait")
    timeout: float = Field(default=30.0, gt=0, le=300, description="seconds to wait for the result")


class TaskOut(BaseModel):
    id: int
    device: str
    name: str
    args: dict[str, Any]
    status: Literal["pending", "running", "done", "fault", "expired", "cancelled"]
    created: datetime
    notBefore: datetime | None = None
    expires: datetime | None = None
    uniqueKey: str | None = None
    attempts: int
    started: datetime | None = None
    finished: datetime | None = None
    result: dict[str, Any] | None = None
    fault: dict[str, Any] | None = None
    connectionRequest: dict[str, Any] | None = None


class TaskListOut(BaseModel):
    items: list[TaskOut]


class ConnectionRequestOut(BaseModel):
    ok: bool
    status: int | None = None
    reason: str
    elapsedS: float
    channel: str | None = Field(
        default=None, description="http, udp or xmpp: the channel that answered, or the last tried"
    )
    channels: dict[str, dict[str, Any]] | None = Field(
        default=None, description="each channel: tried or not, its outcome and reason"
    )


class UnreachableOut(BaseModel):
    device: str
    channel: str | None = Field(description="the last channel tried, or none")
    outcome: str
    status: int | None = Field(default=None, description="the CPE's HTTP status, if it answered")
    reason: str


class KnockWaitingOut(BaseModel):
    waiting: int = Field(description="devices waiting when the action began")
    knocked: int = Field(description="of them, knocked now")
    reached: int = Field(description="knocks that worked: those devices open a session now")
    remaining: int = Field(
        description="waiting devices left for another action (ACS_KNOCK_WAITING_MAX)"
    )
    byChannel: dict[str, dict[str, int]] = Field(
        description="per channel (http, udp, none), knocks by outcome"
    )
    unreachable: list[UnreachableOut] = Field(description="devices no channel reached, and why")

    @classmethod
    def of(cls, r: KnockReport) -> KnockWaitingOut:
        """The answer of a campaign's or a bulk job's knock action."""
        return cls(
            waiting=r.waiting,
            knocked=r.knocked,
            reached=r.reached,
            remaining=r.remaining,
            byChannel=r.by_channel,
            unreachable=[UnreachableOut(**u) for u in r.unreachable],
        )


class ReachOut(BaseModel):
    order: list[str] = Field(description="channels a knock would try now, in order")
    unusable: dict[str, str] = Field(description="channels a knock would skip, and why")
    connectionRequestUrl: str | None
    udpConnectionRequestAddress: str | None
    natDetected: bool | None = Field(description="as the CPE reports NATDetected")
    connReqJabberId: str | None = Field(
        default=None, description="as the CPE reports ConnReqJabberID (XMPP, TR-069 Annex K)"
    )
    xmppServer: dict[str, Any] | None = Field(
        default=None,
        description="the ACS's XMPP connection: server, JID, connected, why not, logins so far",
    )
    stunBinding: dict[str, Any] | None = Field(
        description="the public address:port of the last STUN Binding Request, when seen, "
        "since when unchanged, how often it changed, and whether it showed a NAT"
    )
    last: dict[str, dict[str, Any]] = Field(description="per channel: the last knock's outcome")


class FileOut(BaseModel):
    name: str
    size: int
    sha256: str
    fileType: str
    oui: str = ""
    productClass: str = ""
    version: str | None = None
    hardwareVersions: list[str] = []
    metadata: dict[str, Any] = {}
    created: datetime
    url: str


class FileListOut(BaseModel):
    items: list[FileOut]


class FileQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fileType: str = Field(default="1 Firmware Upgrade Image", max_length=64)
    oui: str = Field(default="", max_length=6)
    productClass: str = Field(default="", max_length=64)
    version: str | None = Field(default=None, max_length=64)
    hardwareVersions: str = Field(default="", max_length=1024, description="comma-separated")
    replace: bool = False


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    role: Literal["admin", "operator", "viewer"]


class TokenOut(BaseModel):
    name: str
    role: str
    created: datetime
    lastUsed: datetime | None = None
    revoked: datetime | None = None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="shown once; only its hash is stored")


class TokenListOut(BaseModel):
    items: list[TokenOut]
