"""Firmware campaigns at work: admission, operator controls and the periodic tick.

What happens inside a device's session (the Download step and the
verification) lives in acs.services.rollout; explanations in
acs.services.explain. All state is in PostgreSQL; the tick is idempotent, so
a restart (or a second ACS process ticking too) repeats nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg

from acs.connreq.http import ConnectionRequestResult
from acs.core import campaigns as rules
from acs.core import knocks
from acs.core.filters import parse_filter
from acs.core.firmware import DeviceFacts, Image, Verdict
from acs.core.windows import is_open
from acs.logs import log
from acs.services import events as notify
from acs.services import leases, rollback, rollout, soak
from acs.services.catalog import (
    CatalogView,
    chunks,
    fact_columns,
    facts_from_row,
    stages_of,
    windows_of,
)
from acs.store import campaigns as store
from acs.store import leases as lease_store
from acs.store.device_query import compile_filter

utcnow = rollout.utcnow

logger = logging.getLogger("acs.campaigns")

ADMISSION_BATCH = 5000
# where a rollback goes on (rollout.serves): retry-failed retries its failures there
ROLLING_BACK = ("running", "paused", "aborted")


class ControlError(Exception):
    """An operator action that does not apply to the campaign as it is (API 409)."""


# --------------------------------------------------------------------------- admission


@dataclass(slots=True)
class Candidate:
    device_id: str
    facts: DeviceFacts
    image: Image | None
    verdict: Verdict


@dataclass(slots=True)
class Admission:
    eligible: list[Candidate] = field(default_factory=list)
    refused: list[Candidate] = field(default_factory=list)


async def evaluate_audience(
    conn: asyncpg.Connection, campaign: store.Campaign, view: CatalogView, *, new_only: bool
) -> Admission:
    """Every device the filter matches, with the image it would get or why not.
    ``new_only`` leaves out devices already in the campaign (continuous membership)."""
    head: list[object] = [view.region_parameters()]
    sql = f"SELECT {fact_columns('$1')} FROM devices d"
    sql += " LEFT JOIN device_parameters dp ON dp.device_id = d.id"
    if new_only:
        head.append(campaign.id)
        sql += (
            " WHERE NOT EXISTS (SELECT 1 FROM campaign_devices cd"
            " WHERE cd.campaign_id = $2 AND cd.device_id = d.id) AND "
        )
    else:
        sql += " WHERE "
    where, params = compile_filter(parse_filter(campaign.filter), first_param=len(head) + 1)
    sql += f"({where})"
    admission = Admission()
    async with conn.transaction():
        cursor = conn.cursor(sql, *head, *params)
        async for row in cursor:
            facts = facts_from_row(row)
            image, verdict = view.target_for(campaign, facts)
            candidate = Candidate(row["id"], facts, image, verdict)
            (admission.eligible if verdict.ok else admission.refused).append(candidate)
    return admission


def staged(campaign: store.Campaign, admission: Admission) -> list[list[Candidate]]:
    """The eligible devices per stage, in the campaign's random but stable order;
    devices past the last stage's size are in a final extra list."""
    ordered = sorted(
        admission.eligible, key=lambda c: rules.audience_order(campaign.name, c.device_id)
    )
    bounds = rules.cutoffs(stages_of(campaign), len(ordered))
    result: list[list[Candidate]] = [[] for _ in range(len(bounds) + 1)]
    for position, candidate in enumerate(ordered):
        stage = rules.stage_of(position, bounds)
        result[len(bounds) if stage is None else stage].append(candidate)
    return result


def _member_records(
    campaign: store.Campaign,
    placed: Sequence[tuple[Candidate, int | None]],
    refused: Sequence[Candidate],
) -> list[store.MemberRecord]:
    """Rows for admitted devices (stage None: past the last stage) and refused ones."""
    last = campaign.stages[-1]["size"] if campaign.stages else "0"
    beyond = f"outside the campaign's stages: its last stage takes {last} of the audience"
    records: list[store.MemberRecord] = []
    for c, stage in placed:
        assert c.image is not None
        records.append(
            (
                campaign.id,
                c.device_id,
                stage,
                "pending" if stage is not None else "skipped",
                c.image.id,
                c.facts.software_version,
                c.image.version,
                None if stage is not None else beyond,
                None if stage is not None else "outside_stages",
            )
        )
    for c in refused:
        records.append(
            (
                campaign.id,
                c.device_id,
                None,
                "skipped",
                None,
                c.facts.software_version,
                None,
                c.verdict.reason,
                c.verdict.code,
            )
        )
    return records


