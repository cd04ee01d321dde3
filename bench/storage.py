"""Storage per device and API filter latency over a large fleet (issue 9, targets A and B).

Creates a database ``bench_storage`` on the server of ACS_BENCH_DATABASE_URL
(an admin DSN), applies the migrations, loads N discovered TR-181 devices
with COPY, then measures:

A. bytes in PostgreSQL per device: devices + device_parameters with their
   indexes and TOAST, after VACUUM, and again after a churn round in which
   every device sends a periodic Inform changing a few values (autovacuum
   left to do its ordinary job);
B. GET /api/v1/devices?filter=<parameter> = "<value>" through a real
   `acs serve` with a viewer token: p50/p95 for values matching 0.1 % and
   10 % of the fleet, first page of 50.

    python -m bench.storage --devices 100000
    python -m bench.storage --quick            # 2,000 devices, a smoke run

The trees are what the ACS stores after a discovery (GetParameterNames on the
root, then GetParameterValues of every parameter), built with the pure twins
of the store's own write functions (acs.store.devices.apply_parameter_*), so
the stored format cannot drift from what a real session writes. Each device
has its own identity (serial, MACs, SSIDs, WAN address), its own discovery
time, and one of a few software versions and SSIDs, so a filter has a known
answer.

The last stdout line is one JSON object for the fleet benchmark runner.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg

from acs.core.secrets import is_secret_name
from acs.cwmp.messages import ParameterValueStruct
from acs.store import db, devices
from acs.store.ids import device_id
from bench import common
from cpe_simulator.datamodel import Identity, Template, load_template
from cpe_simulator.tree import ParameterTree

BIN = Path(sys.executable).parent
DB_NAME = "bench_storage"
STORAGE_GOAL_KB = 64.0
FILTER_GOAL_MS = 100.0
T0 = datetime(2026, 3, 1, tzinfo=UTC)
_TIME_SENTINEL = 9_999_999_999
_SLOT = re.compile(r"\\u0001(\d+)\\u0001|(?<![0-9])9999999999(?![0-9])")

OUI = "ACDE48"
PRODUCT_CLASS = "HGW"
SOFTWARE_PATH = "Device.DeviceInfo.SoftwareVersion"
SSID_PATH = "Device.WiFi.SSID.1.SSID"
#: (path, value, share of the fleet): what the filter measurement asks for
RARE_SOFTWARE = "2.2.0-rc1"
COMMON_SOFTWARE = "2.1.0"
RARE_SSID = "Operator-Lab"
COMMON_SSID = "Operator-Home"


# --------------------------------------------------------------------------- the fleet


def software_of(i: int) -> str:
    """Device i's software: 0.1 % on a release candidate, 10 % on 2.1.0, the rest spread."""
    if i % 1000 == 7:
        return RARE_SOFTWARE
    if i % 10 == 3:
        return COMMON_SOFTWARE
    return f"2.0.{i % 5}"


def ssid_override(i: int) -> str | None:
    """Device i's first SSID when an operator policy set it (0.1 % lab, 10 % home)."""
    if i % 1000 == 11:
        return RARE_SSID
    if i % 10 == 5:
        return COMMON_SSID
    return None  # the device's own default, derived from its MAC


def serial_of(i: int, prefix: str) -> str:
    return f"{prefix}{i:09d}"


def device_id_of(i: int, prefix: str = "SIM") -> str:
    return device_id(OUI, PRODUCT_CLASS, serial_of(i, prefix))


@dataclass(frozen=True, slots=True)
class FilterCase:
    name: str
    filter: str
    matches: Any  # (int) -> bool over device indexes


FILTER_CASES = (
    FilterCase(
        "SoftwareVersion 0.1%",
        f'{SOFTWARE_PATH} = "{RARE_SOFTWARE}"',
        lambda i: software_of(i) == RARE_SOFTWARE,
    ),
    FilterCase(
        "SoftwareVersion 10%",
        f'{SOFTWARE_PATH} = "{COMMON_SOFTWARE}"',
        lambda i: software_of(i) == COMMON_SOFTWARE,
    ),
    FilterCase(
        "WiFi.SSID.1.SSID 0.1%",
        f'{SSID_PATH} = "{RARE_SSID}"',
        lambda i: ssid_override(i) == RARE_SSID,
    ),
    FilterCase(
        "WiFi.SSID.1.SSID 10%",
        f'{SSID_PATH} = "{COMMON_SSID}"',
        lambda i: ssid_override(i) == COMMON_SSID,
    ),
)


