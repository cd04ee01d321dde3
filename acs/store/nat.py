"""STUN credentials, UDP bindings and connection-request channel outcomes (TR-111 Part 2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from acs.core.reach import Binding, Reach, StunPeer
from acs.core.sealing import Sealer
from acs.core.secrets import MASK, is_sealed

_ROOTS = ("Device.", "InternetGatewayDevice.")
STUN_CREDENTIAL_PARAMETERS = ("ManagementServer.STUNUsername", "ManagementServer.STUNPassword")


async def remember_stun_credentials(conn: asyncpg.Connection, device_id: str, root: str) -> None:
    """Keep the STUN credential the ACS just set on a device (after the values set
    have been merged into the stored tree): the CPE will not read the password back.
    The password is kept as the tree keeps it, sealed ("x")."""
    await conn.execute(
        """
        INSERT INTO stun_credentials (device_id, username, password)
        SELECT $1, dp.tree -> $2 ->> 'v', coalesce(dp.tree -> $3 ->> 'x', dp.tree -> $3 ->> 'v')
        FROM device_parameters dp
        WHERE dp.device_id = $1 AND coalesce(dp.tree -> $2 ->> 'v', '') <> ''
          AND coalesce(dp.tree -> $3 ->> 'x', dp.tree -> $3 ->> 'v', '') NOT IN ('', $4)
        ON CONFLICT (device_id) DO UPDATE SET
            username = EXCLUDED.username, password = EXCLUDED.password, updated_at = now()
        """,
        device_id,
        root + STUN_CREDENTIAL_PARAMETERS[0],
        root + STUN_CREDENTIAL_PARAMETERS[1],
        MASK,
    )


async def stun_peer(conn: asyncpg.Connection, username: str, sealer: Sealer) -> StunPeer | None:
    """The device whose STUN credential has this username: the one the ACS set, else
    the STUNUsername/STUNPassword the device reported (when it reports the password)."""
    row = await conn.fetchrow(
        """
        SELECT s.device_id, s.password, d.connection_request_url
        FROM stun_credentials s JOIN devices d ON d.id = s.device_id
        WHERE s.username = $1
        """,
        username,
    )
    if row is None:
        # containment queries use the tree's GIN index (jsonb_path_ops)
        rows = await conn.fetch(
            """
            SELECT dp.device_id, d.connection_request_url,
                   coalesce(dp.tree -> ($2 || 'ManagementServer.STUNPassword') ->> 'x',
                            dp.tree -> ($3 || 'ManagementServer.STUNPassword') ->> 'x',
                            dp.tree -> ($2 || 'ManagementServer.STUNPassword') ->> 'v',
                            dp.tree -> ($3 || 'ManagementServer.STUNPassword') ->> 'v')
                       AS password
            FROM device_parameters dp JOIN devices d ON d.id = dp.device_id
            WHERE dp.tree @> jsonb_build_object($2 || 'ManagementServer.STUNUsername',
                                                jsonb_build_object('v', $1::text))
               OR dp.tree @> jsonb_build_object($3 || 'ManagementServer.STUNUsername',
                                                jsonb_build_object('v', $1::text))
            LIMIT 2
            """,
            username,
            *_ROOTS,
        )
        # two devices reporting one username: neither is trusted with the binding
        row = rows[0] if len(rows) == 1 else None
    if row is None:
        return None
    password = _opened(sealer, row["device_id"], row["password"])
    if not password:
        return None
    return StunPeer(row["device_id"], password, row["connection_request_url"])


def _opened(sealer: Sealer, device_id: str, stored: str | None) -> str | None:
    """A STUN password as kept: sealed for its path under either root, or (reported
    by the device before passwords were sealed) in clear; never the mask."""
    if not stored or stored == MASK:
        return None
    if not is_sealed(stored):
        return stored
    for root in _ROOTS:
        clear = sealer.open_value(device_id, root + STUN_CREDENTIAL_PARAMETERS[1], stored)
        if clear is not None:
            return clear
    return None


async def record_binding(
    conn: asyncpg.Connection,
    device_id: str,
    address: str,
    port: int,
    nat_detected: bool,
    at: datetime,
) -> bool:
    """Store the device's binding as seen now; True when address:port changed."""
    changed = await conn.fetchval(
        """
        WITH old AS (SELECT address, port FROM udp_bindings WHERE device_id = $1)
        INSERT INTO udp_bindings AS b (device_id, address, port, nat_detected, seen_at, since)
        VALUES ($1, $2, $3, $4, $5, $5)
        ON CONFLICT (device_id) DO UPDATE SET
            address = EXCLUDED.address, port = EXCLUDED.port,
            nat_detected = EXCLUDED.nat_detected, seen_at = EXCLUDED.seen_at,
            since = CASE WHEN (b.address, b.port) = (EXCLUDED.address, EXCLUDED.port)
                         THEN b.since ELSE EXCLUDED.seen_at END,
            changes = b.changes + CASE
                WHEN (b.address, b.port) = (EXCLUDED.address, EXCLUDED.port) THEN 0 ELSE 1 END
        RETURNING coalesce((SELECT (address, port) <> ($2, $3) FROM old), false)
        """,
        device_id,
        address,
        port,
        nat_detected,
        at,
    )
    return bool(changed)