async def start(conn: asyncpg.Connection, campaign_id: int) -> store.Campaign:
    """Admit the audience (stage by stage) and set the campaign running."""
    async with conn.transaction():
        campaign = await store.get(conn, campaign_id, lock=True)
        if campaign is None:
            raise LookupError(campaign_id)
        if campaign.status != "draft":
            raise ControlError(f"only a draft campaign can start; this one is {campaign.status}")
        view = await CatalogView.load(conn)
        admission = await evaluate_audience(conn, campaign, view, new_only=False)
        per_stage = staged(campaign, admission)
        last = len(per_stage) - 1
        placed = [
            (c, None if stage == last else stage)
            for stage, candidates in enumerate(per_stage)
            for c in candidates
        ]
        records = _member_records(campaign, placed, admission.refused)
        for batch in chunks(records, ADMISSION_BATCH):
            await store.add_members(conn, batch)
        await soak.on_start(conn, campaign)  # baseline and control group of the health soak
        started = await store.update(
            conn,
            campaign.id,
            status="running",
            status_reason=None,
            started_at=utcnow(),
            audience=len(admission.eligible),
        )
        await _announce(conn, campaign, started)
    assert started is not None
    log(
        logger,
        logging.INFO,
        "campaign_started",
        campaign=campaign.id,
        eligible=len(admission.eligible),
        skipped=len(admission.refused),
    )
    return started


async def admit_newcomers(conn: asyncpg.Connection, campaign: store.Campaign) -> int:
    """Continuous membership: devices that match now join the current stage."""
    view = await CatalogView.load(conn)
    admission = await evaluate_audience(conn, campaign, view, new_only=True)
    placed = [(c, campaign.current_stage) for c in admission.eligible]
    records = _member_records(campaign, placed, admission.refused)
    for batch in chunks(records, ADMISSION_BATCH):
        await store.add_members(conn, batch)
    if admission.eligible:
        log(
            logger,
            logging.INFO,
            "campaign_joined",
            campaign=campaign.id,
            devices=len(admission.eligible),
        )
    return len(admission.eligible)


async def admit_device(
    conn: asyncpg.Connection,
    campaign: store.Campaign,
    device_id: str,
    view: CatalogView,
    facts: DeviceFacts,
) -> int:
    """Continuous membership for one device the filter matches (acs.services.joining
    checked it): it joins the current stage as admit_newcomers would; 1 if
    eligible, 0 if recorded as refused."""
    image, verdict = view.target_for(campaign, facts)
    candidate = Candidate(device_id, facts, image, verdict)
    placed = [(candidate, campaign.current_stage)] if verdict.ok else []
    await store.add_members(
        conn, _member_records(campaign, placed, [] if verdict.ok else [candidate])
    )
    return 1 if verdict.ok else 0


# --------------------------------------------------------------------------- controls


async def _control(
    conn: asyncpg.Connection, campaign_id: int, allowed: tuple[str, ...], action: str
) -> store.Campaign:
    campaign = await store.get(conn, campaign_id, lock=True)
    if campaign is None:
        raise LookupError(campaign_id)
    if campaign.status not in allowed:
        raise ControlError(
            f"cannot {action} a campaign that is {campaign.status}"
            f" (only when {' or '.join(allowed)})"
        )
    return campaign


async def _refuse_if_rolling_back(conn: asyncpg.Connection, campaign_id: int, action: str) -> None:
    refused = rollback.refuse_upgrade(await rollback.rolling_back(conn, campaign_id), action)
    if refused is not None:
        raise ControlError(refused)


async def _failed_counts(conn: asyncpg.Connection, campaign_id: int) -> dict[str, int]:
    counts = await store.stage_counts(conn, campaign_id)
    return {str(stage): c.count("failed") for stage, c in counts.items()}


async def _announce(
    conn: asyncpg.Connection, before: store.Campaign, after: store.Campaign | None
) -> None:
    """campaign.state_changed when the status or the stage moved, in the
    transaction that moved it."""
    if after is None:
        return
    await notify.campaign_changed(
        conn,
        after.id,
        after.name,
        before=(before.status, before.current_stage),
        after=(after.status, after.current_stage),
        reason=after.status_reason,
    )


