"""A campaign inside a device's session: when to send the Download, and how its
success is proven.

Success is verified, never assumed: the Download is accepted, TransferComplete
arrives without a fault, and the device then reports the target
SoftwareVersion. Everything else fails with its reason: the CPE's fault code,
"came back on the old version", "never came back".

Which campaign serves a device: one at a time. The device's unfinished
campaigns are ranked by priority, then age; the first that is running (or
rolling back) holds the device, and lower ones wait behind it, so two
campaigns never race to flash one CPE.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from acs.core import campaigns as rules
from acs.core.firmware import DeviceFacts, Image, Verdict
from acs.core.times import rfc3339
from acs.core.windows import is_open, next_opening
from acs.logs import log
from acs.services import campaign_transfer, mirrors, rollback, soak
from acs.services import events as notify
from acs.services.catalog import CatalogView, device_facts, same_version, windows_of
from acs.store import campaigns as store
from acs.store import devices
from acs.store import firmware as catalog_store
from acs.store import tasks as task_store

logger = logging.getLogger("acs.campaigns")

FIRMWARE_FILE_TYPE = "1 Firmware Upgrade Image"


def utcnow() -> datetime:
    return datetime.now(UTC)


def next_attempt_at(campaign: store.Campaign, attempts: int) -> datetime:
    return utcnow() + timedelta(seconds=rules.retry_delay(attempts, campaign.retry_backoff_s))


async def cancel_task_of(conn: asyncpg.Connection, task_id: int | None, reason: str) -> None:
    """Close a campaign's Download job that will never be answered now."""
    if task_id is None:
        return
    task = await task_store.get_task(conn, task_id)
    if task is None:
        return
    if task.status == "pending":
        await task_store.cancel(conn, task_id)
    elif task.status == "running" and await task_store.give_up(conn, task_id, reason):
        await notify.job_closed(conn, task, fault_string=reason)


def serves(campaign: store.Campaign, member: store.Member) -> bool:
    """Whether the campaign may still send this device a Download: a running
    campaign, or a rollback (which goes on while the campaign is halted)."""
    if member.rollback:
        return campaign.status in ("running", "paused", "aborted")
    return campaign.status == "running"


def gate(campaign: store.Campaign, member: store.Member, now: datetime) -> Verdict | None:
    """Why a pending member may not start now (rate limits aside), or None."""
    if not serves(campaign, member):
        return Verdict(
            False,
            f"campaign_{campaign.status}",
            f"the campaign is {campaign.status}"
            + (f": {campaign.status_reason}" if campaign.status_reason else ""),
        )
    if campaign.start_at is not None and campaign.start_at > now:
        return Verdict(
            False, "campaign_scheduled", f"the campaign starts at {rfc3339(campaign.start_at)}"
        )
    if member.next_attempt_at is not None and member.next_attempt_at > now:
        return Verdict(
            False,
            "retry_backoff",
            f"{member.reason or 'the last attempt failed'}; next attempt after "
            f"{rfc3339(member.next_attempt_at)}",
        )
    if member.rollback:
        return None  # a rollback waits for neither stages nor windows
    if member.stage is not None and member.stage > campaign.current_stage:
        return Verdict(
            False,
            "stage_not_reached",
            f"the device is in stage {member.stage + 1}; the campaign is at stage "
            f"{campaign.current_stage + 1}",
        )
    windows = windows_of(campaign)
    if not is_open(windows, now):
        opening = next_opening(windows, now)
        return Verdict(
            False,
            "outside_window",
            "outside the maintenance windows; the next opens at "
            + (rfc3339(opening) if opening else "never"),
        )
    return None


async def rate_limited(conn: asyncpg.Connection, campaign: store.Campaign) -> Verdict | None:
    if campaign.max_in_flight is None and campaign.starts_per_minute is None:
        return None
    in_flight, starts = await store.load(conn, campaign.id)
    if campaign.max_in_flight is not None and in_flight >= campaign.max_in_flight:
        return Verdict(
            False,
            "rate_limited",
            f"rate-limited: {in_flight} downloads in progress "
            f"(at most {campaign.max_in_flight} at once)",
        )
    if campaign.starts_per_minute is not None and starts >= campaign.starts_per_minute:
        return Verdict(
            False,
            "rate_limited",
            f"rate-limited: {starts} downloads started in the last minute "
            f"(at most {campaign.starts_per_minute})",
        )
    return None


# --------------------------------------------------------------------------- the Download step


