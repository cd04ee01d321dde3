"""Campaign rows and their per-device progress (campaign_devices).

Every state change is a conditional UPDATE (``WHERE state = <expected>``), so
two ACS processes, or a tick racing a session, never move one device twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import asyncpg

from acs.core.campaigns import IN_FLIGHT_STATES, StageCounts


@dataclass(slots=True)
class Campaign:
    id: int
    name: str
    status: str
    status_reason: str | None
    image_id: int | None
    channel: str | None
    filter: str
    membership: str
    stages: list[dict[str, Any]]
    current_stage: int
    failure_baseline: dict[str, int]
    start_at: datetime | None
    windows: list[dict[str, Any]]
    max_in_flight: int | None
    starts_per_minute: int | None
    max_attempts: int
    retry_backoff_s: float
    verify_timeout_s: float
    rollback: bool
    connection_request: bool
    priority: int
    audience: int
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    # 'download', 'scheduleDownload' or 'auto' (acs.services.campaign_transfer)
    transfer: str = "download"

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Campaign:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(slots=True)
class Member:
    campaign_id: int
    device_id: str
    stage: int | None
    state: str
    rollback: bool
    image_id: int | None
    from_version: str | None
    target_version: str | None
    task_id: int | None
    attempts: int
    next_attempt_at: datetime | None
    reason: str | None
    code: str | None
    fault_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Member:
        return cls(**{f.name: row[f.name] for f in fields(cls)})


_CAMPAIGN_COLUMNS = ", ".join(f.name for f in fields(Campaign))
_MEMBER_COLUMNS = ", ".join(f.name for f in fields(Member))
MEMBER_COLUMNS_CD = ", ".join(f"cd.{f.name}" for f in fields(Member))

_EDITABLE = (
    "name",
    "image_id",
    "channel",
    "filter",
    "membership",
    "stages",
    "start_at",
    "windows",
    "max_in_flight",
    "starts_per_minute",
    "max_attempts",
    "retry_backoff_s",
    "verify_timeout_s",
    "rollback",
    "connection_request",
    "priority",
    "created_by",
    "transfer",
)


def unsaved(spec: dict[str, Any]) -> Campaign:
    """A campaign as create() would store it, without storing it (dry runs)."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": 0,
        "status": "draft",
        "status_reason": None,
        "current_stage": 0,
        "failure_baseline": {},
        "audience": 0,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
        "updated_at": now,
        "image_id": None,
        "channel": None,
        "filter": "",
        "membership": "snapshot",
        "start_at": None,
        "windows": [],
        "max_in_flight": None,
        "starts_per_minute": None,
        "max_attempts": 3,
        "retry_backoff_s": 300.0,
        "verify_timeout_s": 3600.0,
        "rollback": False,
        "connection_request": True,
        "priority": 0,
        "created_by": None,
    }
    values.update({k: v for k, v in spec.items() if k in _EDITABLE})
    return Campaign(**values)


async def create(conn: asyncpg.Connection, spec: dict[str, Any]) -> Campaign:
    """Insert a draft; ``spec`` holds the columns of _EDITABLE."""
    columns = [c for c in _EDITABLE if c in spec]
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    row = await conn.fetchrow(
        f"INSERT INTO campaigns ({', '.join(columns)}) VALUES ({placeholders})"
        f" RETURNING {_CAMPAIGN_COLUMNS}",
        *(spec[c] for c in columns),
    )
    assert row is not None
    return Campaign.from_row(row)


async def get(conn: asyncpg.Connection, campaign_id: int, *, lock: bool = False) -> Campaign | None:
    row = await conn.fetchrow(
        f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"
        + (" FOR UPDATE" if lock else ""),
        campaign_id,
    )
    return None if row is None else Campaign.from_row(row)


async def list_all(
    conn: asyncpg.Connection, statuses: Sequence[str] | None = None
) -> list[Campaign]:
    rows = await conn.fetch(
        f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns"
        " WHERE $1::text[] IS NULL OR status = ANY($1) ORDER BY id",
        list(statuses) if statuses is not None else None,
    )
    return [Campaign.from_row(r) for r in rows]


