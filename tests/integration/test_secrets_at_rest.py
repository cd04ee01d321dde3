"""Secrets at rest in PostgreSQL: the tree never holds one in clear, the sealed
copy opens only for its device and path, and a database from before secrets
were sealed is sealed once at start."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg
import pytest

from acs.core.sealing import Sealer, SealError
from acs.core.secrets import MASK
from acs.cwmp.messages import ParameterValueStruct as PV
from acs.services import provisioning, reseal
from acs.services.device_secrets import read_secret
from acs.store import devices
from acs.store import policies as policy_store
from tests.integration.test_store import inform

pytestmark = pytest.mark.db

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CR = "Device.ManagementServer.ConnectionRequestPassword"
PSK = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"


async def test_a_secret_is_stored_masked_beside_its_sealed_value(
    conn: asyncpg.Connection, unique_serial
) -> None:
    sealer = Sealer(b"a test key of at least 32 characters")
    dev, _ = await devices.upsert_from_inform(conn, inform(unique_serial()))
    values = [PV(CR, "clear-cr-pw-1"), PV(PSK, "clear-psk-1"), PV("Device.X.Name", "shown")]
    await devices.merge_parameter_values(conn, dev.id, sealer.seal_values(dev.id, values), T0)
    text = await conn.fetchval(
        "SELECT tree::text FROM device_parameters WHERE device_id = $1", dev.id
    )
    assert "clear-cr-pw-1" not in text and "clear-psk-1" not in text
    stored = await devices.get_parameters(conn, dev.id)
    assert stored[CR].value == MASK and stored["Device.X.Name"].value == "shown"
    assert sealer.open_value(dev.id, CR, stored[CR].sealed) == "clear-cr-pw-1"
    # bound to its place: another path, device or key does not open it
    assert sealer.open_value(dev.id, PSK, stored[CR].sealed) is None
    assert sealer.open_value(dev.id + "x", CR, stored[CR].sealed) is None
    with pytest.raises(SealError):
        Sealer(b"another key of at least 32 characters").open(stored[CR].sealed, dev.id, CR)

    # the same value again rewrites nothing (the seal is deterministic); a new one does
    again = sealer.seal_values(dev.id, [PV(CR, "clear-cr-pw-1")])
    assert await devices.merge_parameter_values(conn, dev.id, again, T0) == 0
    changed = sealer.seal_values(dev.id, [PV(CR, "clear-cr-pw-2")])
    assert await devices.merge_parameter_values(conn, dev.id, changed, T0) == 1
    # a CPE reading its password back as "" (TR-069) keeps the ACS's sealed copy
    await devices.merge_parameter_values(conn, dev.id, [PV(CR, "")], T0, read=True)
    found = await read_secret(conn, sealer, dev.id, CR)
    assert found is not None and found.value == "clear-cr-pw-2"
    # one that reaches the store unsealed is masked, never kept in clear
    await devices.merge_parameter_values(conn, dev.id, [PV(PSK, "unsealed-psk")], T0)
    text = await conn.fetchval(
        "SELECT tree::text FROM device_parameters WHERE device_id = $1", dev.id
    )
    assert "unsealed-psk" not in text
    assert await read_secret(conn, sealer, dev.id, PSK) is None


PASSPHRASE = "WiFi.AccessPoint.1.Security.KeyPassphrase"


async def test_a_database_from_before_sealing_is_sealed_once(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial
) -> None:
    sealer = Sealer(b"the reseal test key, 32 characters+")
    dev, _ = await devices.upsert_from_inform(conn, inform(unique_serial()))
    # what an older ACS wrote: passwords in clear in the tree, the knock's copy,
    # a job's arguments and result, and the policy sources
    tree = {
        CR: {"v": "old-clear-cr", "t": "string"},
        PSK: {"v": "old-clear-psk", "t": "string"},
        "Device.UserInterface.SharedPassword": {"v": "0", "t": "boolean"},
        "Device.X.Name": {"v": "shown", "t": "string"},
    }
    await conn.execute(
        "INSERT INTO device_parameters (device_id, tree) VALUES ($1, $2)"
        " ON CONFLICT (device_id) DO UPDATE SET tree = EXCLUDED.tree",
        dev.id,
        tree,
    )
    await conn.execute(
        "INSERT INTO connection_request_credentials (device_id, username, password)"
        " VALUES ($1, 'u', 'old-clear-cr')",
        dev.id,
    )
    await conn.execute(
        "INSERT INTO parameter_sources (device_id, path, policy_name, value, set_at)"
        " VALUES ($1, $2, 'p', 'old-clear-cr', now())",
        dev.id,
        CR,
    )
    job = await conn.fetchval(
        "INSERT INTO tasks (device_id, name, args, result)"
        " VALUES ($1, 'setParameterValues', $2, $3) RETURNING id",
        dev.id,
        {"parameterValues": [[PSK, "old-clear-psk"]]},
        {"values": [[PSK, "old-clear-psk", "xsd:string"]]},
    )
    # disabled, and deleted below: the database is shared by the whole run
    policy = await conn.fetchval(
        "INSERT INTO policies (name, spec, enabled) VALUES ($1, $2, false) RETURNING id",
        unique_serial("old-policy-"),
        {"parameters": [{"path": PASSPHRASE, "value": "old-policy-passphrase"}]},
    )
    await conn.execute("DELETE FROM acs_keys WHERE name = $1", reseal.MARKER)

    counts = await reseal.seal_existing(db_pool, sealer)
    assert counts is not None and counts["trees"] >= 1 and counts["credentials"] >= 1
    assert await reseal.seal_existing(db_pool, sealer) is None  # once

    rows = [
        await conn.fetchval(
            "SELECT tree::text FROM device_parameters WHERE device_id = $1", dev.id
        ),
        await conn.fetchval(
            "SELECT password FROM connection_request_credentials WHERE device_id = $1", dev.id
        ),
        await conn.fetchval("SELECT value FROM parameter_sources WHERE device_id = $1", dev.id),
        json.dumps(await conn.fetchval("SELECT args FROM tasks WHERE id = $1", job)),
        json.dumps(await conn.fetchval("SELECT result FROM tasks WHERE id = $1", job)),
    ]
    rows.append(await conn.fetchval("SELECT spec::text FROM policies WHERE id = $1", policy))
    for text in rows:
        for clear in ("old-clear-cr", "old-clear-psk", "old-policy-passphrase"):
            assert clear not in text, text
    row = await policy_store.get(conn, policy)
    assert row is not None
    opened = provisioning.load(row, sealer).policy.parameters[0].value.text
    assert opened == "old-policy-passphrase"  # what the engine sets, in clear
    await conn.execute("DELETE FROM policies WHERE id = $1", policy)
    stored = await devices.get_parameters(conn, dev.id)
    assert stored["Device.UserInterface.SharedPassword"].value == "0"  # a switch, untouched
    assert stored["Device.X.Name"].value == "shown"
    # and what was sealed still opens, for the knock and the admin route
    assert (await read_secret(conn, sealer, dev.id, CR)).value == "old-clear-cr"  # type: ignore[union-attr]
    kept = await conn.fetchval(
        "SELECT password FROM connection_request_credentials WHERE device_id = $1", dev.id
    )
    assert sealer.open_value(dev.id, CR, kept) == "old-clear-cr"
    args = await conn.fetchval("SELECT args FROM tasks WHERE id = $1", job)
    assert sealer.open_args(args) == {"parameterValues": [[PSK, "old-clear-psk"]]}
