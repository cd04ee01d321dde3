"""Devices that check in over FOTA instead of TR-069 (USB modems, hotspots, phones).

A terminal's check-in is its Inform: it carries the few facts the firmware
catalog needs (hardware, installed build, region), so they go straight into
the same ``devices`` columns a CWMP Inform writes. Campaigns, filters and the
firmware explanation then treat both kinds of device alike. A terminal has no
parameter tree: region scopes on a parameter never match it, which is right,
since it reports none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(slots=True, frozen=True)
class CheckIn:
    """What a terminal reports about itself on each check."""

    device_id: str
    oui: str
    product_class: str
    serial_number: str
    hardware_version: str
    software_version: str
    provisioning_code: str | None
    manufacturer: str | None
    remote_address: str | None
    at: datetime


# Each check is a full report of the terminal's hardware and build, so those
# overwrite; region and manufacturer are optional in the request, and a check
# that leaves them out keeps what an earlier one said. The row lock this
# statement takes lasts until the caller's transaction ends, which is what
# makes two checks of one terminal take turns.
_UPSERT = """
INSERT INTO devices AS d (
    id, oui, product_class, serial_number, manufacturer, created_at,
    remote_address, software_version, hardware_version, provisioning_code)
VALUES ($1, $2, $3, $4, COALESCE($5, ''), $6, $7, $8, $9, $10)
ON CONFLICT (id) DO UPDATE SET
    manufacturer = COALESCE($5, d.manufacturer),
    remote_address = COALESCE(EXCLUDED.remote_address, d.remote_address),
    software_version = EXCLUDED.software_version,
    hardware_version = EXCLUDED.hardware_version,
    provisioning_code = COALESCE(EXCLUDED.provisioning_code, d.provisioning_code)
RETURNING (xmax = 0) AS created
"""
# when it was heard: in the device's device_sessions row (migration 0024),
# which the insert's trigger created for a new terminal
_HEARD = "UPDATE device_sessions SET last_inform = $2 WHERE device_id = $1"


async def record_check_in(conn: asyncpg.Connection, check: CheckIn) -> bool:
    """Create or refresh the terminal's device row; True when it was created."""
    created = await conn.fetchval(
        _UPSERT,
        check.device_id,
        check.oui,
        check.product_class,
        check.serial_number,
        check.manufacturer,
        check.at,
        check.remote_address,
        check.software_version,
        check.hardware_version,
        check.provisioning_code,
    )
    await conn.execute(_HEARD, check.device_id, check.at)
    return bool(created)


async def lock_device(conn: asyncpg.Connection, device_id: str) -> bool:
    """Take the device row's lock for the caller's transaction, so a report and a
    check of one terminal never interleave; False when there is no such device."""
    found = await conn.fetchval("SELECT 1 FROM devices WHERE id = $1 FOR UPDATE", device_id)
    return found is not None
