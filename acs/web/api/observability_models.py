"""Bodies of the session log, audit and webhook routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from acs.core.webhooks import EVENT_TYPES
from acs.web.api.bounds import BIGINT_MAX, UtcTime

EventType = Literal[tuple(EVENT_TYPES)]  # type: ignore[valid-type]


# --------------------------------------------------------------------------- session logs


class SessionSummaryOut(BaseModel):
    id: int = Field(description="the log's id, for GET .../sessions/{id}")
    started: datetime
    ended: datetime
    outcome: Literal["completed", "abandoned"]
    reason: str | None = Field(default=None, description="why an abandoned session ended")
    events: list[str] = Field(description="the Inform's event codes")
    messageCount: int
    storedBytes: int
    truncated: bool = Field(description="bodies were cut at ACS_SESSION_LOG_MAX_BYTES")
    remoteAddress: str | None = None
    sessionKey: str = Field(description="the session= value of the ACS's log lines")


class SessionListOut(BaseModel):
    device: str
    items: list[SessionSummaryOut]


class SessionMessageOut(BaseModel):
    direction: Literal["in", "out"] = Field(description="in: from the CPE; out: the ACS's answer")
    at: datetime
    status: int | None = Field(default=None, description="HTTP status of an answer")
    rpc: str | None = Field(default=None, description="e.g. Inform, InformResponse; none if empty")
    size: int = Field(description="bytes on the wire")
    body: str = Field(description="the SOAP text, secrets masked")
    truncated: bool = False
    note: str | None = None


class SessionOut(SessionSummaryOut):
    device: str
    messages: list[SessionMessageOut]


class DeviceEventQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str | None = Field(
        default=None, min_length=1, max_length=64, description="e.g. AutonomousTransferComplete"
    )
    limit: int = Field(default=100, ge=1, le=500)
    cursor: int | None = Field(
        default=None, ge=1, le=BIGINT_MAX, description="nextCursor of the previous page"
    )


class DeviceEventOut(BaseModel):
    id: int
    at: datetime
    kind: str = Field(description="the CWMP method the CPE sent, or the ACS's label for it")
    detail: dict[str, Any] = Field(description="its arguments as the ACS understood them")


class DeviceEventPageOut(BaseModel):
    device: str
    items: list[DeviceEventOut]
    nextCursor: int | None = None


# --------------------------------------------------------------------------- audit


def _as_utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # a time without a zone is read as UTC
    return value


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str | None = Field(default=None, max_length=100, description="API token name")
    object: str | None = Field(
        default=None, max_length=1024, description="object id: device id, job id, file name..."
    )
    objectType: str | None = Field(
        default=None, max_length=32, description="device, job, file, token, campaign, image..."
    )
    action: str | None = Field(
        default=None, max_length=64, description="the stable action, e.g. device.task.create"
    )
    since: UtcTime | None = Field(default=None, description="entries at or after this time")
    until: UtcTime | None = Field(default=None, description="entries before this time")
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: int | None = Field(
        default=None, ge=1, le=BIGINT_MAX, description="nextCursor of the previous page"
    )

    _utc = field_validator("since", "until")(_as_utc)


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str
    method: str
    route: str
    action: str
    objectType: str | None = None
    objectId: str | None = None
    status: int
    remote: str | None = None
    detail: dict[str, Any] | None = None


class AuditPageOut(BaseModel):
    items: list[AuditEntryOut]
    nextCursor: int | None = Field(default=None, description="pass as cursor for older entries")


# --------------------------------------------------------------------------- webhooks


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL to POST events to")
    events: list[EventType] = Field(  # type: ignore[valid-type]
        min_length=1, description="event types to receive"
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="HMAC-SHA256 key; generated (and shown once) when left out",
    )
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host is needed")
        _ = parts.port  # raises ValueError for a port outside 0-65535
        return value

    @field_validator("events")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    enabled: bool
    createdBy: str | None = None
    created: datetime
    deliveries: dict[str, int] = Field(
        default_factory=dict, description="deliveries by state: pending, delivered, abandoned"
    )


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="shown once: keep it to verify X-ACS-Signature")


class WebhookListOut(BaseModel):
    items: list[WebhookOut]


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["pending", "delivered", "abandoned"] | None = None
    limit: int = Field(default=50, ge=1, le=500)
    cursor: int | None = Field(
        default=None, ge=1, le=BIGINT_MAX, description="nextCursor of the previous page"
    )


class DeliveryOut(BaseModel):
    id: int
    eventId: str
    event: str
    state: Literal["pending", "delivered", "abandoned"]
    attempts: int
    nextAttemptAt: datetime | None = None
    lastStatus: int | None = None
    lastError: str | None = None
    created: datetime
    finished: datetime | None = None
    payload: dict[str, Any]


class RedeliverOut(BaseModel):
    delivery: int
    was: Literal["delivered", "abandoned"] = Field(description="its state before")
    state: Literal["pending"] = "pending"


class DeliveryPageOut(BaseModel):
    items: list[DeliveryOut]
    nextCursor: int | None = None
