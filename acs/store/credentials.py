"""Credentials CPEs use to authenticate to the ACS (HTTP Basic or Digest).

We store HA1 = MD5(username:realm:password) rather than the password: Digest
(RFC 7616, MD5) needs exactly HA1, and Basic can be checked by hashing the
presented password the same way.
"""

from __future__ import annotations

import hashlib

import asyncpg


def compute_ha1(username: str, realm: str, password: str) -> str:
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()


async def set_credential(
    conn: asyncpg.Connection,
    username: str,
    password: str,
    realm: str,
    device_id: str | None = None,
) -> None:
    """Create or replace the credential of ``username``.

    With ``device_id`` set, that username may only speak for that device.
    """
    await conn.execute(
        """
        INSERT INTO cpe_credentials (username, ha1, realm, device_id) VALUES ($1, $2, $3, $4)
        ON CONFLICT (username) DO UPDATE
            SET ha1 = EXCLUDED.ha1, realm = EXCLUDED.realm, device_id = EXCLUDED.device_id
        """,
        username,
        compute_ha1(username, realm, password),
        realm,
        device_id,
    )


async def get_credential(
    conn: asyncpg.Connection, username: str
) -> tuple[str, str, str | None] | None:
    """(ha1, realm, device_id) of ``username``, or None."""
    row = await conn.fetchrow(
        "SELECT ha1, realm, device_id FROM cpe_credentials WHERE username = $1", username
    )
    return None if row is None else (row["ha1"], row["realm"], row["device_id"])


async def delete_credential(conn: asyncpg.Connection, username: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM cpe_credentials WHERE username = $1 RETURNING 1", username
    )
    return deleted is not None


CONNECTION_REQUEST_PARAMETERS = (
    "ManagementServer.ConnectionRequestUsername",
    "ManagementServer.ConnectionRequestPassword",
)


async def remember_connection_request_credentials(
    conn: asyncpg.Connection, device_id: str, root: str
) -> None:
    """Keep the connection-request credentials the ACS just set on a device.

    CPEs answer GetParameterValues on a password with an empty string, so once
    the ACS has set one (a job or a policy), this row is the only place it can
    be read back for the next connection request. Call after the values set
    have been merged into the stored tree. The password is kept as the tree
    has it, sealed for its parameter path (acs.core.sealing): never in clear.
    """
    await conn.execute(
        """
        INSERT INTO connection_request_credentials (device_id, username, password)
        SELECT $1, dp.tree -> $2 ->> 'v', dp.tree -> $3 ->> 'x'
        FROM device_parameters dp
        WHERE dp.device_id = $1 AND dp.tree -> $2 ->> 'v' IS NOT NULL
          AND dp.tree -> $3 ->> 'x' IS NOT NULL
        ON CONFLICT (device_id) DO UPDATE SET
            username = EXCLUDED.username, password = EXCLUDED.password, updated_at = now()
        """,
        device_id,
        root + CONNECTION_REQUEST_PARAMETERS[0],
        root + CONNECTION_REQUEST_PARAMETERS[1],
    )