class FleetBuilder:
    """Stored trees of discovered devices, fast enough for 100,000 of them.

    The simulator's full walk costs milliseconds per device, so the names and
    values are walked once on a reference device; per device only the
    parameters the template derives from the identity (serial, MACs, SSIDs,
    addresses, uptime) are read from that device's own simulated tree.
    """

    def __init__(self, count: int, prefix: str = "SIM", template: Template | None = None) -> None:
        self.template = template or load_template("tr181-gateway")
        self.prefix = prefix
        self.count = count
        ref = self._sim_tree(0)
        root = self.template.root
        self.root = root
        self.names = ref.get_parameter_names(root, False)
        self.values = ref.get_parameter_values([root])
        self.identity_paths = sorted(self.template.identity)
        self._index = {v.name: k for k, v in enumerate(self.values)}
        # secrets read back "" (the simulator hides them as CPEs do), and a
        # sentinel in their slot would be stored as the mask (acs.core.secrets)
        self.varying = sorted(
            p for p in {*self.identity_paths, SSID_PATH, SOFTWARE_PATH} if not is_secret_name(p)
        )
        self._pieces = self._json_template()
        self._reference = {v.name: v.value for v in self.values}

    def _json_template(self) -> list[str | int]:
        """The stored tree's JSON text as fixed pieces, value slots (ints) and time slots (-1).

        Built once from a tree written by the store's pure functions with
        sentinels where devices differ: a device is then one join, not 1,230
        dict merges and a JSON encoding (3 ms in Python, 50 minutes for
        100,000 devices on two shared cores).
        """
        from acs.store.db import _dumps

        values = list(self.values)
        for k, path in enumerate(self.varying):
            at = self._index[path]
            values[at] = ParameterValueStruct(path, f"\x01{k}\x01", values[at].xsd_type)
        tree: devices.Tree = {}
        sentinel = datetime.fromtimestamp(_TIME_SENTINEL, UTC)
        devices.apply_parameter_names(tree, self.root, False, self.names, sentinel)
        devices.apply_parameter_values(tree, values, sentinel, read=True)
        text = _dumps(tree)
        pieces: list[str | int] = []
        last = 0
        for m in _SLOT.finditer(text):
            pieces.append(text[last : m.start()])
            pieces.append(int(m.group(1)) if m.group(1) is not None else -1)
            last = m.end()
        pieces.append(text[last:])
        return pieces

    def device_json(self, i: int) -> tuple[str, datetime, dict[str, str], int]:
        """(tree as JSON text, discovery time, varying values, entries) of device i."""
        sim = self._sim_tree(i)
        varying = {v.name: v.value for v in sim.get_parameter_values(self.varying)}
        ssid = ssid_override(i)
        if ssid is not None:
            varying[SSID_PATH] = ssid
        at = self.discovered_at(i)
        epoch = str(int(at.timestamp()))
        slots = [json.dumps(varying[p], ensure_ascii=False)[1:-1] for p in self.varying]
        text = "".join(
            p if isinstance(p, str) else (epoch if p < 0 else slots[p]) for p in self._pieces
        )
        return text, at, varying, len(self.names)

    def discovered_at(self, i: int) -> datetime:
        # discoveries spread over a week: every device has its own timestamps
        return T0 + timedelta(seconds=(i * 604_800) // max(1, self.count))

    def _sim_tree(self, i: int) -> ParameterTree:
        serial = serial_of(i, self.prefix)
        identity = Identity.from_serial(
            serial, oui=OUI, product_class=PRODUCT_CLASS, software_version=software_of(i)
        )
        return ParameterTree(
            self.template,
            identity,
            acs_url="http://acs.example.net:7547/",
            connection_request_url=f"http://{identity.wan_ip()}:7547/cr/{serial}",
            connection_request_username=serial,
            # the simulator's clock: each device up for its own while
            clock=lambda: T0.timestamp() + 3600 + i % 86400,
        )

    def device(self, i: int) -> tuple[str, str, datetime, list[ParameterValueStruct], Any]:
        """(id, serial, discovery time, GetParameterValues answer, tree) of device i."""
        serial = serial_of(i, self.prefix)
        sim = self._sim_tree(i)
        values = list(self.values)
        for v in sim.get_parameter_values(self.identity_paths):
            values[self._index[v.name]] = v
        ssid = ssid_override(i)
        if ssid is not None:
            at = self._index[SSID_PATH]
            values[at] = ParameterValueStruct(SSID_PATH, ssid, values[at].xsd_type)
        at = self.discovered_at(i)
        tree: devices.Tree = {}
        devices.apply_parameter_names(tree, self.root, False, self.names, at)
        devices.apply_parameter_values(tree, values, at, read=True)
        return device_id(OUI, PRODUCT_CLASS, serial), serial, at, values, tree

    def device_row(self, i: int, at: datetime, varying: dict[str, str], entries: int) -> tuple:
        by_name = {**self._reference, **varying}
        serial = serial_of(i, self.prefix)
        return (
            device_id(OUI, PRODUCT_CLASS, serial),
            OUI,
            PRODUCT_CLASS,
            serial,
            "SimCPE",
            at,  # created_at
            at,  # last_boot
            at,  # last_bootstrap
            ["2 PERIODIC"],
            "192.0.2.1",
            by_name.get(f"{self.root}ManagementServer.ConnectionRequestURL"),
            by_name.get(SOFTWARE_PATH),
            by_name.get(f"{self.root}DeviceInfo.HardwareVersion"),
            by_name.get(f"{self.root}DeviceInfo.ProvisioningCode"),
            "1.4",
            entries,
        )


#: the devices columns a seeded row fills (bench.seed loads the same)
DEVICE_COPY_COLUMNS = (
    "id",
    "oui",
    "product_class",
    "serial_number",
    "manufacturer",
    "created_at",
    "last_boot",
    "last_bootstrap",
    "last_events",
    "remote_address",
    "connection_request_url",
    "software_version",
    "hardware_version",
    "provisioning_code",
    "cwmp_version",
    "parameter_count",
)


async def copy_known(
    conn: asyncpg.Connection,
    device_rows: list[tuple[Any, ...]],
    heard: list[tuple[str, datetime]],
    tables: dict[str, tuple[list[str] | tuple[str, ...], list[tuple[Any, ...]]]],
    device_columns: list[str] | tuple[str, ...] = DEVICE_COPY_COLUMNS,
) -> None:
    """COPY devices known as after their bootstrap, in one transaction: their rows,
    each one's session row (last heard at ``heard``'s time, no bootstrap owed), then
    the rows of ``tables`` (table -> columns, records), as bench.seed and
    bench.known_fleet load them."""
    async with conn.transaction():
        # devices first: their insert trigger makes the device_sessions rows
        await conn.copy_records_to_table("devices", records=device_rows, columns=device_columns)
        await conn.execute(
            "UPDATE device_sessions s SET last_inform = v.t, bootstrap_owed = false"
            " FROM unnest($1::text[], $2::timestamptz[]) v(id, t) WHERE s.device_id = v.id",
            [dev for dev, _ in heard],
            [at for _, at in heard],
        )
        for table, (columns, records) in tables.items():
            await conn.copy_records_to_table(table, records=records, columns=columns)


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


_builders: dict[tuple[int, str], FleetBuilder] = {}


def _build_batch(n: int, prefix: str, start: int, stop: int) -> tuple[list[tuple], list[tuple]]:
    """COPY rows of devices start..stop-1 (run in a worker process; its builder is cached)."""
    builder = _builders.get((n, prefix))
    if builder is None:
        builder = _builders[(n, prefix)] = FleetBuilder(n, prefix=prefix)
    dev_rows, tree_rows = [], []
    for i in range(start, stop):
        text, at, varying, entries = builder.device_json(i)
        if i == start:  # the fast path must stay the store's format: check a sample
            _, _, _, _, tree = builder.device(i)
            if json.loads(text) != tree:
                raise AssertionError(f"templated tree of device {i} differs from the store's")
        dev_rows.append(builder.device_row(i, at, varying, entries))
        tree_rows.append((device_id_of(i, prefix), text, at))
    return dev_rows, tree_rows


async def load_fleet(
    dsn: str,
    n: int,
    *,
    prefix: str = "SIM",
    batch: int = 500,
    workers: int = 2,
    rebuild_indexes: bool = True,
) -> FleetBuilder:
    """COPY n discovered devices into the database at ``dsn``.

    With ``rebuild_indexes`` the secondary indexes of the two tables are
    dropped for the load and rebuilt after it from their own definitions
    (what a bulk import does: one sorted build instead of n GIN insertions).
    """
    builder = FleetBuilder(n, prefix=prefix)
    # no jsonb codec on this connection: COPY's binary jsonb takes JSON text
    conn = await asyncpg.connect(dsn)
    try:
        saved = await drop_secondary_indexes(conn) if rebuild_indexes else []
        # trees are built in worker processes (a few ms each in Python) while
        # this one feeds COPY: the two overlap
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunks = list(_batches(n, batch))
            # a few batches ahead, not all: built trees are ~130 KB each
            ahead = [
                loop.run_in_executor(pool, _build_batch, n, prefix, c.start, c.stop)
                for c in chunks[: workers + 1]
            ]
            for k in range(len(chunks)):
                dev_rows, tree_rows = await ahead.pop(0)
                if k + len(ahead) + 1 < len(chunks):
                    c = chunks[k + len(ahead) + 1]
                    ahead.append(
                        loop.run_in_executor(pool, _build_batch, n, prefix, c.start, c.stop)
                    )
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "devices", records=dev_rows, columns=DEVICE_COPY_COLUMNS
                    )
                    await conn.copy_records_to_table(
                        "device_parameters",
                        records=tree_rows,
                        columns=("device_id", "tree", "updated_at"),
                    )
                    # heard 30 s after discovery; the rows are the insert trigger's
                    await conn.execute(
                        "UPDATE device_sessions s SET last_inform = d.created_at + interval '30 s',"
                        " bootstrap_owed = false"
                        " FROM devices d WHERE d.id = s.device_id AND s.last_inform IS NULL"
                        " AND d.id = ANY($1::text[])",
                        [r[0] for r in dev_rows],
                    )
        await rebuild_indexes_of(conn, saved)
    finally:
        await conn.close()
    return builder