async def queue_download(conn: asyncpg.Connection, device_id: str) -> int | None:
    """Called in a session once the device's own job queue is empty: queue the
    Download a campaign owes this device now; returns the job's id, or None."""
    work = await store.open_work_of_device(conn, device_id)
    if not work or any(m.state in rules.IN_FLIGHT_STATES for m, _ in work):
        return None  # nothing to do, or the device is busy with one already
    now = utcnow()
    for member, campaign in work:
        if not serves(campaign, member):
            continue
        if gate(campaign, member, now) is not None:
            return None  # this campaign holds the device; lower ones wait behind it
        async with conn.transaction():
            # the campaign row lock makes the rate limits exact across sessions
            locked = await store.get(conn, campaign.id, lock=True)
            if locked is None or not serves(locked, member):
                return None
            if await rate_limited(conn, locked) is not None:
                return None
            task_id = await _start(conn, locked, member)
        if task_id is not None:
            return task_id
        current = await store.member(conn, campaign.id, device_id)
        if current is None or current.state != "skipped":
            return None
        # no image fits the device any more: the next campaign may have one
    return None


async def image_to_install(
    conn: asyncpg.Connection,
    campaign: store.Campaign,
    member: store.Member,
    view: CatalogView,
    facts: DeviceFacts,
) -> Image | None:
    """The image a pending member gets now: the campaign's target, or for a
    rollback the catalog image of the version it had. When there is none the
    member fails (rollback impossible) or is skipped (the device changed since
    admission: upgraded elsewhere, new hardware...) and None is returned."""
    if member.rollback:
        assert member.target_version is not None
        image = view.previous_image(facts, member.target_version)
        if image is None:
            await store.transition(
                conn,
                campaign.id,
                member.device_id,
                ["pending"],
                "failed",
                code="rollback_impossible",
                reason=f"rollback impossible: no catalog image of version "
                f"{member.target_version} fits hardware {facts.hardware_version}",
                finished_at=utcnow(),
            )
        return image
    image, verdict = view.target_for(campaign, facts)
    if image is None:
        await store.transition(
            conn,
            campaign.id,
            member.device_id,
            ["pending"],
            "skipped",
            reason=verdict.reason,
            code=verdict.code,
            finished_at=utcnow(),
        )
    return image


async def _start(
    conn: asyncpg.Connection, campaign: store.Campaign, member: store.Member
) -> int | None:
    view = await CatalogView.load(conn)
    facts = await device_facts(conn, member.device_id, view.region_parameters())
    if facts is None:
        return None
    image = await image_to_install(conn, campaign, member, view, facts)
    if image is None:
        return None
    attempt = member.attempts + 1
    command_key = f"campaign-{campaign.id}-{'rb' if member.rollback else 'up'}-{attempt}"
    source = await mirrors.source_for(conn, image, member.device_id, facts)  # region mirror?
    args = mirrors.download_args(image, source, FIRMWARE_FILE_TYPE, command_key)
    # a Download, or a ScheduleDownload inside the maintenance window (transfer option)
    name, args = await campaign_transfer.job_for(conn, campaign, member.device_id, args, utcnow())
    task = await task_store.enqueue(conn, member.device_id, name, args)
    moved = await store.transition(
        conn,
        campaign.id,
        member.device_id,
        ["pending"],
        "downloading",
        image_id=image.id,
        target_version=image.version,
        from_version=member.from_version if member.rollback else facts.software_version,
        task_id=task.id,
        attempts=attempt,
        started_at=utcnow(),
        next_attempt_at=None,
        fault_code=None,
    )
    if not moved:
        await task_store.cancel(conn, task.id)
        return None
    log(
        logger,
        logging.INFO,
        "campaign_download",
        campaign=campaign.id,
        device=member.device_id,
        version=image.version,
        attempt=attempt,
        rollback=member.rollback or None,
        mirror=source.url,
    )
    return task.id


# --------------------------------------------------------------------------- verification


async def transfer_complete(
    conn: asyncpg.Connection, device_id: str, task: task_store.Task
) -> None:
    """A campaign's TransferComplete without a fault: the version check is next."""
    member = await store.member_of_task(conn, device_id, task.id)
    if member is not None and task.status == "done":
        await store.transition(conn, member.campaign_id, device_id, ["downloading"], "verifying")


# failures that are only the ACS's impatience: a TransferComplete may still come
TIMED_OUT_CODES = ("transfer_lost", "never_came_back")


