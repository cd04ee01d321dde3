"""Knock the devices that are waiting: an operator's "bring them in now".

A campaign with ``connectionRequest: false`` (or one whose devices did not come
when the tick knocked), a bulk job whose tasks wait for the devices' periodic
Inform: the operator asks for a connection request to each device still owed
something, now. The knocks are started at most ``ACS_KNOCK_WAITING_RATE_PER_S``
a second, at most ``ACS_KNOCK_WAITING_MAX`` per action; each one goes through
:func:`acs.services.knock.knock` (every channel, the process-wide limits of
acs.connreq.http). What a knocked device then gets in its session is decided
there as always (a campaign's windows and rate limits still hold).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from acs.config import Settings
from acs.connreq.http import ConnectionRequestResult
from acs.core import knocks
from acs.services.bulk_jobs import ControlError as BulkControlError
from acs.services.campaigns import KNOCK_AGAIN_AFTER_S
from acs.services.campaigns import ControlError as CampaignControlError
from acs.store import bulk_jobs as bulk_store
from acs.store import campaigns as campaign_store

Knock = Callable[[str], Awaitable[ConnectionRequestResult]]


@dataclass(slots=True)
class KnockReport:
    waiting: int  # devices waiting when the action began
    knocked: int  # of them, knocked by this action
    reached: int  # knocks that worked (the device is opening its session)
    remaining: int  # waiting devices this action left for another (ACS_KNOCK_WAITING_MAX)
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)
    unreachable: list[dict[str, Any]] = field(default_factory=list)


async def paced(
    device_ids: Sequence[str], knock: Knock, rate_per_s: float
) -> list[ConnectionRequestResult]:
    """Knock every device, the i-th started no sooner than i / rate seconds in."""

    async def one(i: int, device_id: str) -> ConnectionRequestResult:
        if i:
            await asyncio.sleep(i / rate_per_s)
        return await knock(device_id)

    return list(await asyncio.gather(*(one(i, d) for i, d in enumerate(device_ids))))


def report(
    device_ids: Sequence[str], results: Sequence[ConnectionRequestResult], waiting: int
) -> KnockReport:
    by_channel: dict[str, dict[str, int]] = {}
    unreachable = []
    for device_id, r in zip(device_ids, results, strict=True):
        per = by_channel.setdefault(r.channel or "none", {})
        per[r.outcome] = per.get(r.outcome, 0) + 1
        if not r.ok:
            unreachable.append(
                {
                    "device": device_id,
                    "channel": r.channel,
                    "outcome": r.outcome,
                    "status": r.status,
                    "reason": r.reason,
                }
            )
    return KnockReport(
        waiting=waiting,
        knocked=len(device_ids),
        reached=sum(1 for r in results if r.ok),
        remaining=max(0, waiting - len(device_ids)),
        by_channel=by_channel,
        unreachable=unreachable,
    )


async def campaign(
    pool: asyncpg.Pool, settings: Settings, campaign_id: int, knock: Knock
) -> KnockReport:
    """Knock the devices of a running campaign whose Download is still owed.
    LookupError: no such campaign; ControlError: it is not running."""
    async with pool.acquire() as conn:
        c = await campaign_store.get(conn, campaign_id)
        if c is None:
            raise LookupError(campaign_id)
        if c.status != "running":
            raise CampaignControlError(
                f"campaign {campaign_id} is {c.status}: only a running campaign's devices wait"
            )
        if c.start_at is not None and c.start_at > datetime.now(UTC):
            raise CampaignControlError(
                f"campaign {campaign_id} starts at {c.start_at.isoformat()}: no stage started yet"
            )
        devices, waiting = await campaign_store.claim_waiting(conn, c, settings.knock_waiting_max)
    results = await paced(devices, knock, settings.knock_waiting_rate_per_s)
    busy = [
        d for d, r in zip(devices, results, strict=True) if knocks.again_after(r.status) is not None
    ]
    if busy:
        async with pool.acquire() as conn:
            await campaign_store.knock_again_in(
                conn, campaign_id, busy, knocks.BUSY_AGAIN_AFTER_S, KNOCK_AGAIN_AFTER_S
            )
    return report(devices, results, waiting)


async def bulk_job(
    pool: asyncpg.Pool, settings: Settings, bulk_id: int, knock: Knock
) -> KnockReport:
    """Knock the devices whose task of the bulk job is still pending; the outcome
    is kept on each device's row as the job's own knocks are. LookupError: no
    such job; ControlError: the job is finished (completed or cancelled)."""
    async with pool.acquire() as conn:
        job = await bulk_store.get(conn, bulk_id)
        if job is None:
            raise LookupError(bulk_id)
        if job.status not in ("running", "paused"):
            raise BulkControlError(f"bulk job {bulk_id} is {job.status}: no task of it waits")
        devices, waiting = await bulk_store.waiting(conn, bulk_id, settings.knock_waiting_max)
    results = await paced(devices, knock, settings.knock_waiting_rate_per_s)
    async with pool.acquire() as conn:
        await bulk_store.record_knocks(
            conn,
            bulk_id,
            [
                (d, None, None) if r.ok else (d, r.reason, knocks.again_after(r.status))
                for d, r in zip(devices, results, strict=True)
            ],
        )
    return report(devices, results, waiting)
