"""Devices and their parameter trees.

A device's parameters live in ONE jsonb document (``device_parameters.tree``)
keyed by full parameter path; object paths end with ".". Each entry is a
compact object, keys absent when unknown::

    {"v": value, "t": xsd type without "xsd:", "w": writable, "n": notification,
     "a": [access list], "vt": ..., "at": ..., "nt": ...}

A secret's (acs.core.secrets) "v" is the mask and "x" its sealed value
(acs.core.sealing), so nothing that reads "v" ever sees a password.

``vt``/``at``/``nt`` are epoch seconds at which the value / attributes /
name+writable were last *learned to be what they are*: a read that confirms
what we already store does not move them. That is deliberate: a periodic
Inform repeating known values must not rewrite the document (PostgreSQL
rewrites a whole TOASTed jsonb on any change), and ``device_sessions.last_inform``
already says when the device was last heard from.

Every function takes an asyncpg connection; callers own transactions. The few
functions that read-modify-write the tree take the row lock inside a
(sub)transaction of their own so they are safe either way.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from acs.core.secrets import MASK, is_sealed, is_secret_parameter, mask_value
from acs.cwmp.messages import (
    ParameterAttributeStruct,
    ParameterInfoStruct,
    ParameterValueStruct,
)

Tree = dict[str, dict[str, Any]]

ROOTS = ("InternetGatewayDevice.", "Device.")

#: Inform parameters copied to device columns, by path below the root object
_HOT_PARAMETERS = {
    "DeviceInfo.SoftwareVersion": "software_version",
    "DeviceInfo.HardwareVersion": "hardware_version",
    "DeviceInfo.ProvisioningCode": "provisioning_code",
    "ManagementServer.ConnectionRequestURL": "connection_request_url",
}
_HOT_BY_PATH = {root + rest: column for root in ROOTS for rest, column in _HOT_PARAMETERS.items()}

_OWN_COLUMNS = (
    "id, oui, product_class, serial_number, manufacturer, created_at, last_boot,"
    " last_bootstrap, last_events, remote_address, connection_request_url, software_version,"
    " hardware_version, provisioning_code, cwmp_version, tags, parameter_count"
)
#: the device row with its presence and lease (device_sessions, migration 0024)
DEVICE_FROM = "devices d LEFT JOIN device_sessions s ON s.device_id = d.id"
_DEVICE_COLUMNS = (
    ", ".join(f"d.{c.strip()}" for c in _OWN_COLUMNS.split(","))
    + ", s.last_inform, s.session_id, s.session_expires_at"
)


@dataclass(slots=True)
class DeviceRecord:
    id: str
    oui: str
    product_class: str
    serial_number: str
    manufacturer: str
    created_at: datetime
    last_inform: datetime | None
    last_boot: datetime | None
    last_bootstrap: datetime | None
    last_events: list[str]
    remote_address: str | None
    connection_request_url: str | None
    software_version: str | None
    hardware_version: str | None
    provisioning_code: str | None
    cwmp_version: str | None
    tags: list[str]
    session_id: str | None
    session_expires_at: datetime | None
    parameter_count: int

    @classmethod
    def from_row(cls, row: asyncpg.Record | dict[str, Any]) -> DeviceRecord:
        return cls(
            id=row["id"],
            oui=row["oui"],
            product_class=row["product_class"],
            serial_number=row["serial_number"],
            manufacturer=row["manufacturer"],
            created_at=row["created_at"],
            last_inform=row["last_inform"],
            last_boot=row["last_boot"],
            last_bootstrap=row["last_bootstrap"],
            last_events=list(row["last_events"]),
            remote_address=row["remote_address"],
            connection_request_url=row["connection_request_url"],
            software_version=row["software_version"],
            hardware_version=row["hardware_version"],
            provisioning_code=row["provisioning_code"],
            cwmp_version=row["cwmp_version"],
            tags=list(row["tags"]),
            session_id=row["session_id"],
            session_expires_at=row["session_expires_at"],
            parameter_count=row["parameter_count"],
        )


@dataclass(slots=True)
class ParameterRecord:
    value: str | None
    xsd_type: str | None  # "xsd:"-prefixed, as on the wire
    writable: bool | None
    notification: int | None
    access_list: list[str] | None
    value_at: datetime | None
    attributes_at: datetime | None
    names_at: datetime | None
    object: bool
    sealed: str | None = None  # a secret's sealed value; ``value`` is then the mask

    @classmethod
    def from_entry(cls, path: str, entry: dict[str, Any]) -> ParameterRecord:
        access = entry.get("a")
        return cls(
            value=mask_value(path, entry.get("v"), entry.get("t")),
            xsd_type=_long_type(entry.get("t")),
            writable=entry.get("w"),
            notification=entry.get("n"),
            access_list=list(access) if access is not None else None,
            value_at=_from_epoch(entry.get("vt")),
            attributes_at=_from_epoch(entry.get("at")),
            names_at=_from_epoch(entry.get("nt")),
            object=path.endswith("."),
            sealed=entry.get("x"),
        )


@dataclass(slots=True)
class InformRecord:
    device_id: str
    manufacturer: str
    oui: str
    product_class: str
    serial_number: str
    events: list[str]
    remote_address: str | None
    cwmp_version: str
    parameters: list[ParameterValueStruct]
    at: datetime


# --------------------------------------------------------------------------- helpers


def _short_type(xsd_type: str) -> str:
    return xsd_type[4:] if xsd_type.startswith("xsd:") else xsd_type


def _long_type(short: str | None) -> str | None:
    if short is None or ":" in short:
        return short
    return "xsd:" + short


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


@functools.lru_cache(maxsize=4096)
def _from_epoch(seconds: int | float | None) -> datetime | None:
    # cached: a tree's ~1,000 entries share a handful of discovery and read
    # times, and building the datetime was a fifth of the ACS's CPU in a boot
    # storm (the provisioning policies read the whole tree)
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _value_patch(values: list[ParameterValueStruct]) -> dict[str, dict[str, str | None]]:
    return {p.name: _entry_patch(p) for p in values}


def _entry_patch(p: ParameterValueStruct) -> dict[str, str | None]:
    if not p.value or not is_secret_parameter(p.name, p.xsd_type):
        # an empty secret read back keeps the sealed copy ("x"): CPEs answer
        # "" for every password they hold (TR-069), so "" says nothing new
        return {"v": p.value, "t": _short_type(p.xsd_type)}
    # a secret is never stored in clear: callers seal it (acs.core.sealing) for
    # the ACS's own use; one that reaches here unsealed is only masked
    return {"v": MASK, "t": _short_type(p.xsd_type), "x": p.value if is_sealed(p.value) else None}


def _object_path(name: str) -> str:
    return name if name.endswith(".") else name + "."


# The value merge, shared by the Inform hot path and GetParameterValues: only
# entries whose value or type differ are rewritten (with a new "vt"), and when
# none differ no row is touched at all. $1 device id, $2 patch, $3 epoch, $4 at.
#
# {skip}: a condition under which the tree is neither read nor locked (the
# Inform digest of acs.store.sessions); "false" everywhere else. cur's xmin and
# ctid name the row version the merge read.
_MERGE_VALUES_READ_CTES = """
cur AS (
    SELECT tree, xmin, ctid FROM device_parameters WHERE device_id = $1 AND NOT {skip} FOR UPDATE
),
patch AS (
    SELECT p.key,
           COALESCE((SELECT tree FROM cur) -> p.key, '{}'::jsonb) || p.value
               || jsonb_build_object('vt', $3::bigint) AS entry
    FROM jsonb_each($2::jsonb) AS p
    -- the gate first: one containment test on the tree tells that nothing
    -- changed (a periodic Inform, mostly); each "tree -> key" below detoasts
    -- and decompresses the whole tree again, about 0.1 ms a key at 1,000 entries
    WHERE NOT {skip}
      AND ({touch} OR NOT COALESCE((SELECT tree FROM cur) @> $2::jsonb, false))
      AND ({touch}
       OR ((SELECT tree FROM cur) -> p.key -> 'v') IS DISTINCT FROM (p.value -> 'v')
       OR ((SELECT tree FROM cur) -> p.key -> 't') IS DISTINCT FROM (p.value -> 't')
       OR ((SELECT tree FROM cur) -> p.key -> 'x') IS DISTINCT FROM (p.value -> 'x'))
),
merged AS (
    SELECT COALESCE((SELECT tree FROM cur), '{}'::jsonb) || jsonb_object_agg(key, entry) AS tree,
           count(*) AS changed
    FROM patch
    HAVING count(*) > 0
),
cnt AS (
    SELECT (SELECT count(*) FROM jsonb_object_keys(merged.tree))::int AS n FROM merged
),
"""

# ...and the write of the merged tree, when {guard} holds
TREE_WRITE_CTE = """
written AS (
    INSERT INTO device_parameters AS dp (device_id, tree, updated_at)
    SELECT $1, tree, $4 FROM merged WHERE {guard}
    ON CONFLICT (device_id) DO UPDATE SET tree = EXCLUDED.tree, updated_at = EXCLUDED.updated_at
    RETURNING 1
)
"""

# The device columns an Inform sets, from a row source ``{src}``: EXCLUDED in the
# upsert below, the parameter row of acs.store.sessions.open_session. When the
# Inform was last heard is not one of them: it moves every session and lives
# in the narrow device_sessions row (migration 0024).
_INFORM_PAIRS = (
    ("oui", "{src}.oui"),
    ("product_class", "{src}.product_class"),
    ("serial_number", "{src}.serial_number"),
    ("manufacturer", "{src}.manufacturer"),
    ("last_boot", "COALESCE({src}.last_boot, d.last_boot)"),
    ("last_bootstrap", "COALESCE({src}.last_bootstrap, d.last_bootstrap)"),
    # an empty Event list (firmware that reloaded its configuration sends one)
    # says nothing happened: it must not erase the events that did
    (
        "last_events",
        "CASE WHEN cardinality({src}.last_events) > 0"
        " THEN {src}.last_events ELSE d.last_events END",
    ),
    ("remote_address", "COALESCE({src}.remote_address, d.remote_address)"),
    ("connection_request_url", "COALESCE({src}.connection_request_url, d.connection_request_url)"),
    ("software_version", "COALESCE({src}.software_version, d.software_version)"),
    ("hardware_version", "COALESCE({src}.hardware_version, d.hardware_version)"),
    ("provisioning_code", "COALESCE({src}.provisioning_code, d.provisioning_code)"),
    ("cwmp_version", "{src}.cwmp_version"),
    ("parameter_count", "COALESCE((SELECT n FROM cnt), d.parameter_count)"),
)
INFORM_SET = ",\n    ".join(f"{column} = {value}" for column, value in _INFORM_PAIRS)
# ...and whether they differ from what the row ``d`` holds: a periodic Inform
# mostly repeats them, and then the device row is not written at all
INFORM_CHANGED = (
    "ROW("
    + ", ".join(f"d.{column}" for column, _ in _INFORM_PAIRS)
    + ") IS DISTINCT FROM ROW("
    + ", ".join(value for _, value in _INFORM_PAIRS)
    + ")"
)

# The parameters of inform_args(), as a row with the devices columns' names
INFORM_ROW = """(SELECT $5::text AS oui, $6::text AS product_class, $7::text AS serial_number,
        $8::text AS manufacturer, $4::timestamptz AS last_inform,
        $9::timestamptz AS last_boot, $10::timestamptz AS last_bootstrap,
        $11::text[] AS last_events, $12::text AS remote_address,
        $13::text AS connection_request_url, $14::text AS software_version,
        $15::text AS hardware_version, $16::text AS provisioning_code,
        $17::text AS cwmp_version)"""

# An Inform's values: merged into the tree when one differs from the stored one
# ({skip} left for the caller to fill)
INFORM_TREE_READ_CTES = _MERGE_VALUES_READ_CTES.replace("{touch}", "false")
_MERGE_VALUES_CTES_TEMPLATE = _MERGE_VALUES_READ_CTES.replace(
    "{skip}", "false"
) + TREE_WRITE_CTE.replace("{guard}", "true")

_UPSERT_FROM_INFORM = f"""
WITH {_MERGE_VALUES_CTES_TEMPLATE.replace("{touch}", "false")}
INSERT INTO devices AS d (
    id, oui, product_class, serial_number, manufacturer, created_at, last_boot,
    last_bootstrap, last_events, remote_address, connection_request_url, software_version,
    hardware_version, provisioning_code, cwmp_version, parameter_count)