async def drop_secondary_indexes(
    conn: asyncpg.Connection, tables: tuple[str, ...] = ("devices", "device_parameters")
) -> list[tuple[str, str]]:
    """Drop the secondary indexes of ``tables`` before a bulk load; (name, definition)
    of each, for rebuild_indexes_of (one sorted build instead of n GIN insertions)."""
    saved = [
        (r["indexname"], r["indexdef"])
        for r in await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i"
            " JOIN pg_class c ON c.relname = i.indexname"
            " JOIN pg_index x ON x.indexrelid = c.oid"
            " WHERE i.tablename = ANY($1::text[])"
            " AND NOT x.indisprimary AND NOT x.indisunique",
            list(tables),
        )
    ]
    for name, _ in saved:
        await conn.execute(f'DROP INDEX "{name}"')
    return saved


async def rebuild_indexes_of(conn: asyncpg.Connection, saved: list[tuple[str, str]]) -> None:
    if saved:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in saved:
            await conn.execute(definition)


# --------------------------------------------------------------------------- measuring A


_SIZES = """
SELECT c.relname AS name, 'table' AS kind,
       pg_table_size(c.oid) - COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0)
           AS bytes
FROM pg_class c WHERE c.relname = ANY($1::text[])
UNION ALL
SELECT c.relname || ' TOAST (with its index)', 'toast',
       COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0)
FROM pg_class c WHERE c.relname = ANY($1::text[])
UNION ALL
SELECT i.relname, 'index', pg_total_relation_size(i.oid)
FROM pg_class c JOIN pg_index x ON x.indrelid = c.oid JOIN pg_class i ON i.oid = x.indexrelid
WHERE c.relname = ANY($1::text[])
ORDER BY 3 DESC
"""


