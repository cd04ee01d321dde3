"""Why a device was, or was not, offered each image and each campaign.

The answer to "the device says Software is up to date, and it is not": every
catalog image of the device's product and every campaign gets a code and a
sentence, from the same rules the campaign engine decides with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from acs.core import campaigns as rules
from acs.core.firmware import DeviceFacts, Image, Scheme, Verdict, fit
from acs.core.times import rfc3339
from acs.core.versions import VersionError
from acs.services import joining, mirrors, rollout
from acs.services.catalog import CatalogView, device_facts
from acs.store import campaigns as store
from acs.store import devices

MAX_CAMPAIGNS = 100  # the newest ones; older finished campaigns rarely explain anything


@dataclass(slots=True)
class Explanation:
    device: devices.DeviceRecord
    scheme: Scheme
    parsed_version: str | None
    images: list[tuple[Image, Verdict]]
    campaigns: list[tuple[store.Campaign, store.Member | None, Verdict]]
    # where each offered image, and each campaign's Download, is (or would be) fetched
    image_sources: dict[int, mirrors.Source] = field(default_factory=dict)
    campaign_sources: dict[int, tuple[Image, mirrors.Source]] = field(default_factory=dict)


async def explain(conn: asyncpg.Connection, device_id: str) -> Explanation | None:
    dev = await devices.get_device(conn, device_id)
    if dev is None:
        return None
    view = await CatalogView.load(conn)
    facts = await device_facts(conn, device_id, view.region_parameters())
    assert facts is not None
    scheme = view.scheme(dev.oui, dev.product_class)
    parsed: str | None = None
    if dev.software_version:
        try:
            parsed = scheme.parse(dev.software_version).display()
        except VersionError as err:
            parsed = f"unparseable: {err}"
    images = [
        (image, fit(image, facts, scheme))
        for image in view.images
        if (image.oui, image.product_class) == (dev.oui, dev.product_class)
    ]
    members = {m.campaign_id: m for m in await store.members_of_device(conn, device_id)}
    open_work = await store.open_work_of_device(conn, device_id)
    campaigns = [c for c in await store.list_all(conn) if c.status != "draft"][-MAX_CAMPAIGNS:]
    verdicts = []
    now = rollout.utcnow()
    for campaign in reversed(campaigns):
        member = members.get(campaign.id)
        if member is None:
            verdict = await joining.outsider_verdict(conn, campaign, device_id, now)
        else:
            verdict = await _member_verdict(conn, campaign, member, open_work, view, facts, dev)
        verdicts.append((campaign, member, verdict))
    found = Explanation(dev, scheme, parsed, images, verdicts)
    for image, verdict in images:
        if verdict.ok:
            found.image_sources[image.id] = await mirrors.source_for(conn, image, device_id, facts)
    for campaign, member, _ in verdicts:
        if member is not None:
            source = await mirrors.of_member(conn, campaign, member, view, facts)
            if source is not None:
                found.campaign_sources[campaign.id] = source
    return found


async def _member_verdict(
    conn: asyncpg.Connection,
    campaign: store.Campaign,
    member: store.Member,
    open_work: list[tuple[store.Member, store.Campaign]],
    view: CatalogView,
    facts: DeviceFacts,
    dev: devices.DeviceRecord,
) -> Verdict:
    state = member.state
    if state == "succeeded":
        return Verdict(True, "succeeded", f"{member.reason} (at {_at(member.finished_at)})")
    if state == "rolled_back":
        return Verdict(False, "rolled_back", f"rolled back: {member.reason}")
    if state == "failed":
        # the kind (download_fault, power_loss, never_came_back...) is in the reason
        return Verdict(False, "device_faulted", f"failed: {member.reason}")
    if state == "skipped":
        return Verdict(False, member.code or "skipped", f"skipped: {member.reason}")
    if state == "downloading":
        return Verdict(
            True,
            "in_progress",
            f"Download of {member.target_version} sent at {_at(member.started_at)}; "
            "waiting for TransferComplete",
        )
    if state == "installing":
        return Verdict(
            True,
            "in_progress",
            f"TransferComplete received; waiting for the device to boot {member.target_version}",
        )
    if state == "verifying":
        return Verdict(
            True,
            "in_progress",
            f"TransferComplete received; checking the device reports {member.target_version}",
        )
    # pending: the first reason that holds it back, in the order the engine checks
    now = rollout.utcnow()
    held = rollout.gate(campaign, member, now)
    if held is not None:
        return held
    for other_member, other in open_work:
        if other.id == campaign.id:
            break
        if other_member.state in rules.IN_FLIGHT_STATES:
            return Verdict(
                False,
                "busy",
                f"a download of campaign {other.name!r} (#{other.id}) "
                "is in progress on this device",
            )
        if rollout.serves(other, other_member):
            return Verdict(
                False,
                "precedence",
                f"campaign {other.name!r} (#{other.id}, priority {other.priority}) "
                f"takes precedence for this device (this one: priority "
                f"{campaign.priority})",
            )
    limited = await rollout.rate_limited(conn, campaign)
    if limited is not None:
        return limited
    if not member.rollback:
        image, verdict = view.target_for(campaign, facts)
        if image is None:
            return Verdict(
                False, verdict.code, f"will be skipped at its next session: {verdict.reason}"
            )
    last = f" (last Inform {_at(dev.last_inform)})" if dev.last_inform else ""
    return Verdict(
        True,
        "waiting_for_device",
        f"due: the Download of {member.target_version} goes out at the device's next session{last}",
    )


def _at(when: datetime | None) -> str:
    return rfc3339(when) if when else "?"
