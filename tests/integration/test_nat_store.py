"""STUN credentials, UDP bindings and channel outcomes in PostgreSQL (acs/store/nat.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from acs.core.sealing import Sealer
from acs.cwmp.messages import ParameterValueStruct as PV
from acs.store import devices, nat
from tests.integration.test_store import inform

pytestmark = pytest.mark.db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MS = "Device.ManagementServer."
SEAL = Sealer(b"the STUN test key, of 32 characters+")


async def device_with(
    conn: asyncpg.Connection, serial: str, *values: tuple[str, str], events: list[str] | None = None
) -> str:
    params = [PV(MS + "ConnectionRequestURL", "http://192.168.1.2:7547/cr")]
    params += [PV(MS + name, value) for name, value in values]
    record = inform(serial, params, events=events, at=T0)
    # as the CWMP endpoint stores an Inform: a secret the device reports, sealed
    record.parameters = SEAL.seal_values(record.device_id, record.parameters)
    dev, _ = await devices.upsert_from_inform(conn, record)
    return dev.id


async def test_the_credential_the_acs_set_wins_and_an_ambiguous_username_is_nobody(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    user = unique_serial("stun-")
    # a device that reports its STUN password (most do not)
    reported = await device_with(
        conn, unique_serial(), ("STUNUsername", user), ("STUNPassword", "r")
    )
    peer = await nat.stun_peer(conn, user, SEAL)
    assert peer is not None and (peer.device_id, peer.password) == (reported, "r")
    assert peer.connection_request_url == "http://192.168.1.2:7547/cr"
    # the same username on a second device: which one sent the request cannot be told
    await device_with(conn, unique_serial(), ("STUNUsername", user), ("STUNPassword", "r2"))
    assert await nat.stun_peer(conn, user, SEAL) is None
    # the ACS sets a credential on the first: that row names it again
    # as the session driver stores a SetParameterValues: the password sealed
    sent = [PV(MS + "STUNUsername", user), PV(MS + "STUNPassword", "set")]
    await devices.merge_parameter_values(conn, reported, SEAL.seal_values(reported, sent), T0)
    await nat.remember_stun_credentials(conn, reported, "Device.")
    kept = await conn.fetchval(
        "SELECT password FROM stun_credentials WHERE device_id = $1", reported
    )
    assert kept and "set" not in kept, "the STUN password is kept sealed, not in clear"
    peer = await nat.stun_peer(conn, user, SEAL)
    assert peer is not None and (peer.device_id, peer.password) == (reported, "set")
    # a device that reads its password back as "": unknown until the ACS sets one
    hidden = unique_serial("stun-")
    await device_with(conn, unique_serial(), ("STUNUsername", hidden), ("STUNPassword", ""))
    assert await nat.stun_peer(conn, hidden, SEAL) is None
    assert await nat.stun_peer(conn, unique_serial("nobody-"), SEAL) is None


async def test_a_binding_records_when_it_moved(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev = await device_with(conn, unique_serial())
    assert not await nat.record_binding(conn, dev, "203.0.113.9", 40001, True, T0)
    later = T0 + timedelta(seconds=30)
    assert not await nat.record_binding(conn, dev, "203.0.113.9", 40001, True, later)
    row = await nat.binding_details(conn, dev)
    assert row is not None
    assert (row["seen_at"], row["since"], row["changes"]) == (later, T0, 0)
    moved = T0 + timedelta(seconds=60)
    assert await nat.record_binding(conn, dev, "203.0.113.9", 40777, True, moved)
    row = await nat.binding_details(conn, dev)
    assert row is not None
    assert (row["port"], row["since"], row["changes"]) == (40777, moved, 1)
    reach = await nat.reach(conn, dev)
    assert reach is not None and reach.binding is not None and reach.binding.port == 40777
    assert reach.nat_detected is None  # the device has not reported NATDetected
    assert await nat.reach(conn, "no-such-device") is None


async def test_reported_nat_and_udp_address_and_the_arrival_of_the_session(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev = await device_with(
        conn, serial, ("UDPConnectionRequestAddress", "203.0.113.9:4000"), ("NATDetected", "true")
    )
    reach = await nat.reach(conn, dev)
    assert reach is not None
    assert (reach.udp_address, reach.nat_detected) == ("203.0.113.9:4000", True)
    assert not await nat.connection_request_arrived(conn, dev, T0 - timedelta(seconds=1))
    later = T0 + timedelta(seconds=5)
    await devices.upsert_from_inform(
        conn, inform(serial, [], events=["6 CONNECTION REQUEST"], at=later)
    )
    assert await nat.connection_request_arrived(conn, dev, T0)
    assert not await nat.connection_request_arrived(conn, dev, later + timedelta(seconds=1))


async def test_each_channel_keeps_its_last_outcome(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev = await device_with(conn, unique_serial())
    for ok, outcome in ((False, "timeout"), (True, "accepted")):
        await nat.record_outcomes(conn, dev, [("udp", ok, outcome, outcome, 0.2, T0)])
    await nat.record_outcomes(conn, dev, [("http", False, "unreachable", "refused", 0.0, T0)])
    last = await nat.outcomes(conn, dev)
    assert {ch: (v["ok"], v["outcome"]) for ch, v in last.items()} == {
        "udp": (True, "accepted"),
        "http": (False, "unreachable"),
    }


async def test_unchanged_bindings_are_touched_in_one_batch_never_backwards(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    a, b = await device_with(conn, unique_serial()), await device_with(conn, unique_serial())
    await nat.record_binding(conn, a, "203.0.113.9", 40001, True, T0)
    await nat.record_binding(conn, b, "203.0.113.10", 40002, True, T0)
    later = T0 + timedelta(seconds=90)
    touched = await nat.touch_bindings(
        conn, [(a, later), (b, T0 - timedelta(seconds=5)), ("no-such-device", later)]
    )
    assert touched == 1  # b's time is older than what is stored; the unknown one has none
    ra, rb = await nat.binding_details(conn, a), await nat.binding_details(conn, b)
    assert ra is not None and rb is not None
    assert (ra["seen_at"], ra["since"], ra["changes"], ra["port"]) == (later, T0, 0, 40001)
    assert rb["seen_at"] == T0
    assert await nat.touch_bindings(conn, []) == 0