async def late_transfer_complete(
    conn: asyncpg.Connection, device_id: str, command_key: str, outcome: dict[str, object]
) -> bool:
    """A TransferComplete without a fault for a campaign Download the campaign had
    given up waiting for (its verify timeout: "dropped the Download", "never came
    back"). The CPE did take the image, so the job is closed as done and, if no
    other attempt has started since, the device is verified as after any
    TransferComplete: counted as skipped ("already runs" the target) it would be
    a success lost, and a retry's Download would flash it twice.
    True if it was such a Download (settle the device when the session ends)."""
    found = await conn.fetchrow(
        "SELECT id FROM tasks WHERE device_id = $1 AND command_key = $2"
        " AND status = 'fault' AND fault_code IS NULL ORDER BY id DESC LIMIT 1",
        device_id,
        command_key,
    )
    if found is None:
        return False
    member = await store.member_holding_task(conn, device_id, found["id"])
    if member is None:
        return False  # not a campaign's: the job stays as the timeout left it
    task = await task_store.get_task(conn, found["id"])
    assert task is not None
    result = dict(task.result or {})
    result.pop("awaitingTransferComplete", None)
    result["transferComplete"] = outcome
    result["lateTransferComplete"] = True
    closed = await task_store.close_given_up_transfer(conn, device_id, task.id, command_key, result)
    if closed is None:
        return False
    reopened = await conn.fetchval(
        """
        UPDATE campaign_devices SET state = 'verifying', next_attempt_at = NULL,
            finished_at = NULL, code = NULL, updated_at = now(),
            reason = 'TransferComplete arrived after the timeout; verifying the version'
        WHERE campaign_id = $1 AND device_id = $2 AND task_id = $3
          AND (state = 'pending' OR (state = 'failed' AND code = ANY($4::text[])))
        RETURNING 1
        """,
        member.campaign_id,
        device_id,
        task.id,
        list(TIMED_OUT_CODES),
    )
    log(
        logger,
        logging.INFO,
        "campaign_late_transfer_complete",
        campaign=member.campaign_id,
        device=device_id,
        job=task.id,
        verifying=reopened is not None,
    )
    return reopened is not None


async def settle_device(conn: asyncpg.Connection, device_id: str) -> None:
    """After a session: judge each of the device's campaign downloads in flight."""
    for member, campaign in await store.open_work_of_device(conn, device_id):
        if member.state in rules.IN_FLIGHT_STATES:
            async with conn.transaction():
                await settle_member(conn, campaign, member)


async def members_with_finished_jobs(
    conn: asyncpg.Connection, campaign_id: int
) -> list[store.Member]:
    """Downloads in flight whose job ended outside a session (TransferComplete timeout)."""
    rows = await conn.fetch(
        f"""
        SELECT {store.MEMBER_COLUMNS_CD} FROM campaign_devices cd JOIN tasks t ON t.id = cd.task_id
        WHERE cd.campaign_id = $1 AND cd.state IN ('downloading', 'installing', 'verifying')
          AND t.status IN ('fault', 'expired', 'cancelled')
        """,
        campaign_id,
    )
    return [store.Member.from_row(r) for r in rows]


async def settle_member(
    conn: asyncpg.Connection, campaign: store.Campaign, member: store.Member
) -> None:
    if member.task_id is None:
        return  # a FOTA terminal's download: its check-ins judge it (acs.services.fota)
    task = await task_store.get_task(conn, member.task_id)
    dev = await devices.get_device(conn, member.device_id)
    if dev is None:
        return
    scheme = await catalog_store.get_scheme(conn, dev.oui, dev.product_class)
    on_target = same_version(scheme, dev.software_version, member.target_version)
    rebooted_since = (
        dev.last_boot is not None
        and member.started_at is not None
        and dev.last_boot > member.started_at
    )
    if task is None:
        await fail(
            conn, campaign, member, None, "the campaign's Download job was deleted", "job_closed"
        )
    elif task.status == "fault":
        code = task.fault_code
        detail = f"CPE fault {code}: {task.fault_string}" if code else (task.fault_string or "")
        await fail(conn, campaign, member, code, f"download failed: {detail}", "download_fault")
    elif task.status in ("expired", "cancelled"):
        await fail(
            conn, campaign, member, None, f"the Download job was {task.status}", "job_closed"
        )
    elif task.status == "done":
        if on_target:
            await succeed(conn, campaign, member, dev.software_version or "")
        elif task.finished_at is not None and dev.last_boot and dev.last_boot > task.finished_at:
            await fail(
                conn,
                campaign,
                member,
                None,
                f"came back on version {dev.software_version} instead of "
                f"{member.target_version} after installing",
                "old_version",
            )
        else:
            # TransferComplete came before the reboot (some CPEs do): wait for it
            await store.transition(
                conn, campaign.id, member.device_id, ["downloading", "verifying"], "installing"
            )
    elif task.status == "running" and task.session_id is None and rebooted_since and not on_target:
        if not await task_store.give_up(conn, task.id, rules.POWER_LOSS):
            return  # closed meanwhile: its TransferComplete judges it
        await notify.job_closed(conn, task, fault_string=rules.POWER_LOSS)
        await fail(conn, campaign, member, None, rules.POWER_LOSS, "power_loss")


