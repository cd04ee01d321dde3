"""bench.fleet --seed: the devices bench.loadgen's Informs name, discovered, by COPY."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from acs.cwmp.soap import parse_envelope
from acs.store import devices, sessions
from bench import loadgen, seed

pytestmark = pytest.mark.db

ACS_URL = "http://127.0.0.1:7547/"


CLOCK = "Device.Time.CurrentLocalTime"


def _without_clock(tree: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {f: v for f, v in e.items() if f != "v"} if k == CLOCK else e for k, e in tree.items()
    }


async def test_seeded_devices_are_the_load_generators_and_discovered(
    db_pool: asyncpg.Pool, database_url: str
) -> None:
    prefix = "SEED" + re.sub(r"\W", "", database_url[-6:]).upper()
    await seed.seed_fleet(database_url, 3, ACS_URL, prefix=prefix, batch=2, workers=1)
    body = loadgen.inform_bodies(3, prefix, ACS_URL)[1]  # device 2
    inform = parse_envelope(body).body
    ident, sim = seed.sim_tree(2, ACS_URL, prefix)
    dev_id = seed.device_id(ident.oui, ident.product_class, ident.serial_number)
    assert inform.device_id.serial_number == ident.serial_number
    async with db_pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT tree FROM device_parameters WHERE device_id = $1", dev_id
        )
        expected = seed.stored_tree(sim, seed.DISCOVERED_AT)
        # the simulator's clock is read at each call: the seed's second may be past
        assert _without_clock(stored) == _without_clock(expected)
        assert stored[CLOCK]["t"] == "dateTime"
        assert len(stored) > 500
        # its periodic Inform finds a discovered device: no discovery, no new device
        rec = devices.InformRecord(
            device_id=dev_id,
            manufacturer=ident.manufacturer,
            oui=ident.oui,
            product_class=ident.product_class,
            serial_number=ident.serial_number,
            events=["2 PERIODIC"],
            remote_address="127.0.0.1",
            cwmp_version="1.0",
            parameters=list(inform.parameter_list),
            at=datetime.now(UTC),
        )
        opened = await sessions.open_session(conn, rec, "SEEDTEST", 30)
        assert opened is not None and not opened.tree_unknown
        seeded = await conn.fetchval(
            "SELECT count(*) FROM devices WHERE id LIKE $1", f"%-{prefix}%"
        )
        assert seeded == 3
