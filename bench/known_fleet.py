"""N known devices in an ACS's store, as N real bootstraps would leave them, in seconds.

A real bootstrap through the ACS costs about 0.15 s of wall time per device
here (73 s for 500), hours for the reboot storm's 10,000. Two devices (the
last two serials of the fleet) are bootstrapped for real: full discovery and
the shipped policies. The first of them is the reference; every other device
is the reference's rows with what differs between devices replaced:

- the values the simulator derives from a device's identity (serial, MACs,
  SSIDs, addresses, the connection-request URL), read from that device's own
  simulated tree, built as the simulator builds it (FleetConfig.tree_of);
- what the policies that applied to the reference set, rendered for the device
  by the ACS's own template code (acs.core.templates: ``{secret:...}``,
  ``{spread_time:...}``, device fields), secrets sealed for their place by the
  installation's own sealer (AES-SIV is deterministic: the same text the ACS
  writes);
- its id and serial in every row.

The second real device is then predicted the same way and compared with what
the ACS really stored for it, every table row by row (times aside): a
difference stops the bench, so the seeded store cannot drift from a real
bootstrap's. The rows are loaded with COPY (as bench.storage loads trees),
and the simulator gets each device's matching configuration (the policies'
values, the clear connection-request password included) as its --state file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from acs.config import Settings
from acs.core import templates
from acs.core.sealing import Sealer
from acs.core.secrets import MASK, is_secret_parameter
from acs.services import sealing_key
from acs.services.provisioning import DEFAULT_POLICIES
from acs.store.ids import device_id
from bench import storage
from cpe_simulator.datamodel import load_template
from cpe_simulator.fleet import FleetConfig

#: the rows a bootstrap leaves per device, and the columns that only say when
TABLES: dict[str, tuple[str, ...]] = {
    "devices": ("created_at", "last_boot", "last_bootstrap"),
    "device_parameters": ("updated_at",),
    "device_sessions": ("last_inform",),
    "policy_results": ("applied_at",),
    "parameter_sources": ("set_at",),
    "connection_request_credentials": ("updated_at",),
}
_TIMES = ("nt", "vt")
#: the simulator's identity keys whose values are the clock's (cpe_simulator.tree)
CLOCK_KEYS = frozenset(
    {"uptime", "current_time"}
)  # per entry in a stored tree: when its name and value were read


class KnownFleet:
    """Rows of device i derived from the reference device's (see the module doc)."""

    def __init__(
        self, config: FleetConfig, cr_port: int, sealer: Sealer, key: bytes, ref: int
    ) -> None:
        self.config = config
        self.cr_port = cr_port
        self.sealer = sealer
        self.key = key
        self.template = load_template(config.model)
        self.root = self.template.root
        ms = f"{self.root}ManagementServer."
        identity = self.template.identity
        # what the clock says (UpTime, CurrentLocalTime) depends on when a device was
        # read, not on which device: every device keeps the reference's reading
        self.clocked = frozenset(p for p, key in identity.items() if key in CLOCK_KEYS)
        self.varying = sorted({*identity, ms + "ConnectionRequestURL"} - self.clocked)
        self.ref = ref
        self.ref_own = self.own_values(ref)
        self.ref_serial = config.serial_of(ref)
        self.ref_id = self.id_of(ref)
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.tree: dict[str, dict[str, Any]] = {}
        self.sets: dict[str, str] = {}  # path -> template, of the policies that set it

    def id_of(self, i: int) -> str:
        c = self.config
        return device_id(c.oui, c.product_class, c.serial_of(i))

    def own_values(self, i: int) -> dict[str, str]:
        tree = self.config.tree_of(self.template, i, self.cr_port)
        return {v.name: v.value for v in tree.get_parameter_values(self.varying)}

    async def read_reference(self, conn: asyncpg.Connection) -> None:
        for table in TABLES:
            rows = await conn.fetch(
                f"SELECT * FROM {table} WHERE device_id = $1"
                if table != "devices"
                else "SELECT * FROM devices WHERE id = $1",
                self.ref_id,
            )
            self.rows[table] = [dict(r) for r in rows]
        self.tree = json.loads(self.rows["device_parameters"][0]["tree"])
        by_name = {p["name"]: p for p in DEFAULT_POLICIES}
        names = {r["policy_id"]: r["policy_name"] for r in self.rows["parameter_sources"]}
        for name in names.values():
            for param in by_name[name]["spec"]["parameters"]:
                self.sets[templates.absolute(param["path"], self.root)] = param["value"]
        missing = {r["path"] for r in self.rows["parameter_sources"]} - set(self.sets)
        if missing:
            raise RuntimeError(f"the reference's values set by no shipped policy: {missing}")

    def policy_values(self, i: int, own: dict[str, str]) -> dict[str, str]:
        """What the shipped policies set on device i, in clear."""
        row = self.rows["devices"][0]
        fields = {
            "DeviceID.ID": self.id_of(i),
            "DeviceID.OUI": row["oui"],
            "DeviceID.ProductClass": row["product_class"],
            "DeviceID.SerialNumber": self.config.serial_of(i),
            "DeviceID.Manufacturer": row["manufacturer"],
            "SoftwareVersion": row["software_version"],
            "HardwareVersion": row["hardware_version"],
            "ProvisioningCode": row["provisioning_code"],
        }

        def value_of(path: str) -> str | None:
            return own.get(path, (self.tree.get(path) or {}).get("v"))

        ctx = templates.Context(self.id_of(i), self.root, fields, value_of, self.key)
        return {
            path: templates.render(templates.parse_template(text), ctx)
            for path, text in self.sets.items()
        }

    def device(self, i: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
        """(rows by table, the simulator's state) of device i."""
        own = self.own_values(i)
        dev, serial = self.id_of(i), self.config.serial_of(i)
        sets = self.policy_values(i, own)
        tree = dict(self.tree)
        for path, value in own.items():
            if path in tree:
                tree[path] = {**tree[path], "v": value}
        for path, value in sets.items():
            entry = tree[path]
            if is_secret_parameter(path, "xsd:" + entry.get("t", "string")):
                tree[path] = {**entry, "v": MASK, "x": self.sealer.seal(value, dev, path)}
            else:
                tree[path] = {**entry, "v": value}
        swap = {self.ref_id: dev, self.ref_serial: serial} | {
            self.ref_own[p]: v for p, v in own.items() if self.ref_own[p] != v
        }
        rows: dict[str, list[dict[str, Any]]] = {}
        for table, ref_rows in self.rows.items():
            out = []
            for r in ref_rows:
                r = {k: swap.get(v, v) if isinstance(v, str) else v for k, v in r.items()}
                if table == "device_parameters":
                    r["tree"] = orjson.dumps(tree).decode()  # COPY's binary jsonb takes text
                elif table == "parameter_sources":
                    r["value"] = sets[r["path"]] if r["value"] != MASK else MASK
                elif table == "connection_request_credentials":
                    pw = f"{self.root}ManagementServer.ConnectionRequestPassword"
                    r["password"] = tree[pw]["x"]
                out.append(r)
            rows[table] = out
        return rows, sets


def _same(
    table: str, a: list[dict[str, Any]], b: list[dict[str, Any]], clocked: frozenset[str]
) -> list[str]:
    """What differs between two devices' rows of one table, times aside (the
    rows' times, the tree's read times, and the values of the clock)."""
    times = TABLES[table]

    def norm(r: dict[str, Any]) -> dict[str, Any]:
        r = {k: v for k, v in r.items() if k not in times}
        if "tree" in r:
            tree = json.loads(r["tree"]) if isinstance(r["tree"], str) else r["tree"]
            r["tree"] = {
                p: {
                    k: v
                    for k, v in e.items()
                    if k not in _TIMES and not (k == "v" and p in clocked)
                }
                for p, e in tree.items()
            }
        return r

    key = ("path", "policy_id")
    a_sorted = sorted((norm(r) for r in a), key=lambda r: [str(r.get(k)) for k in key])
    b_sorted = sorted((norm(r) for r in b), key=lambda r: [str(r.get(k)) for k in key])
    if len(a_sorted) != len(b_sorted):
        return [f"{table}: {len(a_sorted)} rows predicted, {len(b_sorted)} stored"]
    diffs = []
    for x, y in zip(a_sorted, b_sorted, strict=True):
        for k in x.keys() | y.keys():
            if k == "tree":
                for p in x[k].keys() | y[k].keys():
                    if x[k].get(p) != y[k].get(p):
                        diffs.append(f"tree {p}: {x[k].get(p)} predicted, {y[k].get(p)} stored")
            elif x.get(k) != y.get(k):
                diffs.append(f"{table}.{k}: {x.get(k)!r} predicted, {y.get(k)!r} stored")
    return diffs


async def check_prediction(conn: asyncpg.Connection, known: KnownFleet, i: int) -> None:
    """Device i was bootstrapped for real: its predicted rows must be what is stored."""
    predicted, _ = known.device(i)
    diffs = []
    for table in TABLES:
        column = "id" if table == "devices" else "device_id"
        stored = [
            dict(r)
            for r in await conn.fetch(f"SELECT * FROM {table} WHERE {column} = $1", known.id_of(i))
        ]
        diffs += _same(table, predicted[table], stored, known.clocked)
    if diffs:
        raise AssertionError("seeded rows differ from a real bootstrap's: " + "; ".join(diffs[:20]))


async def check_credentials(
    conn: asyncpg.Connection, known: KnownFleet, state: dict[str, dict[str, str]]
) -> None:
    """The connection-request password the ACS keeps for a few seeded devices opens,
    with the installation's key, to the one their simulated CPE was given."""
    pw = f"{known.root}ManagementServer.ConnectionRequestPassword"
    rows = await conn.fetch(
        "SELECT d.serial_number, c.password FROM connection_request_credentials c"
        " JOIN devices d ON d.id = c.device_id ORDER BY d.serial_number LIMIT 3"
    )
    if not rows:
        raise AssertionError("no connection-request credentials seeded")
    for serial, sealed in rows:
        dev = device_id(known.config.oui, known.config.product_class, serial)
        if known.sealer.open(sealed, dev, pw) != state[serial][pw]:
            raise AssertionError(f"{serial}: the ACS's password is not the simulator's")


async def copy_devices(
    conn: asyncpg.Connection, known: KnownFleet, indexes: range, batch: int = 500
) -> dict[str, dict[str, str]]:
    """COPY the rows of every device in ``indexes``; the simulator's state of each."""
    state: dict[str, dict[str, str]] = {}
    columns = {t: list(known.rows[t][0]) for t in TABLES if known.rows[t]}
    columns["device_sessions"] = ["device_id", "last_inform"]
    for start in range(indexes.start, indexes.stop, batch):
        by_table: dict[str, list[tuple[Any, ...]]] = {t: [] for t in columns}
        for i in range(start, min(indexes.stop, start + batch)):
            rows, sets = known.device(i)
            state[known.config.serial_of(i)] = sets
            for t, cols in columns.items():
                by_table[t] += [tuple(r[c] for c in cols) for r in rows[t]]
        devs = by_table.pop("devices")
        heard = by_table.pop("device_sessions")
        others = {t: (columns[t], records) for t, records in by_table.items()}
        await storage.copy_known(conn, devs, heard, others, columns["devices"])
    return state


def settings_of(data_dir: Path) -> Settings:
    return Settings(data_dir=str(data_dir))


async def seed(
    dsn: str, config: FleetConfig, cr_port: int, data_dir: Path, ref: int, other: int
) -> tuple[KnownFleet, dict[str, dict[str, str]]]:
    """Devices 1..config.devices known to the ACS whose store is ``dsn`` (and whose
    data dir holds its sealing key); ``ref`` and ``other`` were bootstrapped for real."""
    conn = await asyncpg.connect(dsn)
    try:
        key = await conn.fetchval("SELECT value FROM acs_keys WHERE name = 'templates'")
        sealer = sealing_key.sealer(settings_of(data_dir))
        known = KnownFleet(config, cr_port, sealer, key, ref)
        await known.read_reference(conn)
        await check_prediction(conn, known, other)
        state = {}
        for i in (ref, other):
            state[config.serial_of(i)] = known.device(i)[1]
        low, high = config.first_serial, config.first_serial + config.devices
        real = sorted((ref, other))
        # as bench.storage loads: the trees' GIN index built once, not per row
        saved = await storage.drop_secondary_indexes(conn, tuple(TABLES))
        for span in (range(low, real[0]), range(real[0] + 1, real[1]), range(real[1] + 1, high)):
            if len(span):
                state |= await copy_devices(conn, known, span)
        await storage.rebuild_indexes_of(conn, saved)
        await check_credentials(conn, known, state)
    finally:
        await conn.close()
    return known, state