VALUES ($1, $5, $6, $7, $8, $4, $9, $10, $11, $12, $13, $14, $15, $16, $17,
        COALESCE((SELECT n FROM cnt), 0))
ON CONFLICT (id) DO UPDATE SET {INFORM_SET.format(src="EXCLUDED")}
RETURNING {_OWN_COLUMNS}, (xmax = 0) AS created
"""

# ...and when it was heard, in the row the insert's trigger gave a new device
_HEARD = """
UPDATE device_sessions SET last_inform = $2 WHERE device_id = $1
RETURNING last_inform, session_id, session_expires_at
"""

_MERGE_VALUES = f"""
WITH {_MERGE_VALUES_CTES_TEMPLATE.replace("{touch}", "$5::bool")},
counted AS (
    UPDATE devices SET parameter_count = (SELECT n FROM cnt)
    WHERE id = $1 AND EXISTS (SELECT 1 FROM cnt) AND parameter_count <> (SELECT n FROM cnt)
    RETURNING 1
)
SELECT COALESCE((SELECT changed FROM merged), 0)::int
"""


# --------------------------------------------------------------------------- devices


def inform_args(rec: InformRecord) -> tuple[Any, ...]:
    """$1..$17 of an Inform's statements (INFORM_TREE_CTES, INFORM_ROW)."""
    hot: dict[str, str] = {}
    for p in rec.parameters:
        column = _HOT_BY_PATH.get(p.name)
        if column is not None:
            hot[column] = p.value
    return (
        rec.device_id,
        _value_patch(rec.parameters),
        _epoch(rec.at),
        rec.at,
        rec.oui,
        rec.product_class,
        rec.serial_number,
        rec.manufacturer,
        rec.at if "1 BOOT" in rec.events else None,
        rec.at if "0 BOOTSTRAP" in rec.events else None,
        rec.events,
        rec.remote_address,
        hot.get("connection_request_url"),
        hot.get("software_version"),
        hot.get("hardware_version"),
        hot.get("provisioning_code"),
        rec.cwmp_version,
    )