async def pause(conn: asyncpg.Connection, campaign_id: int, who: str) -> store.Campaign:
    async with conn.transaction():
        before = await _control(conn, campaign_id, ("running",), "pause")
        result = await store.update(
            conn, campaign_id, status="paused", status_reason=f"paused by {who}"
        )
        await _announce(conn, before, result)
    assert result is not None
    return result


async def resume(conn: asyncpg.Connection, campaign_id: int, who: str) -> store.Campaign:
    """Go on with the current stage; failures seen so far are acknowledged, so
    only new ones count against the thresholds."""
    async with conn.transaction():
        before = await _control(conn, campaign_id, ("paused",), "resume")
        await _refuse_if_rolling_back(conn, campaign_id, "resume")
        result = await store.update(
            conn,
            campaign_id,
            status="running",
            status_reason=f"resumed by {who}",
            failure_baseline=await _failed_counts(conn, campaign_id),
        )
        await soak.acknowledge(conn, campaign_id)
        await _announce(conn, before, result)
    assert result is not None
    return result


async def approve(conn: asyncpg.Connection, campaign_id: int, who: str) -> store.Campaign:
    """Start the next stage now (after a pause for approval, or ahead of its threshold)."""
    async with conn.transaction():
        campaign = await _control(conn, campaign_id, ("running", "paused"), "approve")
        await _refuse_if_rolling_back(conn, campaign_id, "approve")
        if campaign.current_stage >= len(campaign.stages) - 1:
            raise ControlError("the campaign is already at its last stage")
        result = await store.update(
            conn,
            campaign_id,
            status="running",
            current_stage=campaign.current_stage + 1,
            status_reason=f"stage {campaign.current_stage + 2} approved by {who}",
            failure_baseline=await _failed_counts(conn, campaign_id),
        )
        await soak.acknowledge(conn, campaign_id)
        await _announce(conn, campaign, result)
    assert result is not None
    return result


async def cancel(conn: asyncpg.Connection, campaign_id: int, who: str) -> store.Campaign:
    async with conn.transaction():
        before = await _control(conn, campaign_id, ("draft", "running", "paused"), "cancel")
        await _stop_pending(conn, campaign_id, f"campaign cancelled by {who}", "campaign_cancelled")
        result = await store.update(
            conn,
            campaign_id,
            status="cancelled",
            status_reason=f"cancelled by {who}",
            finished_at=utcnow(),
        )
        await _announce(conn, before, result)
    assert result is not None
    return result


async def retry_failed(conn: asyncpg.Connection, campaign_id: int, who: str) -> int:
    """Failed devices get another round of attempts; a finished campaign runs again.
    In a rolling-back campaign (paused or aborted too), the failed rollbacks."""
    async with conn.transaction():
        if await rollback.rolling_back(conn, campaign_id) is not None:
            return await rollback.retry_failed(
                conn,
                await _control(conn, campaign_id, ROLLING_BACK, "retry the failed rollbacks of"),
            )
        before = await _control(
            conn, campaign_id, ("running", "paused", "completed"), "retry the failed devices of"
        )
        moved: int = await conn.fetchval(
            """
            WITH moved AS (
                UPDATE campaign_devices SET state = 'pending', attempts = 0,
                    next_attempt_at = NULL, finished_at = NULL, updated_at = now(),
                    reason = 'retried by operator after: ' || coalesce(reason, '')
                WHERE campaign_id = $1 AND state = 'failed' RETURNING 1)
            SELECT count(*)::int FROM moved
            """,
            campaign_id,
        )
        rerun = await store.update(
            conn,
            campaign_id,
            expect=("completed",),
            status="running",
            finished_at=None,
            status_reason=f"failed devices retried by {who}",
        )
        await _announce(conn, before, rerun)
        await store.update(conn, campaign_id, failure_baseline={})
    return moved


async def _stop_pending(conn: asyncpg.Connection, campaign_id: int, reason: str, code: str) -> None:
    """Pending devices are skipped; a Download queued but not yet sent is withdrawn.
    A device already downloading is left to finish: it cannot be stopped."""
    await conn.execute(
        """
        UPDATE tasks t SET status = 'cancelled', finished_at = now()
        FROM campaign_devices cd
        WHERE cd.campaign_id = $1 AND cd.task_id = t.id AND t.status = 'pending'
        """,
        campaign_id,
    )
    await conn.execute(
        """
        UPDATE campaign_devices cd SET state = 'skipped', reason = $2, code = $3,
            finished_at = now(), updated_at = now()
        WHERE cd.campaign_id = $1 AND (cd.state = 'pending' OR (cd.state = 'downloading'
              AND EXISTS (SELECT 1 FROM tasks t WHERE t.id = cd.task_id
                          AND t.status = 'cancelled')))
        """,
        campaign_id,
        reason,
        code,
    )


