"""Bodies of the provisioning policy and per-device override routes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from acs.core.filters import FilterError, parse_filter
from acs.core.tasks import XSD_TYPES
from acs.core.templates import TemplateError, parse_template
from acs.web.api.firmware_models import WindowIn

XsdType = Literal[tuple(sorted(XSD_TYPES))]  # type: ignore[valid-type]
Path = Field(min_length=1, max_length=1024)
EVENT_PATTERN = r"^(\d+ [A-Z][A-Z ]*|M [A-Za-z][A-Za-z ]*|X [A-Za-z0-9]+ .+)$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _template(value: Any) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    try:
        parse_template(text)
    except TemplateError as err:
        raise ValueError(f"invalid template: {err}") from None
    return text


class ParameterIn(_In):
    path: str = Path
    value: str | int | float | bool = Field(
        description="a template, e.g. ssid-{DeviceID.SerialNumber[-4:]}"
    )
    type: XsdType | None = None

    @field_validator("value")
    @classmethod
    def _valid(cls, value: Any) -> str:
        return _template(value)


class ObjectIn(_In):
    path: str = Field(min_length=2, max_length=1024, pattern=r"\.$")
    count: int | None = Field(default=None, ge=0, le=1000, description="exactly this many")
    keys: dict[str, str] | None = Field(
        default=None, description="or: one instance whose key parameters have these values"
    )
    parameters: dict[str, str] = Field(default_factory=dict)

    @field_validator("keys", "parameters")
    @classmethod
    def _templates(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        return {k: _template(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _one_kind(self) -> ObjectIn:
        if (self.count is None) == (self.keys is None):
            raise ValueError("give exactly one of count or keys")
        if self.count is not None and self.parameters:
            raise ValueError("parameters go with keys (one instance), not with count")
        return self


class AttributeIn(_In):
    path: str = Path
    notification: Literal[0, 1, 2]


class RefreshIn(_In):
    path: str = Path
    maxAgeS: float = Field(ge=0, le=365 * 86400)


class TagsIn(_In):
    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class DownloadIn(_In):
    file: str = Field(min_length=1, max_length=200)
    fileType: str = Field(default="3 Vendor Configuration File", max_length=64)


class BackupIn(_In):
    """A config backup (an Upload to the ACS's own file server) when the policy applies."""

    fileType: str = Field(default="1 Vendor Configuration File", min_length=1, max_length=64)
    every: int | None = Field(
        default=None,
        ge=60,
        le=365 * 86400,
        description="at most once per this many seconds per device (e.g. 604800: weekly)",
    )
    onFirmwareChange: bool = Field(
        default=False,
        description="when the device runs firmware its newest backup was not taken on",
    )


class PolicyIn(_In):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    enabled: bool = True
    priority: int = Field(default=0, ge=-1000, le=1000)
    precondition: str = Field(default="", max_length=4096, description="the filter language")
    events: list[str] = Field(
        default_factory=list,
        max_length=20,
        description='sessions with one of these events (e.g. "0 BOOTSTRAP"); empty: every one',
    )
    windows: list[WindowIn] = Field(default_factory=list, max_length=20)
    parameters: list[ParameterIn] = Field(default_factory=list, max_length=500)
    objects: list[ObjectIn] = Field(default_factory=list, max_length=100)
    attributes: list[AttributeIn] = Field(default_factory=list, max_length=500)
    refresh: list[RefreshIn] = Field(default_factory=list, max_length=100)
    tags: TagsIn = Field(default_factory=TagsIn)
    download: DownloadIn | None = None
    backup: BackupIn | None = None

    @field_validator("precondition")
    @classmethod
    def _filter(cls, value: str) -> str:
        try:
            parse_filter(value)
        except FilterError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        for event in value:
            if not re.match(EVENT_PATTERN, event):
                raise ValueError(f"{event!r} is not a CWMP event code such as '0 BOOTSTRAP'")
        return value

    def spec(self) -> dict[str, Any]:
        """The stored desired state: the body minus the columns of its own."""
        return self.model_dump(
            include={
                "parameters",
                "objects",
                "attributes",
                "refresh",
                "tags",
                "download",
                "backup",
            },
            exclude_none=True,
        )


class PolicyOut(BaseModel):
    id: int
    name: str
    description: str
    enabled: bool
    priority: int
    precondition: str
    events: list[str]
    windows: list[dict[str, Any]]
    parameters: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    attributes: list[dict[str, Any]] = []
    refresh: list[dict[str, Any]] = []
    tags: dict[str, list[str]] = {}
    download: dict[str, Any] | None = None
    backup: dict[str, Any] | None = None
    version: int
    createdBy: str | None = None
    created: datetime
    updated: datetime


class PolicyListOut(BaseModel):
    items: list[PolicyOut]


class DryRunQuery(_In):
    device: str = Field(min_length=1, max_length=300)


class DraftDryRunQuery(_In):
    device: str = Field(min_length=1, max_length=300)
    policy: int | None = Field(
        default=None,
        ge=1,
        le=2**63 - 1,
        description="the stored policy this draft edits: its secrets, read back masked,"
        " keep their values (as PUT does)",
    )


class DryRunOut(BaseModel):
    policy: int = Field(description="the policy's id; 0 for a draft")
    device: str
    matches: bool = Field(description="whether the precondition holds for the device now")
    set: list[dict[str, Any]]
    add: list[str]
    delete: list[str]
    attributes: list[dict[str, Any]]
    faults: list[dict[str, Any]]
    conflicts: list[dict[str, Any]] = []
    tags: dict[str, list[str]] = {}
    download: dict[str, Any] | None = None


class PolicyResultOut(BaseModel):
    policy: int
    name: str
    version: int
    current: bool = Field(description="applied at the policy's current version")
    appliedAt: datetime
    changes: int
    faults: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]


class SourceOut(BaseModel):
    path: str
    policy: int | None = Field(description="null: a per-device override")
    policyName: str
    value: str
    setAt: datetime


class DevicePoliciesOut(BaseModel):
    device: str
    results: list[PolicyResultOut]
    sources: list[SourceOut]


class OverridesIn(_In):
    parameters: list[tuple[str, str] | tuple[str, str, XsdType]] = Field(
        max_length=500, description="[[path, value, type?]]: literal values, not templates"
    )


class OverridesOut(BaseModel):
    device: str
    parameters: list[list[str | None]]
