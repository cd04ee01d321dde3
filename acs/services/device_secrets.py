"""Reading a device's secret back in clear: for admins, on purpose, audited.

Everything else the ACS shows masks secrets (acs.core.secrets); this is the
one way an operator gets a value the ACS sealed: a password a job or a
policy set, or one the CPE reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from acs.core.sealing import Sealer
from acs.core.secrets import is_secret_name
from acs.store import credentials


class NotASecret(ValueError):
    """The path names no secret parameter: its value is in the device tree."""


@dataclass(frozen=True, slots=True)
class Revealed:
    value: str
    source: str  # "tree": the device's parameter; "connection-request": the knock's copy


async def read_secret(
    conn: asyncpg.Connection, sealer: Sealer, device_id: str, path: str
) -> Revealed | None:
    """The clear value the ACS holds for ``path`` on the device, or None;
    NotASecret for a path that is not a secret parameter."""
    if not is_secret_name(path):
        raise NotASecret(f"{path!r} is not a secret parameter: its value is in GET /devices/{{id}}")
    sealed = await conn.fetchval(
        "SELECT tree -> $2::text ->> 'x' FROM device_parameters WHERE device_id = $1",
        device_id,
        path,
    )
    clear = sealer.open_value(device_id, path, sealed)
    if clear is not None:
        return Revealed(clear, "tree")
    if path.endswith(credentials.CONNECTION_REQUEST_PARAMETERS[1]):
        kept = await conn.fetchval(
            "SELECT password FROM connection_request_credentials WHERE device_id = $1", device_id
        )
        clear = sealer.open_value(device_id, path, kept)
        if clear is not None:
            return Revealed(clear, "connection-request")
    return None