async def update(
    conn: asyncpg.Connection,
    campaign_id: int,
    *,
    expect: Sequence[str] | None = None,
    **values: Any,
) -> Campaign | None:
    """Set columns; with ``expect``, only while the status is one of those (else None)."""
    names = list(values)
    sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
    where = "id = $1"
    args: list[Any] = [campaign_id, *values.values()]
    if expect is not None:
        args.append(list(expect))
        where += f" AND status = ANY(${len(args)})"
    row = await conn.fetchrow(
        f"UPDATE campaigns SET {sets}, updated_at = now() WHERE {where}"
        f" RETURNING {_CAMPAIGN_COLUMNS}",
        *args,
    )
    return None if row is None else Campaign.from_row(row)


async def delete(conn: asyncpg.Connection, campaign_id: int) -> bool:
    gone = await conn.fetchval(
        "DELETE FROM campaigns WHERE id = $1 AND status IN ('draft', 'completed', 'aborted',"
        " 'cancelled') RETURNING 1",
        campaign_id,
    )
    return gone is not None


# --------------------------------------------------------------------------- members

MemberRecord = tuple[
    int, str, int | None, str, int | None, str | None, str | None, str | None, str | None
]


async def add_members(conn: asyncpg.Connection, records: Sequence[MemberRecord]) -> None:
    """(campaign_id, device_id, stage, state, image_id, from_version, target_version,
    reason, code); a device already in the campaign is left as it is."""
    if not records:
        return
    await conn.executemany(
        """
        INSERT INTO campaign_devices (campaign_id, device_id, stage, state, image_id,
                                      from_version, target_version, reason, code)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (campaign_id, device_id) DO NOTHING
        """,
        records,
    )


async def member(conn: asyncpg.Connection, campaign_id: int, device_id: str) -> Member | None:
    row = await conn.fetchrow(
        f"SELECT {_MEMBER_COLUMNS} FROM campaign_devices WHERE campaign_id = $1 AND device_id = $2",
        campaign_id,
        device_id,
    )
    return None if row is None else Member.from_row(row)


async def members_of_device(conn: asyncpg.Connection, device_id: str) -> list[Member]:
    rows = await conn.fetch(
        f"SELECT {_MEMBER_COLUMNS} FROM campaign_devices WHERE device_id = $1 ORDER BY campaign_id",
        device_id,
    )
    return [Member.from_row(r) for r in rows]


# whether device $1 is in an unfinished campaign (campaign_devices_open_idx)
OPEN_WORK = """EXISTS (SELECT 1 FROM campaign_devices WHERE device_id = $1
    AND state IN ('pending', 'downloading', 'installing', 'verifying'))"""


async def has_open_work(conn: asyncpg.Connection, device_id: str) -> bool:
    """Whether the device is in an unfinished campaign; one probe of the open index."""
    found = await conn.fetchval(f"SELECT {OPEN_WORK}", device_id)
    return bool(found)


async def open_work_of_device(
    conn: asyncpg.Connection, device_id: str
) -> list[tuple[Member, Campaign]]:
    """The device's unfinished members with their campaigns, the one that wins first:
    higher priority, then the older campaign."""
    rows = await conn.fetch(
        f"""
        SELECT {MEMBER_COLUMNS_CD}, {
            ", ".join("c." + f.name + " AS c_" + f.name for f in fields(Campaign))
        }
        FROM campaign_devices cd JOIN campaigns c ON c.id = cd.campaign_id
        WHERE cd.device_id = $1
          AND cd.state IN ('pending', 'downloading', 'installing', 'verifying')
        ORDER BY c.priority DESC, c.created_at, c.id
        """,
        device_id,
    )
    result = []
    for r in rows:
        m = Member.from_row(r)
        c = Campaign(**{f.name: r["c_" + f.name] for f in fields(Campaign)})
        result.append((m, c))
    return result