# --------------------------------------------------------------------------- the tick


Knock = Callable[[str], Awaitable[ConnectionRequestResult]]
KNOCKS_PER_TICK = 100
KNOCK_AGAIN_AFTER_S = 300  # a device that did not come is knocked again after this
KNOCK_GRACE_S = 30  # a knocked device opens its session within this, or is not coming


async def tick(pool: asyncpg.Pool, knock: Knock | None = None) -> None:
    """One round over the campaigns that can move: start times, newcomers,
    timeouts, thresholds and stages; then connection requests to pending devices
    of campaigns that ask for them."""
    async with pool.acquire() as conn:
        ids = await conn.fetch(
            """
            SELECT id FROM campaigns c WHERE status IN ('running', 'paused')
               OR EXISTS (SELECT 1 FROM campaign_devices cd WHERE cd.campaign_id = c.id
                          AND cd.state IN ('downloading', 'installing', 'verifying'))
            ORDER BY id
            """
        )
        for row in ids:
            await tick_campaign(conn, row["id"])
        if knock is not None:
            for row in ids:
                await knock_pending(conn, row["id"], knock)


async def tick_campaign(conn: asyncpg.Connection, campaign_id: int) -> None:
    campaign = await store.get(conn, campaign_id)
    if campaign is None:
        return
    now = utcnow()
    if (
        campaign.status == "running"
        and campaign.membership == "continuous"
        and (campaign.start_at is None or campaign.start_at <= now)
    ):
        await admit_newcomers(conn, campaign)
    # timeouts and jobs that ended without a session to notice. A timeout is counted
    # from when this host began ticking campaigns, if that is later than the start:
    # while no ACS was there (killed, restarting on a loaded machine), a CPE could
    # deliver no TransferComplete, and a transfer it kept going meanwhile is not lost
    watched_since = await lease_store.held_since(conn, leases.CAMPAIGNS)
    for member in await store.overdue(conn, campaign.id, campaign.verify_timeout_s, watched_since):
        async with conn.transaction():
            await rollout.time_out(conn, campaign, member)
    for member in await rollout.members_with_finished_jobs(conn, campaign.id):
        async with conn.transaction():
            await rollout.settle_member(conn, campaign, member)
    await soak.observe(conn, campaign)  # health soak: readings and verdicts
    if campaign.status != "running":
        return
    async with conn.transaction():
        locked = await store.get(conn, campaign.id, lock=True)
        if locked is None or locked.status != "running":
            return
        counts = await store.stage_counts(conn, campaign.id)
        baseline = {int(k): v for k, v in locked.failure_baseline.items()}
        decision = await soak.decide(conn, locked, counts, baseline)
        if decision.action == "complete" and locked.membership == "continuous":
            return  # devices that match later still join: it runs until cancelled
        await _apply(conn, locked, decision)


async def _apply(
    conn: asyncpg.Connection, campaign: store.Campaign, decision: rules.Decision
) -> None:
    if decision.action == "none":
        return
    after: store.Campaign | None = None
    if decision.action == "advance":
        after = await store.update(
            conn,
            campaign.id,
            current_stage=campaign.current_stage + 1,
            status_reason=decision.reason,
        )
    elif decision.action == "pause":
        after = await store.update(
            conn, campaign.id, status="paused", status_reason=decision.reason
        )
    elif decision.action == "abort":
        await _stop_pending(
            conn, campaign.id, f"campaign aborted: {decision.reason}", "campaign_aborted"
        )
        after = await store.update(
            conn,
            campaign.id,
            status="aborted",
            status_reason=decision.reason,
            finished_at=utcnow(),
        )
    elif decision.action == "complete":
        after = await store.update(
            conn,
            campaign.id,
            status="completed",
            status_reason=decision.reason,
            finished_at=utcnow(),
        )
    await _announce(conn, campaign, after)
    log(
        logger,
        logging.INFO,
        "campaign_" + decision.action,
        campaign=campaign.id,
        stage=campaign.current_stage + 1,
        reason=decision.reason,
    )
    if campaign.rollback and decision.failure:
        await start_rollback(conn, after or campaign)


