"""Sealing the secrets a database kept in clear before secrets were sealed.

Runs once per installation, at start before serving (acs.web.server): literal
secrets in policies are sealed, tree
values of secret parameters become the mask plus their sealed value, the
connection-request passwords the ACS kept and secret overrides are sealed,
job arguments are sealed and job results masked, and the values recorded as
policy sources are masked. Each device is rewritten in its own transaction
under its row lock, so a large fleet is not held in one.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg

from acs.core import secrets
from acs.core.policy_secrets import seal_spec
from acs.core.sealing import MaskGiven, Sealer
from acs.logs import log
from acs.services.provisioning import OVERRIDE

logger = logging.getLogger("acs.secrets")

MARKER = "secrets-sealed-v1"
_ROOTS = ("Device.", "InternetGatewayDevice.")
_CR_PASSWORD = "ManagementServer.ConnectionRequestPassword"


def _name_pattern() -> str:
    # PostgreSQL regex over lowered names: the same endings as is_secret_name
    return "(" + "|".join(re.escape(e) for e in secrets.endings()) + r")\s*$"


async def seal_existing(pool: asyncpg.Pool, sealer: Sealer) -> dict[str, int] | None:
    """Counts of what was sealed or masked; None when it had been done already."""
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT 1 FROM acs_keys WHERE name = $1", MARKER):
            return None
        pattern = _name_pattern()
        counts = {
            "policies": await _policies(conn, sealer),
            "trees": await _trees(conn, sealer, pattern),
            "credentials": await _credentials(conn, sealer),
            "overrides": await _overrides(conn, sealer, pattern),
            "jobs": await _jobs(conn, sealer, pattern),
            "sources": await conn.fetchval(
                "WITH m AS (UPDATE parameter_sources SET value = $2"
                " WHERE lower(path) ~ $1 AND value NOT IN ('', $2) RETURNING 1)"
                " SELECT count(*)::int FROM m",
                pattern,
                secrets.MASK,
            ),
        }
        await conn.execute(
            "INSERT INTO acs_keys (name, value) VALUES ($1, ''::bytea) ON CONFLICT DO NOTHING",
            MARKER,
        )
    if any(counts.values()):
        log(logger, logging.INFO, "secrets_sealed", **counts)
    return counts


async def _policies(conn: asyncpg.Connection, sealer: Sealer) -> int:
    changed = 0
    for r in await conn.fetch("SELECT id, spec FROM policies"):
        spec = r["spec"]
        if seal_spec(spec, sealer):
            # the same version: what the policy sets has not changed
            await conn.execute("UPDATE policies SET spec = $2 WHERE id = $1", r["id"], spec)
            changed += 1
    return changed


async def _trees(conn: asyncpg.Connection, sealer: Sealer, pattern: str) -> int:
    ids = await conn.fetch(
        """
        SELECT device_id FROM device_parameters dp
        WHERE EXISTS (SELECT 1 FROM jsonb_each(dp.tree) e
                      WHERE lower(e.key) ~ $1 AND coalesce(e.value ->> 't', '') <> 'boolean'
                        AND coalesce(e.value ->> 'v', '') NOT IN ('', $2))
        """,
        pattern,
        secrets.MASK,
    )
    for row in ids:
        device = row["device_id"]
        async with conn.transaction():
            tree: dict[str, dict[str, Any]] | None = await conn.fetchval(
                "SELECT tree FROM device_parameters WHERE device_id = $1 FOR UPDATE", device
            )
            for path, entry in (tree or {}).items():
                value = entry.get("v")
                if (
                    value
                    and value != secrets.MASK
                    and secrets.is_secret_parameter(path, entry.get("t"))
                ):
                    entry["v"] = secrets.MASK
                    entry["x"] = sealer.seal(value, device, path)
            await conn.execute(
                "UPDATE device_parameters SET tree = $2 WHERE device_id = $1", device, tree
            )
    return len(ids)


async def _credentials(conn: asyncpg.Connection, sealer: Sealer) -> int:
    rows = await conn.fetch(
        """
        SELECT c.device_id, c.password,
               coalesce(dp.tree ? ('InternetGatewayDevice.' || $1), false) AS igd
        FROM connection_request_credentials c
        LEFT JOIN device_parameters dp ON dp.device_id = c.device_id
        WHERE c.password NOT LIKE 'acs:sealed:%'
        """,
        _CR_PASSWORD,
    )
    for r in rows:
        # sealed as the session driver seals it: for the parameter path it was set on
        path = _ROOTS[1 if r["igd"] else 0] + _CR_PASSWORD
        await conn.execute(
            "UPDATE connection_request_credentials SET password = $2 WHERE device_id = $1",
            r["device_id"],
            sealer.seal(r["password"], r["device_id"], path),
        )
    return len(rows)


async def _overrides(conn: asyncpg.Connection, sealer: Sealer, pattern: str) -> int:
    rows = await conn.fetch(
        "SELECT device_id, path, value FROM device_overrides"
        " WHERE lower(path) ~ $1 AND value <> '' AND value NOT LIKE 'acs:sealed:%'",
        pattern,
    )
    for r in rows:
        await conn.execute(
            "UPDATE device_overrides SET value = $3 WHERE device_id = $1 AND path = $2",
            r["device_id"],
            r["path"],
            sealer.seal(r["value"], r["device_id"], OVERRIDE + ":" + r["path"]),
        )
    return len(rows)


def _sealed_args(sealer: Sealer, args: dict[str, Any]) -> dict[str, Any]:
    try:
        return sealer.seal_args(args)
    except MaskGiven:
        # an old job that set a secret to the mask: nothing to keep, only to hide
        return secrets.mask_document(args)  # type: ignore[no-any-return]


async def _jobs(conn: asyncpg.Connection, sealer: Sealer, pattern: str) -> int:
    # a cheap text filter first: most jobs name no secret at all
    rows = await conn.fetch(
        "SELECT id, args, result FROM tasks"
        " WHERE lower(args::text) ~ $1 OR lower(coalesce(result::text, '')) ~ $1",
        pattern.replace(r"\s*$", ""),
    )
    changed = 0
    for r in rows:
        args, result = _sealed_args(sealer, r["args"]), secrets.mask_document(r["result"])
        if args != r["args"] or result != r["result"]:
            await conn.execute(
                "UPDATE tasks SET args = $2, result = $3 WHERE id = $1", r["id"], args, result
            )
            changed += 1
    bulk = await conn.fetch(
        "SELECT id, task_args FROM bulk_jobs WHERE lower(task_args::text) ~ $1",
        pattern.replace(r"\s*$", ""),
    )
    for r in bulk:
        args = _sealed_args(sealer, r["task_args"])
        if args != r["task_args"]:
            await conn.execute("UPDATE bulk_jobs SET task_args = $2 WHERE id = $1", r["id"], args)
            changed += 1
    return changed
