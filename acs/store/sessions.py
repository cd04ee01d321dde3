"""The device session lock: at most one CWMP session per device, across processes.

The lock is two columns of the device's narrow device_sessions row, next to
last_inform (migration 0024): a session writes that row twice, and only the
first write touches an index. Expiry is judged by the database clock so
workers with skewed clocks agree; clock_timestamp() rather than now() because
a caller's transaction may have started a while ago.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from acs.store import campaigns, devices, tasks

# The lock rule: free, expired, or already held by this session ({session})
_LOCK_FREE = (
    "(s.session_id IS NULL OR s.session_id = {session} OR s.session_expires_at < clock_timestamp())"
)

# The Inform digest (migration 0028): device_sessions.inform_seen holds the
# md5 of an Inform's values and the version (xmin, ctid) of the tree row they
# were found in, discovered, with nothing to write. While both are the same,
# the tree still holds every one of those values: an Inform that matches reads
# neither the tree nor its ~24 KB of TOAST and takes no lock on it. No writer
# has to clear the digest: any write of the tree row (SetParameterValues
# results, GPV answers, policies, imports, migrations, even a writer that does
# not know of it) makes a new row version, so the digest names a version that
# is no longer the row's and the next Inform takes the long way. A concurrent
# tree write the snapshot does not see orders after this Inform, as if it had
# come a moment later, and the next Inform finds its new version.
_SEEN = """
seen AS (
    SELECT s.inform_seen = t.tag AS same, t.tag
    FROM device_sessions s
    JOIN device_parameters dp ON dp.device_id = s.device_id
    CROSS JOIN LATERAL (
        SELECT md5($2::jsonb::text) || ' ' || dp.xmin::text || ' ' || dp.ctid::text AS tag
    ) t
    WHERE s.device_id = $1
),
"""
_SKIP = "COALESCE((SELECT same FROM seen), false)"
# what inform_seen becomes: kept when it matched; else the version just read,
# when it held every value (nothing merged) and is discovered; else nothing
# (the tree is written in this statement: its new version is not known here)
_SEEN_NEXT = f"""CASE
        WHEN {_SKIP} THEN (SELECT tag FROM seen)
        WHEN NOT EXISTS (SELECT 1 FROM merged)
             AND COALESCE((SELECT {devices.DISCOVERED} FROM cur), false)
        THEN md5($2::jsonb::text) || ' ' || (SELECT xmin::text || ' ' || ctid::text FROM cur)
    END"""

# A periodic Inform of a known device, in one statement: take the lock and say
# when the device was heard (the narrow row), record the rest of the Inform
# (device columns when one differs, tree values that changed), put back jobs
# a dead session left running, and read what the session will need to know.
# Every part but the reads is guarded by the lock, so a refused Inform writes
# nothing. CTEs share one snapshot: the requeued jobs still read as running
# below, hence "pending OR requeued". $18 session id, $19 lease seconds.
_OPEN_SESSION = f"""
WITH {_SEEN}{devices.INFORM_TREE_READ_CTES.replace("{skip}", _SKIP)}
opened AS (
    UPDATE device_sessions s
    SET last_inform = $4,
        session_id = $18,
        session_expires_at = clock_timestamp() + make_interval(secs => $19),
        inform_seen = {_SEEN_NEXT},
        bootstrap_owed = s.bootstrap_owed OR $10::timestamptz IS NOT NULL
    WHERE s.device_id = $1
      AND {_LOCK_FREE.format(session="$18")}
    RETURNING s.bootstrap_owed
),
described AS (
    UPDATE devices d
    SET {devices.INFORM_SET.format(src="v")}
    FROM {devices.INFORM_ROW} AS v
    WHERE d.id = $1 AND EXISTS (SELECT 1 FROM opened)
      AND {devices.INFORM_CHANGED.format(src="v")}
    RETURNING 1
),
{devices.TREE_WRITE_CTE.replace("{guard}", "EXISTS (SELECT 1 FROM opened)")},
requeued AS ({tasks.REQUEUE_RUNNING.format(guard="EXISTS (SELECT 1 FROM opened)")})
SELECT EXISTS (SELECT 1 FROM opened) AS locked,
       (SELECT count(*) FROM requeued WHERE status = 'pending')::int AS requeued,
       {tasks.PENDING_DUE} AS pending,
       {campaigns.OPEN_WORK} AS in_campaign,
       {_SKIP} OR COALESCE((SELECT {devices.DISCOVERED} FROM cur), false) AS discovered,
       COALESCE((SELECT bootstrap_owed FROM opened), false) AS bootstrap_owed