async def list_members(
    conn: asyncpg.Connection,
    campaign_id: int,
    *,
    state: str | None = None,
    stage: int | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[Member]:
    rows = await conn.fetch(
        f"""
        SELECT {_MEMBER_COLUMNS} FROM campaign_devices
        WHERE campaign_id = $1 AND ($2::text IS NULL OR state = $2)
          AND ($3::int IS NULL OR stage = $3) AND ($4::text IS NULL OR device_id > $4)
        ORDER BY device_id LIMIT $5
        """,
        campaign_id,
        state,
        stage,
        after,
        limit,
    )
    return [Member.from_row(r) for r in rows]


async def transition(
    conn: asyncpg.Connection,
    campaign_id: int,
    device_id: str,
    expect: Sequence[str],
    state: str,
    **values: Any,
) -> bool:
    """Move one member from one of ``expect`` to ``state``; False if it was elsewhere."""
    names = list(values)
    sets = "".join(f", {n} = ${i}" for i, n in enumerate(names, start=5))
    done = await conn.fetchval(
        f"UPDATE campaign_devices SET state = $3, updated_at = now(){sets}"
        " WHERE campaign_id = $1 AND device_id = $2 AND state = ANY($4) RETURNING 1",
        campaign_id,
        device_id,
        state,
        list(expect),
        *values.values(),
    )
    return done is not None


async def stage_counts(conn: asyncpg.Connection, campaign_id: int) -> dict[int, StageCounts]:
    """Members per stage and state; rollbacks are counted apart (they are not the
    image's verdict)."""
    rows = await conn.fetch(
        """
        SELECT stage, state, count(*)::int AS n FROM campaign_devices
        WHERE campaign_id = $1 AND stage IS NOT NULL AND NOT rollback
        GROUP BY stage, state
        """,
        campaign_id,
    )
    counts: dict[int, StageCounts] = {}
    for r in rows:
        c = counts.setdefault(r["stage"], StageCounts())
        c.total += r["n"]
        c.by_state[r["state"]] = r["n"]
    return counts


async def state_totals(conn: asyncpg.Connection, campaign_id: int) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT CASE WHEN rollback AND state = 'succeeded' THEN 'rolled_back' ELSE state END"
        " AS state, count(*)::int AS n FROM campaign_devices WHERE campaign_id = $1 GROUP BY 1",
        campaign_id,
    )
    return {r["state"]: r["n"] for r in rows}


async def skipped_reasons(conn: asyncpg.Connection, campaign_id: int) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT reason, count(*)::int AS n FROM campaign_devices"
        " WHERE campaign_id = $1 AND state = 'skipped' GROUP BY reason ORDER BY n DESC LIMIT 50",
        campaign_id,
    )
    return {r["reason"] or "": r["n"] for r in rows}


async def load(conn: asyncpg.Connection, campaign_id: int) -> tuple[int, int]:
    """(downloads in flight, downloads started in the last minute): the rate limits."""
    row = await conn.fetchrow(
        """
        SELECT (SELECT count(*) FROM campaign_devices
                WHERE campaign_id = $1 AND state = ANY($2))::int AS in_flight,
               (SELECT count(*) FROM campaign_devices
                WHERE campaign_id = $1 AND started_at > now() - interval '1 minute')::int AS starts
        """,
        campaign_id,
        list(IN_FLIGHT_STATES),
    )
    assert row is not None
    return row["in_flight"], row["starts"]


async def overdue(
    conn: asyncpg.Connection,
    campaign_id: int,
    timeout_s: float,
    watched_since: datetime | None = None,
) -> list[Member]:
    """Downloads in flight for longer than ``timeout_s``, counted from their start or,
    if later, from ``watched_since`` (when the judging host began to listen)."""
    rows = await conn.fetch(
        f"""
        SELECT {_MEMBER_COLUMNS} FROM campaign_devices
        WHERE campaign_id = $1 AND state = ANY($2)
          AND greatest(started_at, $4::timestamptz) < now() - make_interval(secs => $3)
        """,
        campaign_id,
        list(IN_FLIGHT_STATES),
        timeout_s,
        watched_since,
    )
    return [Member.from_row(r) for r in rows]


