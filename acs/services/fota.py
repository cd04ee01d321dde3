"""The FOTA check-in at work: terminals without TR-069 (USB modems, hotspots,
phones) reach the same catalog and campaigns as CWMP devices.

A check is the terminal's "session": it records what the terminal runs,
verifies a download in flight (the terminal must come back on the target
build), or starts the one a campaign owes it under the same gates, rate
limits and precedence as a CWMP session. A report moves the download along.
Both run in one transaction holding the device row's lock, so a terminal
that retries impatiently never starts one download twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import asyncpg

from acs.core import campaigns as rules
from acs.core.firmware import DeviceFacts, Image, Scheme, Verdict, choose_image, fit, newest
from acs.logs import log
from acs.services import events as notify
from acs.services import joining, mirrors, rollout
from acs.services.catalog import CatalogView, device_facts, same_version
from acs.store import campaigns as store
from acs.store import devices, terminals

logger = logging.getLogger("acs.fota")

_ANY_CHANNEL = "\x00any"  # a channel name no image can have (see _catalog_verdict)


class ReportRefused(Exception):
    """A report about a device, campaign or download the ACS does not know of."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def conflict(self) -> bool:
        return self.code == "not_in_flight"


@dataclass(slots=True, frozen=True)
class Offer:
    campaign_id: int
    image: Image
    url: str | None = None  # a region mirror's; None: the ACS's file server


@dataclass(slots=True, frozen=True)
class NoUpdate:
    code: str
    reason: str

    @classmethod
    def of(cls, verdict: Verdict) -> NoUpdate:
        return cls(verdict.code, verdict.reason)


# --------------------------------------------------------------------------- the check


async def check_in(conn: asyncpg.Connection, check: terminals.CheckIn) -> Offer | NoUpdate:
    """Record the check-in, then settle the terminal's download in flight or start
    the one a campaign owes it; everything in one transaction, so the answer
    and the stored state never disagree."""
    async with conn.transaction():
        if await terminals.record_check_in(conn, check):
            # a terminal's first check-in registers it, as a CPE's first Inform does
            registered = await devices.get_device(conn, check.device_id)
            assert registered is not None
            await notify.device_registered(conn, registered)
        view = await CatalogView.load(conn)
        facts = await device_facts(conn, check.device_id, view.region_parameters())
        assert facts is not None  # written just above, in this transaction
        scheme = view.scheme(check.oui, check.product_class)
        work = await store.open_work_of_device(conn, check.device_id)

        verified: NoUpdate | None = None
        flying = next(((m, c) for m, c in work if m.state in rules.IN_FLIGHT_STATES), None)
        if flying is not None:
            member, campaign = flying
            build = check.software_version
            if same_version(scheme, build, member.target_version):
                await rollout.succeed(conn, campaign, member, build)
                verified = NoUpdate("verified", f"verified: now on {build}")
                # a "latest in channel" campaign may have made the next hop pending
                work = await store.open_work_of_device(conn, check.device_id)
            elif member.state == "verifying":
                # it reported the install done, so this check is the boot after it
                reason = (
                    f"came back on version {build} instead of {member.target_version} "
                    "after installing"
                )
                await rollout.fail(conn, campaign, member, None, reason, "old_version")
                return NoUpdate("old_version", reason)
            else:
                # downloading, or downloaded and not yet installed: a check now is
                # no proof of anything, and the agent may have lost the file
                return await _same_download(conn, campaign, member, view)

        answer = await _next_download(conn, work, view, facts)
        if isinstance(answer, Offer):
            return answer
        # about to join a continuous campaign: join now, as the explanation says
        joined, waiting = await joining.join_now(
            conn, check.device_id, view, facts, rollout.utcnow()
        )
        if joined:
            work = await store.open_work_of_device(conn, check.device_id)
            answer = await _next_download(conn, work, view, facts)
            if isinstance(answer, Offer):
                return answer
        answer = answer or _verdict_or_none(waiting)
        if verified is not None:
            return verified  # what just happened matters more than why nothing follows
        return answer or _catalog_verdict(view, facts, scheme)


async def _same_download(
    conn: asyncpg.Connection, campaign: store.Campaign, member: store.Member, view: CatalogView
) -> Offer | NoUpdate:
    """A terminal checking again before it reported the install: the answer it
    lost, or a file it lost. Not a new attempt: nothing is counted again."""
    image = view.by_id(member.image_id)
    if image is None:
        reason = "the image being downloaded left the catalog"
        await rollout.fail(conn, campaign, member, None, reason, "no_image")
        return NoUpdate("no_image", reason)
    return await _offer(conn, campaign, member, image)


async def _offer(
    conn: asyncpg.Connection, campaign: store.Campaign, member: store.Member, image: Image
) -> Offer:
    """The offer, with the URL of the image's region mirror for this terminal, if any."""
    facts = await device_facts(conn, member.device_id, [])
    source = (
        None if facts is None else await mirrors.source_for(conn, image, member.device_id, facts)
    )
    return Offer(campaign.id, image, None if source is None else source.url)