async def touch_bindings(conn: asyncpg.Connection, seen: list[tuple[str, datetime]]) -> int:
    """Move seen_at of unchanged bindings, many in one statement (the STUN server's
    batched keep-alives); never backwards, and never for a binding that is gone."""
    if not seen:
        return 0
    done = await conn.execute(
        """
        UPDATE udp_bindings b SET seen_at = v.seen
        FROM unnest($1::text[], $2::timestamptz[]) AS v(device_id, seen)
        WHERE b.device_id = v.device_id AND v.seen > b.seen_at
        """,
        [d for d, _ in seen],
        [t for _, t in seen],
    )
    return int(done.split()[-1])


async def binding(conn: asyncpg.Connection, device_id: str) -> Binding | None:
    row = await conn.fetchrow(
        "SELECT address, port, nat_detected, seen_at FROM udp_bindings WHERE device_id = $1",
        device_id,
    )
    return None if row is None else Binding(**dict(row))


async def binding_details(conn: asyncpg.Connection, device_id: str) -> dict[str, object] | None:
    row = await conn.fetchrow(
        "SELECT address, port, nat_detected, seen_at, since, changes"
        " FROM udp_bindings WHERE device_id = $1",
        device_id,
    )
    return None if row is None else dict(row)


async def reach(conn: asyncpg.Connection, device_id: str) -> Reach | None:
    """What the ACS knows of how to reach the device; None for an unknown device."""
    row = await conn.fetchrow(
        """
        SELECT d.connection_request_url,
               coalesce(dp.tree -> ($2 || 'ManagementServer.UDPConnectionRequestAddress'),
                        dp.tree -> ($3 || 'ManagementServer.UDPConnectionRequestAddress'))
                   ->> 'v' AS udp_address,
               coalesce(dp.tree -> ($2 || 'ManagementServer.NATDetected'),
                        dp.tree -> ($3 || 'ManagementServer.NATDetected')) ->> 'v' AS nat,
               coalesce(dp.tree -> ($2 || 'ManagementServer.ConnReqJabberID'),
                        dp.tree -> ($3 || 'ManagementServer.ConnReqJabberID')) ->> 'v' AS jid
        FROM devices d LEFT JOIN device_parameters dp ON dp.device_id = d.id
        WHERE d.id = $1
        """,
        device_id,
        *_ROOTS,
    )
    if row is None:
        return None
    nat = row["nat"]
    return Reach(
        connection_request_url=row["connection_request_url"],
        binding=await binding(conn, device_id),
        udp_address=row["udp_address"] or None,
        nat_detected=None if nat in (None, "") else nat.lower() in ("1", "true"),
        jabber_id=row["jid"] or None,
    )


async def connection_request_arrived(
    conn: asyncpg.Connection, device_id: str, since: datetime
) -> bool:
    """Whether the device has opened a session with "6 CONNECTION REQUEST" since then."""
    return bool(
        await conn.fetchval(
            "SELECT s.last_inform >= $2 AND '6 CONNECTION REQUEST' = ANY (d.last_events)"
            " FROM devices d JOIN device_sessions s ON s.device_id = d.id WHERE d.id = $1",
            device_id,
            since,
        )
    )


async def connection_requests_arrived(
    conn: asyncpg.Connection, waiting: list[tuple[str, datetime]]
) -> list[tuple[str, datetime, bool, str | None, int | None]]:
    """For many knocks waiting at once, in one statement: each (device_id, since)
    with whether the device has opened its "6 CONNECTION REQUEST" session since
    then, and where its STUN binding points now (a NAT that moved the port
    mid-knock is followed without another read per knock). In the order given."""
    rows = await conn.fetch(
        """
        SELECT w.device_id, w.since,
               coalesce(s.last_inform >= w.since
                        AND '6 CONNECTION REQUEST' = ANY (d.last_events), false) AS arrived,
               b.address, b.port
        FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS w(device_id, since, i)
        LEFT JOIN devices d ON d.id = w.device_id
        LEFT JOIN device_sessions s ON s.device_id = w.device_id
        LEFT JOIN udp_bindings b ON b.device_id = w.device_id
        ORDER BY w.i
        """,
        [d for d, _ in waiting],
        [t for _, t in waiting],
    )
    return [(r["device_id"], r["since"], r["arrived"], r["address"], r["port"]) for r in rows]


