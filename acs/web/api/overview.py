"""Routes of the fleet overview and of the running settings (read-only)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web
from pydantic import BaseModel, Field

from acs.store import campaigns as campaign_store
from acs.store import health as health_store
from acs.store import overview
from acs.web.api import firmware_models as F
from acs.web.api import models as M
from acs.web.api.firmware import campaign_out
from acs.web.api.plumbing import api, json_out, services
from acs.web.api.task_views import task_out

IN_PROGRESS = ("running", "paused")


class SeenOut(BaseModel):
    productClass: str
    softwareVersion: str | None = None
    total: int
    lastHour: int = Field(description="devices whose last Inform is less than an hour old")
    lastDay: int


class OverviewOut(BaseModel):
    devices: SeenOut = Field(description="the whole fleet")
    byProduct: list[SeenOut]
    bySoftware: list[SeenOut] = Field(description="the 200 largest (product, version) groups")
    openFaults: int = Field(description="jobs in fault that were not retried or cancelled")
    latestFaults: list[M.TaskOut]
    campaigns: list[F.CampaignOut] = Field(description="running and paused campaigns")
    unhealthyDevices: int = Field(
        default=0, description="devices of running and paused campaigns unhealthy after their soak"
    )


class SettingsOut(BaseModel):
    settings: dict[str, Any] = Field(description="every ACS_* setting; secrets masked")


def _seen(s: overview.SeenCount) -> SeenOut:
    return SeenOut(
        productClass=s.product_class,
        softwareVersion=s.software_version,
        total=s.total,
        lastHour=s.last_hour,
        lastDay=s.last_day,
    )


@api.route(
    "GET",
    "/overview",
    role="viewer",
    tag="meta",
    summary="The fleet at a glance",
    responses={200: (OverviewOut, "counts, open faults, campaigns in progress")},
)
async def get_overview(request: web.Request) -> web.Response:
    """Devices seen in the last hour and day by product and software version."""
    async with services(request).pool.acquire() as conn:
        groups = await overview.seen_by_software(conn)
        totals = await overview.device_totals(conn)
        open_faults, latest = await overview.faulted_tasks(conn)
        running = await campaign_store.list_all(conn, IN_PROGRESS)
        campaigns = [await campaign_out(conn, c) for c in reversed(running)]
        unhealthy = await health_store.unhealthy_total(conn)
    by_product: dict[str, overview.SeenCount] = {}
    for g in groups:
        p = by_product.setdefault(
            g.product_class, overview.SeenCount(g.product_class, None, 0, 0, 0)
        )
        p.total += g.total
        p.last_hour += g.last_hour
        p.last_day += g.last_day
    return json_out(
        OverviewOut(
            devices=_seen(totals),
            byProduct=[_seen(p) for p in sorted(by_product.values(), key=lambda p: -p.total)],
            bySoftware=[_seen(g) for g in groups],
            openFaults=open_faults,
            latestFaults=[task_out(t) for t in latest],
            campaigns=campaigns,
            unhealthyDevices=unhealthy,
        )
    )


SECRET_WORDS = ("password", "secret", "key")


def _masked(name: str, value: Any) -> Any:
    if value is None:
        return None
    if any(w in name for w in SECRET_WORDS):
        return "********"
    if name == "database_url":
        parts = urlsplit(str(value))
        if parts.password:
            host = parts.netloc.rsplit("@", 1)[-1]
            return urlunsplit(parts._replace(netloc=f"{parts.username}:********@{host}"))
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


@api.route(
    "GET",
    "/settings",
    role="admin",
    tag="admin",
    summary="The settings this ACS runs with",
    responses={200: (SettingsOut, "settings, secrets masked")},
)
async def get_settings(request: web.Request) -> web.Response:
    """Read-only: settings come from ACS_* environment variables at start."""
    settings = services(request).settings
    values = {
        name: _masked(name, getattr(settings, name)) for name in sorted(type(settings).model_fields)
    }
    return json_out(SettingsOut(settings=values))