async def _next_download(
    conn: asyncpg.Connection,
    work: list[tuple[store.Member, store.Campaign]],
    view: CatalogView,
    facts: DeviceFacts,
) -> Offer | NoUpdate | None:
    """The campaign that holds the device picks the download, in the order
    rollout.queue_download uses for CWMP devices; None when no campaign has
    anything to say about this device."""
    now = rollout.utcnow()
    halted: NoUpdate | None = None
    for member, campaign in work:
        if member.state != "pending":
            continue
        if not rollout.serves(campaign, member):
            # a paused campaign does not hold the device, but says why it waits
            halted = halted or _verdict_or_none(rollout.gate(campaign, member, now))
            continue
        held = rollout.gate(campaign, member, now)
        if held is not None:
            return NoUpdate.of(held)  # this campaign holds the device; lower ones wait
        # the campaign row lock makes the rate limits exact across checks and sessions
        locked = await store.get(conn, campaign.id, lock=True)
        if locked is None or not rollout.serves(locked, member):
            continue
        limited = await rollout.rate_limited(conn, locked)
        if limited is not None:
            return NoUpdate.of(limited)
        started = await _start(conn, locked, member, view, facts)
        if started is not None:
            return started
    return halted


def _verdict_or_none(verdict: Verdict | None) -> NoUpdate | None:
    return None if verdict is None else NoUpdate.of(verdict)


async def _start(
    conn: asyncpg.Connection,
    campaign: store.Campaign,
    member: store.Member,
    view: CatalogView,
    facts: DeviceFacts,
) -> Offer | NoUpdate | None:
    """pending -> downloading, as rollout does for a CWMP device, but without a
    Download job: the terminal fetches the image itself (task_id stays NULL).
    None: the member was skipped or failed, and no longer holds the device."""
    image = await rollout.image_to_install(conn, campaign, member, view, facts)
    if image is None:
        return None
    attempt = member.attempts + 1
    moved = await store.transition(
        conn,
        campaign.id,
        member.device_id,
        ["pending"],
        "downloading",
        image_id=image.id,
        target_version=image.version,
        from_version=member.from_version if member.rollback else facts.software_version,
        task_id=None,
        attempts=attempt,
        started_at=rollout.utcnow(),
        next_attempt_at=None,
        fault_code=None,
    )
    if not moved:  # a CWMP session of the same device id got there first
        return NoUpdate("busy", "another download of this device started; check again")
    log(
        logger,
        logging.INFO,
        "fota_download",
        campaign=campaign.id,
        device=member.device_id,
        version=image.version,
        attempt=attempt,
        rollback=member.rollback or None,
    )
    return await _offer(conn, campaign, member, image)


def _catalog_verdict(view: CatalogView, facts: DeviceFacts, scheme: Scheme) -> NoUpdate:
    """No campaign has work for the terminal: say whether the catalog has
    something for it anyway (then only a campaign is missing), else why not."""
    mine = [i for i in view.images if (i.oui, i.product_class) == (facts.oui, facts.product_class)]
    if not mine:
        return NoUpdate(
            "no_image", f"the catalog has no image for {facts.oui}/{facts.product_class}"
        )
    offered = [i for i in newest(mine, scheme) if fit(i, facts, scheme).ok]
    if offered:
        return NoUpdate(
            "no_campaign",
            f"image {offered[0].version} fits this device, but no running campaign "
            "offers it to this device",
        )
    # choose_image ranks refusals by how close each image came to being offered;
    # putting every image in one channel ranks them across channels too
    _, verdict = choose_image(
        [replace(i, channel=_ANY_CHANNEL) for i in mine], facts, scheme, _ANY_CHANNEL
    )
    if verdict.code in ("same_version", "not_newer"):
        return NoUpdate(verdict.code, f"up to date: {verdict.reason}")
    return NoUpdate.of(verdict)


# --------------------------------------------------------------------------- the report


async def report(
    conn: asyncpg.Connection,
    device_id: str,
    campaign_id: int,
    result: str,
    code: int | None = None,
    message: str | None = None,
) -> store.Member:
    """Move the terminal's download along; returns the member as it now stands.

    A report repeated (the terminal lost our answer) changes nothing the
    second time, so retries are safe."""
    async with conn.transaction():
        if not await terminals.lock_device(conn, device_id):
            raise ReportRefused("unknown_device", f"no device {device_id}: check in first")
        campaign = await store.get(conn, campaign_id)
        if campaign is None:
            raise ReportRefused("unknown_campaign", f"no campaign {campaign_id}")
        member = await store.member(conn, campaign.id, device_id)
        if member is None:
            raise ReportRefused(
                "not_in_campaign",
                f"device {device_id} is not in campaign {campaign.id}",
            )
        if member.state not in rules.IN_FLIGHT_STATES:
            why = f": {member.reason}" if member.reason else ""
            raise ReportRefused(
                "not_in_flight",
                f"no download of campaign {campaign.id} is in progress on this device "
                f"(it is {member.state}{why})",
            )
        if result == "downloaded":
            # "installing" here means: downloaded, now installing
            await store.transition(conn, campaign.id, device_id, ["downloading"], "installing")
        elif result == "installed":
            # success still waits for a check reporting the target build
            await store.transition(
                conn, campaign.id, device_id, ["downloading", "installing"], "verifying"
            )
        else:
            what = "download" if result == "download_failed" else "install"
            detail = ": ".join(
                part
                for part in (
                    None if code is None else f"error {code}",
                    message,
                )
                if part
            )
            reason = f"{what} failed: {detail or 'no details given'}"
            await rollout.fail(conn, campaign, member, code, reason, f"{what}_fault")
        after = await store.member(conn, campaign.id, device_id)
        assert after is not None
    log(
        logger,
        logging.INFO,
        "fota_report",
        device=device_id,
        campaign=campaign.id,
        result=result,
        code=code,
        state=after.state,
    )
    return after