# one knock's channels: (channel, ok, outcome, reason, elapsed_s, at)
Outcome = tuple[str, bool, str, str, float, datetime]


async def record_outcomes(conn: asyncpg.Connection, device_id: str, rows: list[Outcome]) -> None:
    """The last outcome of each channel a knock tried, in one round trip."""
    await conn.executemany(
        """
        INSERT INTO connection_request_channels
            (device_id, channel, ok, outcome, reason, elapsed_s, at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (device_id, channel) DO UPDATE SET
            ok = EXCLUDED.ok, outcome = EXCLUDED.outcome, reason = EXCLUDED.reason,
            elapsed_s = EXCLUDED.elapsed_s, at = EXCLUDED.at
        """,
        [(device_id, *row) for row in rows],
    )


async def outcomes(conn: asyncpg.Connection, device_id: str) -> dict[str, dict[str, object]]:
    rows = await conn.fetch(
        "SELECT channel, ok, outcome, reason, elapsed_s, at"
        " FROM connection_request_channels WHERE device_id = $1",
        device_id,
    )
    keys = ("ok", "outcome", "reason", "elapsed_s", "at")
    return {r["channel"]: {k: r[k] for k in keys} for r in rows}


async def knock_contexts(conn: asyncpg.Connection, device_ids: list[str]) -> list[Any]:
    """For many knocks starting at once, in one statement: each device's
    ConnectionRequestURL, the connection-request credentials the ACS keeps
    (``username``/``password``, sealed) and the tree's (``tree_username``,
    ``sealed_under_device``/``_igd``), what ``reach`` reads (``udp_address``,
    ``nat``, ``jid``) and its STUN binding (``b_*``). In the order given; a row
    whose ``known`` is false names an unknown device. 1,000 knocks at once used
    to be 3,000 statements queued on the pool before the first datagram left."""
    return await conn.fetch(
        """
        SELECT w.device_id, d.id IS NOT NULL AS known, d.connection_request_url,
               c.username, c.password,
               coalesce(dp.tree -> ($2 || 'ManagementServer.ConnectionRequestUsername'),
                        dp.tree -> ($3 || 'ManagementServer.ConnectionRequestUsername'))
                   ->> 'v' AS tree_username,
               dp.tree -> ($2 || $4) ->> 'x' AS sealed_under_device,
               dp.tree -> ($3 || $4) ->> 'x' AS sealed_under_igd,
               coalesce(dp.tree -> ($2 || 'ManagementServer.UDPConnectionRequestAddress'),
                        dp.tree -> ($3 || 'ManagementServer.UDPConnectionRequestAddress'))
                   ->> 'v' AS udp_address,
               coalesce(dp.tree -> ($2 || 'ManagementServer.NATDetected'),
                        dp.tree -> ($3 || 'ManagementServer.NATDetected')) ->> 'v' AS nat,
               coalesce(dp.tree -> ($2 || 'ManagementServer.ConnReqJabberID'),
                        dp.tree -> ($3 || 'ManagementServer.ConnReqJabberID')) ->> 'v' AS jid,
               b.address AS b_address, b.port AS b_port, b.nat_detected AS b_nat_detected,
               b.seen_at AS b_seen_at
        FROM unnest($1::text[]) WITH ORDINALITY AS w(device_id, i)
        LEFT JOIN devices d ON d.id = w.device_id
        LEFT JOIN connection_request_credentials c ON c.device_id = d.id
        LEFT JOIN device_parameters dp ON dp.device_id = d.id
        LEFT JOIN udp_bindings b ON b.device_id = d.id
        ORDER BY w.i
        """,
        device_ids,
        *_ROOTS,
        "ManagementServer.ConnectionRequestPassword",
    )


def reach_of(row: Any) -> Reach:
    """The ``Reach`` in a ``knock_contexts`` row (the same reading as ``reach``)."""
    nat = row["nat"]
    binding = None
    if row["b_address"] is not None:
        binding = Binding(
            address=row["b_address"],
            port=row["b_port"],
            nat_detected=row["b_nat_detected"],
            seen_at=row["b_seen_at"],
        )
    return Reach(
        connection_request_url=row["connection_request_url"],
        binding=binding,
        udp_address=row["udp_address"] or None,
        nat_detected=None if nat in (None, "") else nat.lower() in ("1", "true"),
        jabber_id=row["jid"] or None,
    )