# inform_args() by name, for statements of many Informs (jsonb_to_recordset)
_INFORM_ARG_NAMES = (
    "device_id",
    "patch",
    "epoch",
    "at",
    "oui",
    "product_class",
    "serial_number",
    "manufacturer",
    "last_boot",
    "last_bootstrap",
    "last_events",
    "remote_address",
    "connection_request_url",
    "software_version",
    "hardware_version",
    "provisioning_code",
    "cwmp_version",
)


_TIMES = frozenset({"at", "last_boot", "last_bootstrap"})


def inform_fields(rec: InformRecord) -> dict[str, Any]:
    """inform_args() as a JSON object; times as text, which either JSON encoder of
    acs.store.db takes."""
    fields = dict(zip(_INFORM_ARG_NAMES, inform_args(rec), strict=True))
    for name in _TIMES:
        if fields[name] is not None:
            fields[name] = fields[name].isoformat()
    return fields


async def upsert_from_inform(
    conn: asyncpg.Connection, rec: InformRecord
) -> tuple[DeviceRecord, bool]:
    """Record an Inform in one round trip; return (device, created).

    The device columns are always updated, and last_inform in device_sessions
    (a second statement: the row is the insert trigger's); the parameter tree
    only when an Inform value differs from the stored one.
    """
    row = await conn.fetchrow(_UPSERT_FROM_INFORM, *inform_args(rec))
    assert row is not None
    heard = await conn.fetchrow(_HEARD, rec.device_id, rec.at)
    assert heard is not None
    return DeviceRecord.from_row({**dict(row), **dict(heard)}), bool(row["created"])