async def relation_sizes(conn: asyncpg.Connection) -> list[tuple[str, int]]:
    """(relation, bytes) of devices and device_parameters: heap, TOAST, every index.

    Every fork counted (free space and visibility maps too), so the parts add
    up to pg_total_relation_size.
    """
    rows = await conn.fetch(_SIZES, ["devices", "device_parameters"])
    return [(r["name"], r["bytes"]) for r in rows]


async def bytes_per_device(conn: asyncpg.Connection) -> tuple[float, list[tuple[str, int]], int]:
    sizes = await relation_sizes(conn)
    n = await conn.fetchval("SELECT count(*) FROM devices")
    total = await conn.fetchval(
        "SELECT pg_total_relation_size('devices') + pg_total_relation_size('device_parameters')"
    )
    # the breakdown must account for everything pg_total_relation_size counts
    assert sum(b for _, b in sizes) == total, (sizes, total)
    return total / max(1, n), sizes, n


async def churn(
    dsn: str,
    builder: FleetBuilder,
    n: int,
    *,
    rounds: int,
    concurrency: int = 4,
    sample: int | None = None,
    first_round: int = 0,
) -> dict[str, float]:
    """Every device sends ``rounds`` periodic Informs, each changing three values.

    Through the store's own upsert_from_inform, as the CWMP endpoint calls it:
    the WAN address and two radio values change, so the tree is rewritten
    (the case that costs: a TOASTed jsonb is written whole). ``sample``:
    only that many devices per round, chosen at random; ``first_round`` makes
    a later call change the values again instead of repeating them.
    """
    pool = await db.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    k = n if sample is None else min(n, sample)
    order = [
        (r, i)
        for r in range(first_round, first_round + rounds)
        for i in random.Random(r).sample(range(n), k)
    ]
    forced = builder.template.forced_inform
    wan = "Device.IP.Interface.2.IPv4Address.1.IPAddress"
    durations: list[float] = []

    async def one(r: int, i: int) -> None:
        serial = serial_of(i, builder.prefix)
        dev_id = device_id(OUI, PRODUCT_CLASS, serial)
        at = T0 + timedelta(days=8 + r, seconds=i % 86400)
        base = {v.name: v for v in builder.values}
        params = [base[p] for p in forced if p in base and p != wan]
        params += [
            ParameterValueStruct(wan, f"100.64.{r % 250}.{i % 250 + 1}", "xsd:string"),
            ParameterValueStruct(
                "Device.WiFi.Radio.1.Channel", str(1 + (i + r) % 11), "xsd:unsignedInt"
            ),
            ParameterValueStruct(
                "Device.DeviceInfo.UpTime", str(86_400 * (r + 1) + i), "xsd:unsignedInt"
            ),
        ]
        record = devices.InformRecord(
            device_id=dev_id,
            manufacturer="SimCPE",
            oui=OUI,
            product_class=PRODUCT_CLASS,
            serial_number=serial,
            events=["2 PERIODIC", "4 VALUE CHANGE"],
            remote_address="192.0.2.1",
            cwmp_version="1.4",
            parameters=params,
            at=at,
        )
        t = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            await devices.upsert_from_inform(conn, record)
        durations.append(time.perf_counter() - t)

    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for item in order:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            await one(*queue.get_nowait())

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await pool.close()
    wall = time.perf_counter() - started
    durations.sort()
    return {
        "informs": len(durations),
        "wall_s": wall,
        "per_s": len(durations) / wall,
        "p50_ms": 1000 * durations[len(durations) // 2],
        "p95_ms": 1000 * durations[int(len(durations) * 0.95)],
    }


# --------------------------------------------------------------------------- measuring B


@dataclass
class FilterResult:
    case: FilterCase
    expected_total: int
    expected_first_page: list[str]
    total: int = -1
    first_page: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def expected_matches(case: FilterCase, builder: FleetBuilder, n: int) -> list[str]:
    """Device ids the filter must return, in the API's default order (id)."""
    return sorted(device_id_of(i, builder.prefix) for i in range(n) if case.matches(i))


class AcsProcess:
    """`acs serve` on the bench database, with a viewer token."""

    def __init__(self, dsn: str, port: int) -> None:
        self.dsn = dsn
        self.port = port
        self.work = Path(tempfile.mkdtemp(prefix="acs-bench-storage-"))
        self.env = dict(
            os.environ,
            ACS_DATABASE_URL=dsn,
            ACS_DATA_DIR=str(self.work),
            ACS_CWMP_PORT=str(port),
            ACS_API_PORT=str(port + 1),
            ACS_FILES_PORT=str(port + 2),
            ACS_STUN_PORT="0",
            ACS_LOG_LEVEL="WARNING",
        )
        self.proc: subprocess.Popen[str] | None = None
        self.token = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port + 1}/api/v1"

    def start(self) -> None:
        self.token = subprocess.run(
            [
                *(str(BIN / "acs"), "token", "create", "--role", "viewer"),
                *("--name", f"bench-storage-{os.getpid()}-{time.monotonic_ns()}"),
            ],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        self.proc = subprocess.Popen(
            [str(BIN / "acs"), "serve"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:  # wait until it listens
            seen.append(line)
            if line.startswith("API"):
                break
        else:
            raise RuntimeError("acs serve exited:\n" + "".join(seen))
        # keep reading its output so a full pipe never blocks it
        asyncio.get_running_loop().run_in_executor(None, self._drain)
        # one 100,000-device run saw the API port refuse right after that
        # line: wait until it really accepts a connection
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port + 1), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("acs serve does not accept API connections") from None
                time.sleep(0.2)

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _line in self.proc.stdout:
            pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.work, ignore_errors=True)


async def measure_filters(
    acs: AcsProcess,
    builder: FleetBuilder,
    n: int,
    *,
    requests: int = 50,
    warmup: int = 3,
    limit: int = 50,
) -> list[FilterResult]:
    """p50/p95 of each filter case, and whether the API answered exactly the expected devices."""
    results = []
    headers = {"Authorization": f"Bearer {acs.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for case in FILTER_CASES:
            expected = expected_matches(case, builder, n)
            res = FilterResult(case, len(expected), expected[:limit])
            url = f"{acs.api_url}/devices?" + urlencode({"filter": case.filter, "limit": limit})
            for k in range(warmup + requests):
                t = time.perf_counter()
                async with http.get(url) as resp:
                    body = await resp.read()
                    status = resp.status
                elapsed = (time.perf_counter() - t) * 1000
                if status != 200:
                    raise RuntimeError(f"{case.filter}: HTTP {status} {body[:300]!r}")
                if k >= warmup:
                    res.latencies_ms.append(elapsed)
                if k == 0:
                    page = json.loads(body)
                    res.total = page["total"]
                    res.first_page = [item["id"] for item in page["items"]]
            results.append(res)
    return results


# --------------------------------------------------------------------------- the scenario


def _kb(b: float) -> str:
    return f"{b / 1024:,.1f} KB"


async def run(
    admin_dsn: str,
    n: int,
    *,
    churn_rounds: int = 1,
    requests: int = 50,
    port: int = 38547,
    db_name: str = DB_NAME,
    keep: bool = False,
    out: Any = print,
) -> dict[str, Any]:
    """The whole scenario; returns the runner's JSON object (plus details)."""
    await db.drop_database(admin_dsn, db_name)
    dsn = await db.ensure_database(admin_dsn, db_name)
    try:
        conn = await db.connect(dsn)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        t = time.perf_counter()
        builder = await load_fleet(dsn, n)
        load_s = time.perf_counter() - t
        conn = await db.connect(dsn)
        try:
            await conn.execute("VACUUM ANALYZE devices")
            await conn.execute("VACUUM ANALYZE device_parameters")
            per_device, sizes, count = await bytes_per_device(conn)
            tree_avg = await conn.fetchval(
                "SELECT avg(pg_column_size(tree)) FROM"
                " (SELECT tree FROM device_parameters LIMIT 2000) s"
            )
            params = await conn.fetchval(
                "SELECT avg(parameter_count)"
                " FROM (SELECT parameter_count FROM devices LIMIT 2000) s"
            )
        finally:
            await conn.close()
        out(
            f"loaded {count:,} devices in {load_s:.0f} s (~{params:.0f} entries per tree,"
            f" tree column {_kb(tree_avg)} on average)"
        )
        out("\nA. storage after VACUUM")
        out(f"{'relation':45} {'total':>12} {'per device':>12}")
        for name, b in sizes:
            out(f"{name:45} {b / 2**20:>10,.1f} MB {_kb(b / count):>12}")
        out(f"{'all':45} {per_device * count / 2**20:>10,.1f} MB {_kb(per_device):>12}")

        acs = AcsProcess(dsn, port)
        acs.start()
        try:
            filters = await measure_filters(acs, builder, n, requests=requests)
        finally:
            acs.stop()
        out(f"\nB. GET /devices?filter=..., first page of 50, {requests} requests each")
        out(f"{'case':24} {'matches':>8} {'p50 ms':>8} {'p95 ms':>8}  exact")
        for r in filters:
            exact = r.total == r.expected_total and r.first_page == r.expected_first_page
            out(
                f"{r.case.name:24} {r.total:>8,} {r.quantile(0.5):>8.1f} {r.quantile(0.95):>8.1f}"
                f"  {'yes' if exact else 'NO'}"
            )

        churned: dict[str, float] | None = None
        autovacuum = "?"
        after_churn = None
        if churn_rounds:
            churned = await churn(dsn, builder, n, rounds=churn_rounds)
            conn = await db.connect(dsn)
            try:
                after_churn = await bytes_per_device(conn)
                # a server with autovacuum off keeps every dead tree: say so
                autovacuum = await conn.fetchval("SHOW autovacuum")
                dead = await conn.fetch(
                    "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count"
                    " FROM pg_stat_user_tables WHERE relname IN ('devices', 'device_parameters')"
                    " UNION ALL SELECT 'TOAST of ' || c.relname, s.n_live_tup, s.n_dead_tup,"
                    " s.autovacuum_count FROM pg_class c JOIN pg_stat_all_tables s"
                    " ON s.relid = c.reltoastrelid WHERE c.relname = 'device_parameters'"
                )
            finally:
                await conn.close()
            out(
                f"\nchurn: {churned['informs']:,} periodic Informs changing 3 values"
                f" ({churn_rounds} per device) in {churned['wall_s']:.0f} s,"
                f" {churned['per_s']:.0f}/s, p50 {churned['p50_ms']:.1f} ms"
                f" p95 {churned['p95_ms']:.1f} ms per Inform write"
            )
            out(
                f"A'. storage after churn, autovacuum {autovacuum} on this server:"
                f" {_kb(after_churn[0])} per device"
            )
            for name, b in after_churn[1]:
                out(f"  {name:43} {b / 2**20:>10,.1f} MB {_kb(b / count):>12}")
            for r in dead:
                out(
                    f"  {r['relname']:43} live {r['n_live_tup']:>9,} dead {r['n_dead_tup']:>9,}"
                    f" autovacuums {r['autovacuum_count']}"
                )
    finally:
        if not keep:
            await db.drop_database(admin_dsn, db_name)

    worst = max(filters, key=lambda r: r.quantile(0.95))
    all_exact = all(
        r.total == r.expected_total and r.first_page == r.expected_first_page for r in filters
    )
    storage_notes = (
        f"{count:,} devices, ~{params:.0f} tree entries (TR-181 gateway); devices +"
        f" device_parameters + indexes + TOAST after VACUUM; tree column {_kb(tree_avg)}"
    )
    if after_churn is not None and churned is not None:
        storage_notes += (
            f"; after {churned['informs']:,} periodic Informs each rewriting a tree:"
            f" {_kb(after_churn[0])} per device (autovacuum {autovacuum})"
        )
    row_a = {
        "target": "storage per device (~1,000 params)",
        "goal": f"<= {STORAGE_GOAL_KB:.0f} KB",
        "measured": f"{per_device / 1024:.1f} KB",
        "value": round(per_device / 1024, 2),
        "met": per_device / 1024 <= STORAGE_GOAL_KB,
        "notes": storage_notes,
    }
    row_b = {
        "target": f"API filter over {n:,} devices, p95",
        "goal": f"<= {FILTER_GOAL_MS:.0f} ms",
        "measured": f"{worst.quantile(0.95):.1f} ms",
        "value": round(worst.quantile(0.95), 2),
        "met": worst.quantile(0.95) <= FILTER_GOAL_MS and all_exact,
        "notes": "; ".join(
            f"{r.case.filter} ({r.total:,} matches): p50 {r.quantile(0.5):.1f}"
            f" p95 {r.quantile(0.95):.1f} ms"
            for r in filters
        )
        + f"; first page of 50 with total, {requests} requests each"
        + ("" if all_exact else "; WRONG ANSWERS: see the table"),
    }
    return {
        "scenario": "storage",
        "rows": [row_a, row_b],
        "_filters": filters,
        "_sizes": sizes,
        "_count": count,
        "_prefix": builder.prefix,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="2,000 devices: a smoke run")
    ap.add_argument("--churn-rounds", type=int, default=1, help="periodic Informs per device")
    ap.add_argument("--requests", type=int, default=50, help="requests per filter case")
    ap.add_argument("--port", type=int, default=38547, help="CWMP port; API and files +1, +2")
    ap.add_argument("--keep", action="store_true", help="keep the database for a closer look")
    args = ap.parse_args(argv)
    n = 2_000 if args.quick else args.devices
    admin = common.admin_dsn()
    result = asyncio.run(
        run(
            admin,
            n,
            churn_rounds=args.churn_rounds,
            requests=args.requests,
            port=args.port,
            keep=args.keep,
        )
    )
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("_")}))


if __name__ == "__main__":
    main()