async def mark_knocked(
    conn: asyncpg.Connection, campaign: Campaign, limit: int, again_after_s: float
) -> list[str]:
    """Pick up to ``limit`` pending devices due for a connection request (their
    stage reached, no back-off running, not knocked lately) and stamp them."""
    # MATERIALIZED: as a plain IN (subquery) the planner may run the LIMIT ...
    # SKIP LOCKED subquery more than once and stamp more rows than the limit
    rows = await conn.fetch(
        """
        WITH picked AS MATERIALIZED (
            SELECT device_id FROM campaign_devices
            WHERE campaign_id = $1 AND state = 'pending'
              AND (stage <= $2 OR rollback)
              AND (next_attempt_at IS NULL OR next_attempt_at <= now())
              AND (knocked_at IS NULL OR knocked_at < now() - make_interval(secs => $4))
            ORDER BY knocked_at NULLS FIRST, device_id
            LIMIT $3
            FOR UPDATE SKIP LOCKED)
        UPDATE campaign_devices cd SET knocked_at = now()
        FROM picked WHERE cd.campaign_id = $1 AND cd.device_id = picked.device_id
        RETURNING cd.device_id
        """,
        campaign.id,
        campaign.current_stage,
        limit,
        again_after_s,
    )
    return [r["device_id"] for r in rows]


async def claim_waiting(
    conn: asyncpg.Connection, campaign: Campaign, limit: int
) -> tuple[list[str], int]:
    """The devices whose Download is still owed (pending, their stage started, or
    owed a rollback), up to ``limit`` of them stamped as knocked now (so the tick
    does not knock them again at once), and how many wait in all."""
    total: int = await conn.fetchval(
        "SELECT count(*) FROM campaign_devices"
        " WHERE campaign_id = $1 AND state = 'pending' AND (stage <= $2 OR rollback)",
        campaign.id,
        campaign.current_stage,
    )
    rows = await conn.fetch(
        """
        WITH picked AS MATERIALIZED (
            SELECT device_id FROM campaign_devices
            WHERE campaign_id = $1 AND state = 'pending' AND (stage <= $2 OR rollback)
            ORDER BY knocked_at NULLS FIRST, device_id
            LIMIT $3
            FOR UPDATE SKIP LOCKED)
        UPDATE campaign_devices cd SET knocked_at = now()
        FROM picked WHERE cd.campaign_id = $1 AND cd.device_id = picked.device_id
        RETURNING cd.device_id
        """,
        campaign.id,
        campaign.current_stage,
        limit,
    )
    return sorted(r["device_id"] for r in rows), total


async def knock_again_in(
    conn: asyncpg.Connection,
    campaign_id: int,
    device_ids: Sequence[str],
    again_in_s: float,
    again_after_s: float,
) -> None:
    """Make pending devices due for a knock ``again_in_s`` from now (mark_knocked
    waits ``again_after_s`` after a knock): their knock did not bring them."""
    await conn.execute(
        "UPDATE campaign_devices"
        " SET knocked_at = now() - make_interval(secs => $3::float8 - $4::float8)"
        " WHERE campaign_id = $1 AND device_id = ANY($2::text[]) AND state = 'pending'",
        campaign_id,
        list(device_ids),
        again_after_s,
        again_in_s,
    )


async def knocked_since(conn: asyncpg.Connection, campaign_id: int, within_s: float) -> int:
    """Pending devices knocked within the last ``within_s`` seconds: on their way."""
    n: int = await conn.fetchval(
        "SELECT count(*)::int FROM campaign_devices WHERE campaign_id = $1 AND state = 'pending'"
        " AND knocked_at > now() - make_interval(secs => $2)",
        campaign_id,
        within_s,
    )
    return n


async def member_holding_task(
    conn: asyncpg.Connection, device_id: str, task_id: int
) -> Member | None:
    """The member whose latest Download is this job, in whatever state."""
    row = await conn.fetchrow(
        f"SELECT {_MEMBER_COLUMNS} FROM campaign_devices WHERE device_id = $1 AND task_id = $2"
        " ORDER BY campaign_id DESC LIMIT 1",
        device_id,
        task_id,
    )
    return None if row is None else Member.from_row(row)


async def member_of_task(conn: asyncpg.Connection, device_id: str, task_id: int) -> Member | None:
    row = await conn.fetchrow(
        f"SELECT {_MEMBER_COLUMNS} FROM campaign_devices WHERE device_id = $1 AND task_id = $2"
        " AND state IN ('pending', 'downloading', 'installing', 'verifying')",
        device_id,
        task_id,
    )
    return None if row is None else Member.from_row(row)
