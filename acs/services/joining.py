"""A device that matches a campaign it is not in yet: the ONE place that says
whether it joins, and when.

Both answers a device can get come from ``outsider_verdict``: the
explanation (``GET /devices/{id}/firmware``) and the FOTA check-in. A FOTA
terminal that checks in while it is about to join a continuous campaign
joins at that check, as the campaign's tick would have admitted it, and is
offered the image in the same answer: a phone that checks once a day must not
be told it is up to date for a day because the tick had not come round yet.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from acs.core.filters import parse_filter
from acs.core.firmware import DeviceFacts, Verdict
from acs.core.times import rfc3339
from acs.services import campaigns
from acs.services.catalog import CatalogView
from acs.store import campaigns as store
from acs.store.device_query import compile_filter

JOINING = "joining"


async def matches(conn: asyncpg.Connection, campaign: store.Campaign, device_id: str) -> bool:
    where, params = compile_filter(parse_filter(campaign.filter), first_param=2)
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM devices d LEFT JOIN device_parameters dp"
        f" ON dp.device_id = d.id WHERE d.id = $1 AND ({where}))",
        device_id,
        *params,
    )
    return bool(found)


async def outsider_verdict(
    conn: asyncpg.Connection, campaign: store.Campaign, device_id: str, now: datetime
) -> Verdict:
    """Why a device that is not in ``campaign`` is not, or that it joins.
    ``ok`` is True when it may join now (a running continuous campaign past
    its start time): the tick admits it at its next round, a FOTA check at once."""
    if campaign.status in ("completed", "aborted", "cancelled"):
        return Verdict(False, "not_in_campaign", f"not in this campaign ({campaign.status})")
    if not await matches(conn, campaign, device_id):
        return Verdict(False, "filter_mismatch", "the campaign's filter does not match the device")
    if campaign.membership != "continuous":
        return Verdict(
            False,
            "not_in_audience",
            "matches the filter now, but the audience was fixed when the campaign started "
            "(snapshot membership)",
        )
    if campaign.status != "running":
        return Verdict(
            False,
            JOINING,
            f"matches the filter; joins when the campaign runs (it is {campaign.status})",
        )
    if campaign.start_at is not None and campaign.start_at > now:
        return Verdict(
            False,
            JOINING,
            f"matches the filter; joins when the campaign starts at {rfc3339(campaign.start_at)}",
        )
    return Verdict(
        True,
        JOINING,
        "matches the filter; joins at the campaign's next tick (a FOTA check-in joins at once)",
    )


async def join_now(
    conn: asyncpg.Connection, device_id: str, view: CatalogView, facts: DeviceFacts, now: datetime
) -> tuple[int, Verdict | None]:
    """Admit the device into every campaign it may join now, as the tick would;
    returns how many it joined, and the first joining verdict that holds it
    back (a paused or scheduled continuous campaign) for the answer."""
    joined, waiting = 0, None
    members = {m.campaign_id for m in await store.members_of_device(conn, device_id)}
    for campaign in await store.list_all(conn, ("running", "paused")):
        if campaign.membership != "continuous" or campaign.id in members:
            continue
        verdict = await outsider_verdict(conn, campaign, device_id, now)
        if verdict.code != JOINING:
            continue
        if verdict.ok:
            joined += await campaigns.admit_device(conn, campaign, device_id, view, facts)
        elif waiting is None:
            waiting = verdict
    return joined, waiting