async def succeed(
    conn: asyncpg.Connection, campaign: store.Campaign, member: store.Member, version: str
) -> None:
    if await rollback.catch(conn, campaign, member, version):
        return  # installed after the rollback started: sent back instead
    state = "rolled_back" if member.rollback else "succeeded"
    done = await store.transition(
        conn,
        campaign.id,
        member.device_id,
        list(rules.IN_FLIGHT_STATES),
        state,
        reason=f"verified: the device reports {version}",
        finished_at=utcnow(),
        fault_code=None,
    )
    if done:
        log(
            logger,
            logging.INFO,
            "campaign_device_" + state,
            campaign=campaign.id,
            device=member.device_id,
            version=version,
        )
    if done and not member.rollback:
        await soak.begin(conn, campaign, member)  # a stage with a soak watches it now
    if done and not member.rollback and campaign.channel is not None:
        await _next_hop(conn, campaign, member)


async def _next_hop(
    conn: asyncpg.Connection, campaign: store.Campaign, member: store.Member
) -> None:
    """A "latest in channel" campaign climbs stepping stones: after one hop, the
    device is pending again if a newer image now fits."""
    view = await CatalogView.load(conn)
    facts = await device_facts(conn, member.device_id, view.region_parameters())
    if facts is None:
        return
    image, _ = view.target_for(campaign, facts)
    if image is not None:
        await store.transition(
            conn,
            campaign.id,
            member.device_id,
            ["succeeded"],
            "pending",
            attempts=0,
            from_version=facts.software_version,
            target_version=image.version,
            image_id=image.id,
            finished_at=None,
            reason=f"stepping stone {facts.software_version} installed; next {image.version}",
        )


async def fail(
    conn: asyncpg.Connection,
    campaign: store.Campaign,
    member: store.Member,
    fault_code: int | None,
    reason: str,
    code: str,
) -> None:
    """Another attempt later for a transient failure while attempts remain; else failed.
    ``code`` names the kind of failure for the explanation (download_fault, power_loss...)."""
    if member.rollback:
        reason = "rollback failed: " + reason
    retry = rules.is_transient(fault_code, reason.removeprefix("rollback failed: ")) and (
        member.attempts < campaign.max_attempts
    )
    if retry and await rollback.no_retry(conn, campaign, member):
        retry, reason = False, f"{reason} (not retried: the campaign is rolling back)"
    if retry:
        moved = await store.transition(
            conn,
            campaign.id,
            member.device_id,
            list(rules.IN_FLIGHT_STATES),
            "pending",
            reason=f"attempt {member.attempts} failed: {reason}",
            code=code,
            fault_code=fault_code,
            next_attempt_at=next_attempt_at(campaign, member.attempts),
        )
    else:
        moved = await store.transition(
            conn,
            campaign.id,
            member.device_id,
            list(rules.IN_FLIGHT_STATES),
            "failed",
            reason=reason,
            code=code,
            fault_code=fault_code,
            finished_at=utcnow(),
        )
    if moved:
        log(
            logger,
            logging.INFO,
            "campaign_device_retry" if retry else "campaign_device_failed",
            campaign=campaign.id,
            device=member.device_id,
            fault=fault_code,
            reason=reason,
        )


async def time_out(
    conn: asyncpg.Connection, campaign: store.Campaign, member: store.Member
) -> None:
    """A download in flight past the campaign's verify timeout.

    A device that has been in touch since the Download, but never finished
    the transfer, dropped it (a session cut before the CPE committed it, a
    reboot that lost the queue): that is worth another attempt. One that has
    not been heard from since is gone, or bricked.
    """
    # The job's row is where this timeout and the CPE's TransferComplete meet: lock
    # it, then judge the member as it is now, as a session's end would (its
    # TransferComplete may have just come, the device on the target version, its
    # session not over yet). Else a TransferComplete committed between the reads
    # and the writes here would be overwritten by "never came back".
    if member.task_id is not None:
        await task_store.lock(conn, member.task_id)
    current = await store.member(conn, campaign.id, member.device_id)
    if current is None or current.state not in rules.IN_FLIGHT_STATES:
        return
    await settle_member(conn, campaign, current)
    current = await store.member(conn, campaign.id, member.device_id)
    if current is None or current.state not in rules.IN_FLIGHT_STATES:
        return  # settled: succeeded, failed or back to pending for a retry
    member = current
    limit = int(campaign.verify_timeout_s)
    dev = await devices.get_device(conn, member.device_id)
    seen_since = (
        dev is not None
        and dev.last_inform is not None
        and member.started_at is not None
        and dev.last_inform > member.started_at
    )
    if member.state == "downloading" and seen_since:
        reason, code = rules.TRANSFER_LOST, "transfer_lost"
    elif member.state == "downloading":
        reason = f"never came back: no TransferComplete within {limit} s"
        code = "never_came_back"
    else:
        reason = f"never came back on {member.target_version} within {limit} s"
        code = "never_came_back"
    await cancel_task_of(conn, member.task_id, reason)
    await fail(conn, campaign, member, None, reason, code)