async def get_device(conn: asyncpg.Connection, device_id: str) -> DeviceRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_DEVICE_COLUMNS} FROM {DEVICE_FROM} WHERE d.id = $1", device_id
    )
    return None if row is None else DeviceRecord.from_row(row)


async def delete_device(conn: asyncpg.Connection, device_id: str) -> bool:
    """Delete a device with its tree and tasks; False if it did not exist."""
    deleted = await conn.fetchval("DELETE FROM devices WHERE id = $1 RETURNING 1", device_id)
    return deleted is not None


# --------------------------------------------------------------------------- the tree, in memory
#
# Pure versions of the writes below, for code that builds stored trees without
# a round trip per change (bench.storage loads 100,000 devices with them).
# tests/integration/test_bench_storage.py checks they produce exactly what the
# SQL merge and the read-modify-write paths store.


def apply_parameter_values(
    tree: Tree, values: list[ParameterValueStruct], at: datetime, *, read: bool = False
) -> int:
    """What merge_parameter_values stores, applied to ``tree`` in place; the entries written."""
    return apply_value_patch(tree, _value_patch(values), _epoch(at), read=read)


def apply_value_patch(
    tree: Tree, patch: dict[str, dict[str, Any]], now: int, *, read: bool = False
) -> int:
    """``patch`` (entries as _value_patch makes them) merged into ``tree`` in place,
    each written entry read at ``now`` (epoch seconds); the entries written."""
    changed = 0
    for name, entry_patch in patch.items():
        entry = tree.get(name)
        if (
            read
            or entry is None
            or entry.get("v") != entry_patch["v"]
            or entry.get("t") != entry_patch["t"]
            or entry.get("x") != entry_patch.get("x")
        ):
            tree[name] = {**(entry or {}), **entry_patch, "vt": now}
            changed += 1
    return changed