"""


async def acquire_session(
    conn: asyncpg.Connection, device_id: str, session_id: str, ttl_s: float
) -> bool:
    """Take the lock for ``ttl_s`` seconds: True if free, expired, or already ours.

    Raises LookupError when the device does not exist (call after
    upsert_from_inform), so that False always means "another session holds it".
    """
    got = await conn.fetchval(
        f"""
        UPDATE device_sessions s
        SET session_id = $2, session_expires_at = clock_timestamp() + make_interval(secs => $3)
        WHERE device_id = $1 AND {_LOCK_FREE.format(session="$2")}
        RETURNING 1
        """,
        device_id,
        session_id,
        ttl_s,
    )
    if got is not None:
        return True
    if await conn.fetchval("SELECT 1 FROM devices WHERE id = $1", device_id) is None:
        raise LookupError(f"no device {device_id!r}")
    return False


async def renew_session(
    conn: asyncpg.Connection, device_id: str, session_id: str, ttl_s: float
) -> bool:
    """Extend our lock; False if we no longer hold it (it expired and someone took it)."""
    got = await conn.fetchval(
        """
        UPDATE device_sessions
        SET session_expires_at = clock_timestamp() + make_interval(secs => $3)
        WHERE device_id = $1 AND session_id = $2
        RETURNING 1
        """,
        device_id,
        session_id,
        ttl_s,
    )
    return got is not None


async def release_session(conn: asyncpg.Connection, device_id: str, session_id: str) -> None:
    """Give the lock back; a no-op when another session holds it by now."""
    await conn.execute(
        "UPDATE device_sessions SET session_id = NULL, session_expires_at = NULL"
        " WHERE device_id = $1 AND session_id = $2",
        device_id,
        session_id,
    )


@dataclass(slots=True, frozen=True)
class Opened:
    """What the session needs to know, read when its lock was taken."""

    may_have_tasks: bool
    in_campaign: bool
    tree_unknown: bool
    # its bootstrap's policies have not run to their end yet (migration 0029)
    bootstrap_owed: bool = False


async def open_session(
    conn: asyncpg.Connection, rec: devices.InformRecord, session_id: str, ttl_s: float
) -> Opened | None:
    """The Inform of a known device whose lock is free, in one round trip.

    None when the device is unknown or its lock is held: nothing was written,
    and the caller takes the long way (create it, or refuse the session).
    """
    row = await conn.fetchrow(_OPEN_SESSION, *devices.inform_args(rec), session_id, ttl_s)
    if row is None or not row["locked"]:
        return None
    return Opened(
        may_have_tasks=row["pending"] or row["requeued"] > 0,
        in_campaign=row["in_campaign"],
        tree_unknown=not row["discovered"],
        bootstrap_owed=row["bootstrap_owed"],
    )


# Periodic Informs of many devices in one statement, for those the single
# statement above would only lock and read: the Inform digest matches (the tree
# holds every value) and no device column differs. For each of them it does
# what _OPEN_SESSION does then: the lock and last_inform, jobs a dead session
# left running put back, the same reads. The rest are left alone, for
# _OPEN_SESSION one by one. Keyed by session: of two Informs of one device in
# a batch only one can take the lock. $1 the Informs (inform_fields and
# session_id), $2 lease seconds.
_GIVEN_INFORMS = """jsonb_to_recordset($1::jsonb) AS g(
        device_id text, session_id text, patch jsonb, at timestamptz,
        oui text, product_class text, serial_number text, manufacturer text,
        last_boot timestamptz, last_bootstrap timestamptz, last_events text[],
        remote_address text, connection_request_url text, software_version text,
        hardware_version text, provisioning_code text, cwmp_version text)"""
_REQUEUE_OPENED = tasks.REQUEUE_RUNNING.replace(
    "t.device_id = $1", "t.device_id IN (SELECT device_id FROM opened)"
).format(guard="true")
_OPEN_REPEATED = f"""
WITH given AS MATERIALIZED (SELECT * FROM {_GIVEN_INFORMS}),
opened AS (
    UPDATE device_sessions s
    SET last_inform = g.at,
        session_id = g.session_id,
        session_expires_at = clock_timestamp() + make_interval(secs => $2)
    FROM given g, devices d, device_parameters dp
    -- probed by key: a join on the set's estimated size may read the whole table
    WHERE s.device_id = ANY (ARRAY(SELECT device_id FROM given))
      AND g.device_id = s.device_id AND d.id = s.device_id AND dp.device_id = s.device_id
      AND {_LOCK_FREE.format(session="g.session_id")}
      AND g.last_bootstrap IS NULL
      AND s.inform_seen = md5(g.patch::text) || ' ' || dp.xmin::text || ' ' || dp.ctid::text
      AND NOT {devices.INFORM_CHANGED.format(src="g").replace("(SELECT n FROM cnt)", "NULL::int")}
    RETURNING s.device_id, s.session_id, s.bootstrap_owed
),
requeued AS ({_REQUEUE_OPENED})
SELECT o.session_id, o.bootstrap_owed,
       EXISTS (SELECT 1 FROM requeued r WHERE r.device_id = o.device_id AND r.status = 'pending')
           OR {tasks.PENDING_DUE.replace("$1", "o.device_id")} AS may_have_tasks,
       {campaigns.OPEN_WORK.replace("$1", "o.device_id")} AS in_campaign
