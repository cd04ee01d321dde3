"""Connection requests on a device's behalf: whose credentials, which URL.

Used by the API (a job "now") and by campaigns that pull pending devices in
instead of waiting for their periodic Inform.
"""

from __future__ import annotations

import logging

import asyncpg

from acs.config import Settings
from acs.connreq.http import ConnectionRequester, ConnectionRequestResult
from acs.core.sealing import Sealer
from acs.core.secrets import is_sealed
from acs.logs import log
from acs.services.sealing_key import sealer

logger = logging.getLogger("acs.connreq")

_ROOTS = ("Device.", "InternetGatewayDevice.")


PASSWORD = "ManagementServer.ConnectionRequestPassword"


async def knock(
    pool: asyncpg.Pool, requester: ConnectionRequester, settings: Settings, dev_id: str
) -> ConnectionRequestResult:
    """Send a connection request with the device's own credentials: those the ACS
    stored for it, else the ones in its tree, else the configured defaults.
    Passwords are kept sealed; they are opened here, for this request only."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """
            SELECT d.connection_request_url, c.username, c.password,
                   coalesce(dp.tree -> ($2 || 'ManagementServer.ConnectionRequestUsername'),
                            dp.tree -> ($3 || 'ManagementServer.ConnectionRequestUsername'))
                       ->> 'v' AS tree_username,
                   dp.tree -> ($2 || $4) ->> 'x' AS sealed_under_device,
                   dp.tree -> ($3 || $4) ->> 'x' AS sealed_under_igd
            FROM devices d
            LEFT JOIN connection_request_credentials c ON c.device_id = d.id
            LEFT JOIN device_parameters dp ON dp.device_id = d.id
            WHERE d.id = $1
            """,
            dev_id,
            *_ROOTS,
            PASSWORD,
        )
    if row is None or not row["connection_request_url"]:
        requester.metrics.connection_request("no_url")
        return ConnectionRequestResult(
            False, None, "the device has sent no ConnectionRequestURL", 0.0, "no_url"
        )
    seal = sealer(settings)
    if row["username"] is not None:
        username, password = row["username"], _opened(seal, dev_id, row["password"])
    else:
        username = row["tree_username"] or settings.connection_request_username or ""
        password = (
            seal.open_value(dev_id, _ROOTS[0] + PASSWORD, row["sealed_under_device"])
            or seal.open_value(dev_id, _ROOTS[1] + PASSWORD, row["sealed_under_igd"])
            or settings.connection_request_password
            or ""
        )
    result = await requester.send(row["connection_request_url"], username, password)
    log(
        logger,
        logging.INFO if result.ok else logging.WARNING,
        "connection_request",
        device=dev_id,
        ok=result.ok,
        outcome=result.outcome,
        status=result.status,
        reason=result.reason,
    )
    return result


def _opened(seal: Sealer, dev_id: str, stored: str) -> str:
    """A kept password: sealed for the parameter path it was set on (either
    root), or in clear in a row written before passwords were sealed."""
    if not is_sealed(stored):
        return stored
    for root in _ROOTS:
        clear = seal.open_value(dev_id, root + PASSWORD, stored)
        if clear is not None:
            return clear
    log(logger, logging.WARNING, "connection_request_password_unreadable", device=dev_id)
    return ""