async def knock_pending(conn: asyncpg.Connection, campaign_id: int, knock: Knock) -> int:
    """Pull pending devices in with a connection request, as many as the rate limits
    would let start now, and only while a window is open: a knocked device comes
    at once and its session takes the Download. Returns how many were knocked."""
    campaign = await store.get(conn, campaign_id)
    now = utcnow()
    if (
        campaign is None
        or not campaign.connection_request
        or campaign.status != "running"
        or (campaign.start_at is not None and campaign.start_at > now)
        or not is_open(windows_of(campaign), now)
    ):
        return 0
    room = KNOCKS_PER_TICK
    in_flight, starts = await store.load(conn, campaign.id)
    # knocked devices on their way hold their slot, or the next tick would
    # knock more than can start, and the extra ones would wait for a re-knock
    coming = await store.knocked_since(conn, campaign.id, KNOCK_GRACE_S)
    if campaign.max_in_flight is not None:
        room = min(room, campaign.max_in_flight - in_flight - coming)
    if campaign.starts_per_minute is not None:
        room = min(room, campaign.starts_per_minute - starts - coming)
    if room <= 0:
        return 0
    devices = await store.mark_knocked(conn, campaign, room, KNOCK_AGAIN_AFTER_S)
    results = await asyncio.gather(*(knock(d) for d in devices))
    # a device that answered "busy" is not on its way: knock it again soon,
    # not KNOCK_AGAIN_AFTER_S later (and it holds no slot meanwhile)
    busy = [
        d for d, r in zip(devices, results, strict=True) if knocks.again_after(r.status) is not None
    ]
    if busy:
        await store.knock_again_in(
            conn, campaign.id, busy, knocks.BUSY_AGAIN_AFTER_S, KNOCK_AGAIN_AFTER_S
        )
    return len(devices)


async def start_rollback(conn: asyncpg.Connection, campaign: store.Campaign) -> int:
    """Devices that took the image, or will, are sent back the version they had
    (acs.services.rollback); returns how many were sent back now."""
    started = await rollback.start(conn, campaign, campaign.status_reason or "failure threshold")
    return started.sent_back


# --------------------------------------------------------------------------- reading


@dataclass(slots=True)
class StageProgress:
    stage: int
    size: str
    devices: int
    by_state: dict[str, int]


async def progress(conn: asyncpg.Connection, campaign: store.Campaign) -> list[StageProgress]:
    counts = await store.stage_counts(conn, campaign.id)
    return [
        StageProgress(
            i,
            str(s["size"]),
            counts.get(i, rules.StageCounts()).total,
            dict(counts.get(i, rules.StageCounts()).by_state),
        )
        for i, s in enumerate(campaign.stages)
    ]


@dataclass(slots=True)
class Preview:
    stages: list[list[str]]
    beyond: list[str]
    skipped: Counter[str]
    skipped_samples: dict[str, list[str]]
    overlapping: dict[int, int]  # other active campaign -> devices in both


async def preview(conn: asyncpg.Connection, campaign: store.Campaign) -> Preview:
    """What start() would do, written nowhere: the dry run."""
    view = await CatalogView.load(conn)
    admission = await evaluate_audience(conn, campaign, view, new_only=False)
    per_stage = staged(campaign, admission)
    skipped: Counter[str] = Counter()
    samples: dict[str, list[str]] = {}
    for c in admission.refused:
        skipped[c.verdict.code] += 1
        samples.setdefault(c.verdict.code, [])
        if len(samples[c.verdict.code]) < 5:
            samples[c.verdict.code].append(f"{c.device_id}: {c.verdict.reason}")
    eligible = [c.device_id for c in admission.eligible]
    overlap_rows = await conn.fetch(
        """
        SELECT campaign_id, count(*)::int AS n FROM campaign_devices
        WHERE device_id = ANY($1::text[]) AND campaign_id <> $2
          AND state IN ('pending', 'downloading', 'installing', 'verifying')
        GROUP BY campaign_id
        """,
        eligible,
        campaign.id,
    )
    return Preview(
        stages=[[c.device_id for c in s] for s in per_stage[:-1]],
        beyond=[c.device_id for c in per_stage[-1]],
        skipped=skipped,
        skipped_samples=samples,
        overlapping={r["campaign_id"]: r["n"] for r in overlap_rows},
    )
