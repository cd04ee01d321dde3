"""A discovered fleet of the load generator's devices, loaded by COPY in seconds.

bench.fleet's boot storm discovers every device through the ACS: about
20 minutes for 10,000 devices on two shared cores. What the periodic phase
measures needs only what the storm leaves behind: each device known, its
tree discovered. This builds that directly, in the store's own format
(acs.store.devices.apply_parameter_* are the pure twins of the SQL writes,
as bench.storage uses them), for exactly the devices bench.loadgen's
Informs name (serial SIM00000001..., the simulator's default identity), and
COPYs it in (``python -m bench.fleet --seed``).

Each tree is what a discovery stores: GetParameterNames of the root, then
GetParameterValues of every parameter, from that device's simulated tree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

import asyncpg

from acs.store import devices
from acs.store.db import _dumps
from acs.store.ids import device_id
from bench import storage
from cpe_simulator.datamodel import Identity, load_template
from cpe_simulator.tree import ParameterTree

MODEL = "tr181-gateway"
DISCOVERED_AT = datetime(2026, 3, 1, tzinfo=UTC)


def serial_of(i: int, prefix: str = "SIM") -> str:
    """bench.loadgen.inform_bodies' serial of device i (from 1)."""
    return f"{prefix}{i:08d}"


def sim_tree(i: int, acs_url: str, prefix: str = "SIM") -> tuple[Identity, ParameterTree]:
    """Device i as bench.loadgen's Informs describe it."""
    serial = serial_of(i, prefix)
    ident = Identity.from_serial(serial)
    tree = ParameterTree(
        load_template(MODEL),
        ident,
        acs_url=acs_url,
        connection_request_url=f"http://127.0.0.1:7548/cr/{serial}",
    )
    return ident, tree


def stored_tree(sim: ParameterTree, at: datetime) -> devices.Tree:
    """What a discovery of ``sim`` leaves in device_parameters.tree."""
    root = sim.template.root
    tree: devices.Tree = {}
    names = sim.get_parameter_names(root, False)
    devices.apply_parameter_names(tree, root, False, names, at)
    values = sim.get_parameter_values([root])
    devices.apply_parameter_values(tree, values, at, read=True)
    return tree


def _rows(acs_url: str, prefix: str, start: int, stop: int) -> tuple[list[tuple], list[tuple]]:
    dev_rows, tree_rows = [], []
    at = DISCOVERED_AT
    for i in range(start, stop):
        ident, sim = sim_tree(i, acs_url, prefix)
        tree = stored_tree(sim, at)
        dev_id = device_id(ident.oui, ident.product_class, ident.serial_number)
        root = sim.template.root

        def value(suffix: str, tree: devices.Tree = tree, root: str = root) -> str | None:
            v = tree.get(root + suffix, {}).get("v")
            return str(v) if v else None

        dev_rows.append(
            (
                dev_id,
                ident.oui,
                ident.product_class,
                ident.serial_number,
                ident.manufacturer,
                at,
                at,
                at,
                ["1 BOOT"],
                "127.0.0.1",
                value("ManagementServer.ConnectionRequestURL"),
                value("DeviceInfo.SoftwareVersion"),
                value("DeviceInfo.HardwareVersion"),
                value("DeviceInfo.ProvisioningCode"),
                "1.0",
                len(tree),
            )
        )
        tree_rows.append((dev_id, _dumps(tree), at))
    return dev_rows, tree_rows


def _chunks(first: int, n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(first, first + n, size):
        yield start, min(first + n, start + size)


async def seed_fleet(
    dsn: str, n: int, acs_url: str, *, prefix: str = "SIM", batch: int = 250, workers: int = 2
) -> None:
    """COPY devices 1..n, discovered, into the (migrated) database at ``dsn``."""
    conn = await asyncpg.connect(dsn)  # no jsonb codec: COPY's binary jsonb takes JSON text
    loop = asyncio.get_running_loop()
    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunks = list(_chunks(1, n, batch))
            ahead = [
                loop.run_in_executor(pool, _rows, acs_url, prefix, a, b)
                for a, b in chunks[: workers + 1]
            ]
            for k in range(len(chunks)):
                dev_rows, tree_rows = await ahead.pop(0)
                nxt = k + len(ahead) + 1
                if nxt < len(chunks):
                    ahead.append(loop.run_in_executor(pool, _rows, acs_url, prefix, *chunks[nxt]))
                await storage.copy_known(
                    conn,
                    dev_rows,
                    [(r[0], DISCOVERED_AT) for r in dev_rows],
                    {"device_parameters": (("device_id", "tree", "updated_at"), tree_rows)},
                )
    finally:
        await conn.close()