def apply_parameter_names(
    tree: Tree,
    parameter_path: str,
    next_level: bool,
    infos: list[ParameterInfoStruct],
    at: datetime,
) -> bool:
    """What merge_parameter_names stores, applied to ``tree`` in place; True if it changed."""
    return _apply_names(tree, parameter_path, next_level, {i.name: i.writable for i in infos}, at)


def _apply_names(
    tree: Tree, parameter_path: str, next_level: bool, listed: dict[str, bool], at: datetime
) -> bool:
    now = _epoch(at)
    path = parameter_path
    changed = False
    if path == "" or path.endswith("."):
        for key in [k for k in tree if k.startswith(path) and k != path]:
            if next_level:
                rest = key[len(path) :]
                dot = rest.find(".")
                child = path + (rest if dot < 0 else rest[: dot + 1])
                gone = child not in listed
            else:
                gone = key not in listed
            if gone:
                del tree[key]
                changed = True
    for name, writable in listed.items():
        entry = tree.get(name)
        if entry is None:
            tree[name] = {"w": writable, "nt": now}
            changed = True
        elif entry.get("w") != writable or "nt" not in entry:
            entry["w"] = writable
            entry["nt"] = now
            changed = True
    return changed


# --------------------------------------------------------------------------- reads held


class PendingReads:
    """GetParameterNames/Values answers of one plan, held until the plan ends and
    then written to the tree in ONE read-modify-write (merge_pending_reads).

    A discovery used to write the device's whole tree once per answer (the
    names, then the values: each a new ~24 KB TOASTed document and all its GIN
    entries); now it writes it once, and a discovery cut mid-way (the CPE gone)
    writes nothing, so the next session finds the tree undiscovered and starts
    again. Each answer is held as the store's own patch, JSON compressed
    (about a tenth of the answer's size): a session waiting on its CPE holds
    kilobytes, not the ~1,400 objects of a decoded answer.
    """

    __slots__ = ("held", "size")

    def __init__(self) -> None:
        self.held: list[tuple[bool, bytes]] = []  # (is names, packed answer), in order
        self.size = 0  # packed bytes held

    def __bool__(self) -> bool:
        return bool(self.held)

    def add_names(
        self, parameter_path: str, next_level: bool, infos: Iterable[ParameterInfoStruct]
    ) -> None:
        listed = [[i.name, i.writable] for i in infos]
        self._hold(True, [parameter_path, next_level, listed])

    def add_values(self, values: list[ParameterValueStruct]) -> None:
        """``values`` as they are to be stored: secrets already sealed."""
        if values:
            self._hold(False, _value_patch(values))

    def _hold(self, names: bool, data: Any) -> None:
        packed = zlib.compress(orjson.dumps(data), 1)
        self.held.append((names, packed))
        self.size += len(packed)

    def take(self) -> list[tuple[bool, bytes]]:
        held, self.held, self.size = self.held, [], 0
        return held


