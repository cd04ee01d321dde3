"""A rollback that misses no one (issue 18 item 4).

Once a campaign starts rolling back, every device that has or will have its
image ends on the version it had before, or is listed as a failed rollback
with the reason:

- verified on the image: owed its earlier version at once;
- a Download of the image already sent (downloading, installing,
  verifying): left to finish, because a CPE cannot be stopped mid-flash, and
  caught when it does (``catch``, called where a success is verified): owed
  its earlier version instead of counting as a success;
- a Download queued but not yet sent, or not started at all: withdrawn and
  skipped, so nothing newly starts the image;
- a device whose earlier version is unknown: a failed rollback, said so.

The moment the rollback started is kept (campaign_rollbacks), so the catch
works however late the device finishes, across restarts and workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from acs.logs import log
from acs.store import campaigns as store
from acs.store import rollbacks

logger = logging.getLogger("acs.campaigns")

SENT_BACK = "rollback: the campaign crossed a failure threshold"
CAUGHT = "rollback: installed {version} after the campaign started rolling back"
WITHDRAWN = "the campaign is rolling back: its image is no longer installed anywhere"


def rollout_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Started:
    sent_back: int  # verified on the image, now owed their earlier version
    impossible: int  # on the image, earlier version unknown: failed rollbacks
    withdrawn: int  # pending, or a Download not yet sent: skipped
    in_flight: int  # a Download already sent: caught when it finishes


async def start(conn: asyncpg.Connection, campaign: store.Campaign, reason: str) -> Started:
    """Start rolling back (idempotent: a second start moves whoever is left)."""
    await rollbacks.begin(conn, campaign.id, reason)
    result = Started(
        sent_back=await rollbacks.send_back_succeeded(conn, campaign.id, SENT_BACK),
        impossible=await rollbacks.unknown_before(conn, campaign.id),
        withdrawn=await rollbacks.withdraw_unsent(conn, campaign.id, WITHDRAWN),
        in_flight=await rollbacks.in_flight(conn, campaign.id),
    )
    log(
        logger,
        logging.WARNING,
        "campaign_rollback",
        campaign=campaign.id,
        devices=result.sent_back,
        impossible=result.impossible,
        withdrawn=result.withdrawn,
        in_flight=result.in_flight,
    )
    return result


async def rolling_back(conn: asyncpg.Connection, campaign_id: int) -> rollbacks.Rollback | None:
    return await rollbacks.get(conn, campaign_id)


async def catch(
    conn: asyncpg.Connection, campaign: store.Campaign, member: store.Member, version: str
) -> bool:
    """Called when an upgrade is verified: True when the campaign is rolling back
    and the device was sent back instead (or, its earlier version unknown,
    listed as a failed rollback). Rollbacks themselves are never caught."""
    if member.rollback or await rollbacks.get(conn, campaign.id) is None:
        return False
    if member.from_version is None:
        await store.transition(
            conn,
            campaign.id,
            member.device_id,
            ["downloading", "installing", "verifying"],
            "failed",
            rollback=True,
            from_version=version,
            target_version=None,
            code="rollback_impossible",
            finished_at=rollout_now(),
            reason=f"rollback impossible: installed {version} after the campaign started "
            "rolling back, and the version it ran before is unknown",
        )
        return True
    caught = await rollbacks.catch(
        conn, campaign.id, member.device_id, version, CAUGHT.format(version=version)
    )
    if caught:
        log(
            logger,
            logging.WARNING,
            "campaign_rollback_caught",
            campaign=campaign.id,
            device=member.device_id,
            version=version,
        )
    return caught


async def no_retry(
    conn: asyncpg.Connection, campaign: store.Campaign, member: store.Member
) -> bool:
    """A failed upgrade of a rolling-back campaign is not retried: another
    attempt would start the image being rolled back."""
    return not member.rollback and await rollbacks.get(conn, campaign.id) is not None


def refuse_upgrade(rollback: rollbacks.Rollback | None, action: str) -> str | None:
    """Why ``action`` (resume, approve) is refused for a rolling-back campaign."""
    if rollback is None:
        return None
    return (
        f"cannot {action} a campaign that is rolling back (since "
        f"{rollback.started_at.isoformat(timespec='seconds')}: {rollback.reason}): it "
        "would install the image being rolled back; the rollback itself goes on, and "
        "retry-failed retries the failed rollbacks"
    )


async def retry_failed(conn: asyncpg.Connection, campaign: store.Campaign) -> int:
    """retry-failed in a rolling-back campaign: failed rollbacks go again;
    failed upgrades stay failed (another attempt would install the image
    being rolled back)."""
    return await rollbacks.retry_failed(conn, campaign.id)