FROM opened o
"""


async def open_repeated(
    conn: asyncpg.Connection, informs: list[tuple[devices.InformRecord, str]], ttl_s: float
) -> dict[str, Opened]:
    """Periodic Informs of known devices, in one round trip: the sessions (by id)
    that _OPEN_SESSION would only have locked and read, now opened. The others
    were not touched: open each with open_session."""
    given = [devices.inform_fields(rec) | {"session_id": sid} for rec, sid in informs]
    rows = await conn.fetch(_OPEN_REPEATED, given, ttl_s)
    return {
        row["session_id"]: Opened(
            may_have_tasks=row["may_have_tasks"],
            in_campaign=row["in_campaign"],
            tree_unknown=False,  # the digest matched: it is discovered
            bootstrap_owed=row["bootstrap_owed"],
        )
        for row in rows
    }


async def owe_bootstrap(conn: asyncpg.Connection, device_id: str) -> bool:
    """Mark the device's bootstrap owed (a 0 BOOTSTRAP taken the long way); True if it is."""
    owed = await conn.fetchval(
        "UPDATE device_sessions SET bootstrap_owed = true WHERE device_id = $1"
        " RETURNING bootstrap_owed",
        device_id,
    )
    return bool(owed)


async def bootstrap_owed(conn: asyncpg.Connection, device_id: str) -> bool:
    """Whether the device's bootstrap policies have yet to run to their end."""
    owed = await conn.fetchval(
        "SELECT bootstrap_owed FROM device_sessions WHERE device_id = $1", device_id
    )
    return bool(owed)


async def bootstrap_settled(conn: asyncpg.Connection, device_id: str) -> None:
    """The bootstrap's policies ran to their end: later sessions are not bootstraps."""
    await conn.execute(
        "UPDATE device_sessions SET bootstrap_owed = false"
        " WHERE device_id = $1 AND bootstrap_owed",
        device_id,
    )


async def live_sessions_at(conn: asyncpg.Connection, remote_address: str) -> list[str]:
    """Ids of live sessions of devices at this address, at most two (one is an answer,
    two say the address is shared). For workers finding the owner of a request that
    neither a cookie nor a connection identifies; a partial index keeps it small."""
    rows = await conn.fetch(
        """
        SELECT s.session_id FROM devices d JOIN device_sessions s ON s.device_id = d.id
        WHERE d.remote_address = $1 AND s.session_id IS NOT NULL
          AND s.session_expires_at > clock_timestamp()
        LIMIT 2
        """,
        remote_address,
    )
    return [r["session_id"] for r in rows]


async def live_session_of(
    conn: asyncpg.Connection, device_id: str, remote_address: str
) -> str | None:
    """The live session id of this device when its last Inform came from this address."""
    return await conn.fetchval(
        """
        SELECT s.session_id FROM devices d JOIN device_sessions s ON s.device_id = d.id
        WHERE d.id = $1 AND d.remote_address = $2 AND s.session_id IS NOT NULL
          AND s.session_expires_at > clock_timestamp()
        """,
        device_id,
        remote_address,
    )


async def lease_holder(conn: asyncpg.Connection, device_id: str) -> str | None:
    """The session id holding this device's unexpired lease; None when it is free.
    Its prefix names the worker that owns it (acs/web/relay.py)."""
    return await conn.fetchval(
        """
        SELECT session_id FROM device_sessions
        WHERE device_id = $1 AND session_id IS NOT NULL
          AND session_expires_at >= clock_timestamp()
        """,
        device_id,
    )