def apply_pending_reads(tree: Tree, held: list[tuple[bool, bytes]], at: datetime) -> bool:
    """What merge_pending_reads stores, applied to ``tree`` in place; True if it changed."""
    changed = False
    now = _epoch(at)
    for names, packed in held:
        data = orjson.loads(zlib.decompress(packed))
        if names:
            path, next_level, listed = data
            changed |= _apply_names(tree, path, next_level, dict(listed), at)
        else:
            # an explicit read: every value's read time moves (merge_parameter_values)
            changed |= apply_value_patch(tree, data, now, read=True) > 0
    return changed


async def merge_pending_reads(
    conn: asyncpg.Connection, device_id: str, held: list[tuple[bool, bytes]], at: datetime
) -> None:
    """Write held answers (PendingReads.take) in the order they came, as one tree write."""
    if not held:
        return
    if not any(names for names, _ in held):
        # values only (a job's or a policy's few reads): merged in SQL, so the
        # device's whole tree does not travel to the ACS and back for them
        patch: dict[str, dict[str, Any]] = {}
        for _, packed in held:
            patch.update(orjson.loads(zlib.decompress(packed)))
        await conn.fetchval(_MERGE_VALUES, device_id, patch, _epoch(at), at, True)
        return
    await _mutate_tree(conn, device_id, at, lambda tree: apply_pending_reads(tree, held, at))


# --------------------------------------------------------------------------- parameters


async def get_parameters(
    conn: asyncpg.Connection, device_id: str, prefix: str = ""
) -> dict[str, ParameterRecord]:
    """Parameters and objects whose path starts with ``prefix`` (all when empty)."""
    tree: Tree | None = await conn.fetchval(
        "SELECT tree FROM device_parameters WHERE device_id = $1", device_id
    )
    if not tree:
        return {}
    return {
        path: ParameterRecord.from_entry(path, entry)
        for path, entry in tree.items()
        if path.startswith(prefix)
    }


# true once a GetParameterNames answer is in the tree (entries with a "nt")
DISCOVERED = "jsonb_path_exists(tree, '$.*.nt')"


async def tree_is_empty(conn: asyncpg.Connection, device_id: str) -> bool:
    """True until a GetParameterNames has told us the device's parameter names.

    Values merged from Informs alone do not count: they are a handful of
    parameters and say nothing about the rest of the data model, so a device
    that has only ever sent Informs still needs its discovery.
    """
    learned = await conn.fetchval(
        f"SELECT {DISCOVERED} FROM device_parameters WHERE device_id = $1", device_id
    )
    return not learned


async def merge_parameter_values(
    conn: asyncpg.Connection,
    device_id: str,
    values: list[ParameterValueStruct],
    at: datetime,
    *,
    read: bool = False,
) -> int:
    """Store values from the CPE; return how many entries were written.

    ``read=True`` marks an explicit read (a GetParameterValues answer): every
    value's read time moves to ``at`` even when the value is unchanged, so
    freshness rules can tell how old a value is. Without it (Inform values,
    values we set) only changed entries are written, which keeps periodic
    Informs from rewriting the tree.
    """
    if not values:
        return 0
    changed: int = await conn.fetchval(
        _MERGE_VALUES, device_id, _value_patch(values), _epoch(at), at, read
    )
    return changed


async def merge_parameter_names(
    conn: asyncpg.Connection,
    device_id: str,
    parameter_path: str,
    next_level: bool,
    infos: list[ParameterInfoStruct],
    at: datetime,
) -> None:
    """Store a GetParameterNamesResponse for ``parameter_path``.

    The response is the CPE's complete answer for that part of its tree, so
    what it did not list is gone: with next_level=False every entry below the
    path that is not listed is deleted; with next_level=True every child not
    listed is deleted together with its subtree.
    """

    def apply(tree: Tree) -> bool:
        return apply_parameter_names(tree, parameter_path, next_level, infos, at)

    await _mutate_tree(conn, device_id, at, apply)


async def merge_parameter_attributes(
    conn: asyncpg.Connection,
    device_id: str,
    attrs: list[ParameterAttributeStruct],
    at: datetime,
) -> None:
    """Store a GetParameterAttributesResponse (notification and access list)."""
    now = _epoch(at)

    def apply(tree: Tree) -> bool:
        changed = False
        for attr in attrs:
            entry = tree.setdefault(attr.name, {})
            access = list(attr.access_list)
            if entry.get("n") != attr.notification or entry.get("a") != access or "at" not in entry:
                entry["n"] = attr.notification
                entry["a"] = access
                entry["at"] = now
                changed = True
        return changed

    await _mutate_tree(conn, device_id, at, apply)


async def add_object_instance(
    conn: asyncpg.Connection, device_id: str, object_name: str, instance_number: int, at: datetime
) -> None:
    """Record the instance an AddObjectResponse created (its parameters come with a refresh)."""
    key = f"{_object_path(object_name)}{instance_number}."

    def apply(tree: Tree) -> bool:
        if key in tree:
            return False
        tree[key] = {}
        return True

    await _mutate_tree(conn, device_id, at, apply)


async def delete_object(conn: asyncpg.Connection, device_id: str, object_name: str) -> None:
    """Remove an object instance and its whole subtree (after DeleteObjectResponse)."""
    prefix = _object_path(object_name)

    def apply(tree: Tree) -> bool:
        doomed = [k for k in tree if k.startswith(prefix)]
        for key in doomed:
            del tree[key]
        return bool(doomed)

    await _mutate_tree(conn, device_id, datetime.now(UTC), apply)


async def _mutate_tree(
    conn: asyncpg.Connection, device_id: str, at: datetime, apply: Callable[[Tree], bool]
) -> bool:
    """Read-modify-write the tree under its row lock; write only if ``apply`` changed it."""
    async with conn.transaction():  # a savepoint when the caller has a transaction
        tree: Tree | None = await conn.fetchval(
            "SELECT tree FROM device_parameters WHERE device_id = $1 FOR UPDATE", device_id
        )
        if tree is None:
            tree = {}
        if not apply(tree):
            return False
        await conn.execute(
            """
            WITH written AS (
                INSERT INTO device_parameters (device_id, tree, updated_at) VALUES ($1, $2, $3)
                ON CONFLICT (device_id) DO UPDATE
                    SET tree = EXCLUDED.tree, updated_at = EXCLUDED.updated_at
                RETURNING 1
            )
            UPDATE devices SET parameter_count = $4 WHERE id = $1 AND parameter_count <> $4
            """,
            device_id,
            tree,
            at,
            len(tree),
        )
        return True
