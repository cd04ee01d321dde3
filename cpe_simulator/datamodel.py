"""Device data-model templates and per-device identity for the simulator.

A template (schemas/<name>.json, generated from the Broadband Forum XML by
schemas/generate_templates.py) is parsed once per process and shared by every
simulated device: all its strings are interned and its definitions are frozen,
so ten thousand devices cost one copy of the model.

The template is kept in *pattern* form ("Device.WiFi.SSID.{i}.") plus the list
of instances each table starts with; a device only stores what differs (see
cpe_simulator.tree).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any, Literal

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
TEMPLATE_NAMES = ("tr181-gateway", "tr098-gateway")

ObjectKind = Literal["object", "table", "instance"]
_intern = sys.intern


@dataclass(frozen=True, slots=True)
class Facets:
    """Value constraints of one parameter, from the model's <syntax>."""

    enum: frozenset[str] | None = None
    ranges: tuple[tuple[int | None, int | None], ...] = ()
    sizes: tuple[tuple[int | None, int | None], ...] = ()
    is_list: bool = False
    item_type: str = ""  # the xsd type of each list item
    list_sizes: tuple[tuple[int | None, int | None], ...] = ()
    # enumerationRef: allowed values are the items of a sibling list parameter
    # (e.g. ModeEnabled in ModesSupported), plus an optional null value.
    enum_ref: str = ""
    enum_null: str | None = None


@dataclass(frozen=True, slots=True)
class ParamDef:
    """A parameter definition, shared by every instance and every device."""

    name: str  # relative to its object, e.g. "SSID"
    xsd_type: str
    writable: bool
    default: str  # for instances the ACS creates; template instances may differ
    facets: Facets | None = None
    hidden: bool = False  # read back as "" (passwords, keys)
    command: bool = False  # a trigger: accepted by SPV, never stored
    active_notify: str = "normal"  # "canDeny" | "forceEnabled" | "forceDefaultEnabled"
    counts: str | None = None  # "<Table>." when this is that table's NumberOfEntries

    @property
    def default_notification(self) -> int:
        return 2 if self.active_notify in ("forceEnabled", "forceDefaultEnabled") else 0


@dataclass(frozen=True, slots=True)
class ObjectDef:
    """An object pattern: a single object, a table ("X.") or a table's instance ("X.{i}.")."""

    pattern: str
    kind: ObjectKind
    writable: bool  # table: AddObject allowed; instance: DeleteObject allowed
    max_entries: int | None = None
    params: tuple[ParamDef, ...] = ()
    params_by_name: dict[str, ParamDef] = field(default_factory=dict)
    children: tuple[str, ...] = ()  # relative names of child objects/tables, e.g. "Stats."


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    root: str
    data_model: str
    objects: dict[str, ObjectDef]
    instances: dict[str, tuple[int, ...]]  # concrete table path -> instance numbers at start
    defaults: dict[str, str]  # concrete parameter path -> value where it differs from ParamDef
    identity: dict[str, str]  # concrete parameter path -> identity key ("serial_number", "mac:3")
    forced_inform: tuple[str, ...]
    parameter_count: int  # concrete parameters of a fresh device

    def object_def(self, pattern: str) -> ObjectDef | None:
        return self.objects.get(pattern)


def pattern_of(path: str) -> str:
    """Concrete path -> pattern: instance numbers become ``{i}``."""
    return ".".join("{i}" if seg.isdigit() else seg for seg in path.split("."))


def _parent(pattern: str) -> tuple[str, str]:
    """Pattern -> (parent pattern, relative child name) for objects and tables.

    'A.B.{i}.C.' -> ('A.B.{i}.', 'C.'); 'A.B.' -> ('A.', 'B.').
    """
    trimmed = pattern[:-1]
    cut = trimmed.rfind(".") + 1
    return pattern[:cut], pattern[cut:]


def _pairs(rows: Any) -> tuple[tuple[int | None, int | None], ...]:
    return tuple((lo, hi) for lo, hi in rows)


def _facets(raw: dict[str, Any] | None) -> tuple[Facets | None, dict[str, Any]]:
    if not raw:
        return None, {}
    facets: Facets | None = Facets(
        enum=frozenset(_intern(v) for v in raw["enum"]) if "enum" in raw else None,
        ranges=_pairs(raw.get("ranges", ())),
        sizes=_pairs(raw.get("sizes", ())),
        is_list=bool(raw.get("list")),
        item_type=raw.get("item_type", ""),
        list_sizes=_pairs(raw.get("list_sizes", ())),
        enum_ref=_intern(raw.get("enum_ref", "")),
        enum_null=raw.get("enum_null"),
    )
    if facets == Facets():
        facets = None
    flags = {
        "hidden": bool(raw.get("hidden")),
        "command": bool(raw.get("command")),
        "active_notify": raw.get("active_notify", "normal"),
    }
    return facets, flags


def build_template(doc: dict[str, Any]) -> Template:
    """Turn the JSON document into the shared, frozen :class:`Template`."""
    root: str = doc["root"]
    raw_facets: dict[str, dict[str, Any]] = doc.get("facets", {})
    tables: dict[str, dict[str, Any]] = doc["multi_instance"]

    # Pattern -> list of (rel name, type, writable, default), in model order.
    params: dict[str, list[list[Any]]] = {}
    order: list[str] = []  # object patterns, first appearance wins

    def note(pattern: str) -> None:
        if pattern not in params:
            params[pattern] = []
            order.append(pattern)

    for path, _writable in doc["objects"]:
        note(pattern_of(path))
    for table_pattern, spec in tables.items():
        note(table_pattern[:-4])
        note(table_pattern)
        for rel, _w in spec["objects"]:
            note(table_pattern + rel)
        for rel, xsd_type, writable, default in spec["parameters"]:
            obj_rel, _, name = rel.rpartition(".")
            params[table_pattern + (obj_rel + "." if obj_rel else "")].append(
                [name, xsd_type, writable, default]
            )

    # Singletons outside any table take their parameters (and defaults) from the
    # concrete rows; parameters under tables came from the multi-instance rows.
    defaults: dict[str, str] = {}
    generic: dict[str, str] = {}
    for pattern, rows in params.items():
        for name, _t, _w, default in rows:
            generic[pattern + name] = default
    for path, xsd_type, writable, value in doc["parameters"]:
        obj_path, _, name = path.rpartition(".")
        pattern = pattern_of(obj_path + ".")
        key = pattern + name
        if key not in generic:
            params[pattern].append([name, xsd_type, writable, value])
            generic[key] = value
        elif value != generic[key]:
            defaults[_intern(path)] = _intern(value)

    children: dict[str, list[str]] = {p: [] for p in order}
    for pattern in order:
        if pattern == root or pattern.endswith(".{i}.") and pattern[:-4] in params:
            continue
        parent, rel = _parent(pattern)
        children[parent].append(_intern(rel))

    objects: dict[str, ObjectDef] = {}
    for pattern in order:
        is_instance = pattern.endswith(".{i}.")
        is_table = not is_instance and pattern + "{i}." in tables
        table_spec = tables.get(pattern + "{i}." if is_table else pattern, {})
        kind: ObjectKind = "instance" if is_instance else "table" if is_table else "object"
        defs: list[ParamDef] = []
        for name, xsd_type, writable, default in params[pattern]:
            facets, flags = _facets(raw_facets.get(pattern + name))
            counts = None
            if name.endswith("NumberOfEntries"):
                table_rel = name[: -len("NumberOfEntries")] + "."
                if pattern + table_rel + "{i}." in tables:
                    counts = _intern(table_rel)
            defs.append(
                ParamDef(
                    name=_intern(name),
                    xsd_type=_intern(xsd_type),
                    writable=bool(writable),
                    default=_intern(default),
                    facets=facets,
                    counts=counts,
                    **flags,
                )
            )
        pattern = _intern(pattern)
        objects[pattern] = ObjectDef(
            pattern=pattern,
            kind=kind,
            writable=bool(table_spec.get("writable", False)) if kind != "object" else False,
            max_entries=table_spec.get("max_entries") if kind == "table" else None,
            params=tuple(defs),
            params_by_name={d.name: d for d in defs},
            children=tuple(children[pattern]) if kind != "table" else (),
        )

    instances: dict[str, list[int]] = {}
    for path, _w in doc["objects"]:
        pattern = pattern_of(path)
        if objects[pattern].kind == "table":
            instances.setdefault(_intern(path), [])
        elif objects[pattern].kind == "instance":
            table, _, number = path[:-1].rpartition(".")
            instances.setdefault(_intern(table + "."), []).append(int(number))

    return Template(
        name=doc["model"],
        root=_intern(root),
        data_model=doc["data_model"],
        objects=objects,
        instances={k: tuple(v) for k, v in instances.items()},
        defaults=defaults,
        identity={_intern(k): _intern(v) for k, v in doc["identity"].items()},
        forced_inform=tuple(_intern(p) for p in doc["forced_inform"]),
        parameter_count=len(doc["parameters"]),
    )


@cache
def load_template(name: str) -> Template:
    """The named template, parsed once per process and shared by all devices."""
    if name not in TEMPLATE_NAMES:
        raise ValueError(f"unknown template {name!r}; expected one of {TEMPLATE_NAMES}")
    with (SCHEMAS_DIR / f"{name}.json").open(encoding="utf-8") as fh:
        return build_template(json.load(fh))


# ----------------------------------------------------------------------------- identity

DEFAULT_OUI = "ACDE48"  # the IEEE's documentation OUI, so no real vendor is impersonated


@dataclass(frozen=True, slots=True)
class Identity:
    """What makes one simulated CPE distinct: DeviceIdStruct fields, versions, addresses."""

    serial_number: str
    oui: str = DEFAULT_OUI
    product_class: str = "HGW"
    manufacturer: str = "SimCPE"
    model_name: str = "SimGateway 1000"
    software_version: str = "1.0.0"
    hardware_version: str = "HW1.0"
    mac_base: int = 0  # 48-bit; the device's MACs are mac_base + small offsets

    @classmethod
    def from_serial(
        cls,
        serial_number: str,
        *,
        oui: str = DEFAULT_OUI,
        product_class: str = "HGW",
        manufacturer: str = "SimCPE",
        model_name: str = "SimGateway 1000",
        software_version: str = "1.0.0",
        hardware_version: str = "HW1.0",
    ) -> Identity:
        """An identity whose MACs, SSIDs and WAN address derive from the serial number,
        so that the same serial always yields the same device."""
        digest = hashlib.blake2s(serial_number.encode(), digest_size=4).digest()
        # Low nibble cleared: offsets 0..15 stay inside the device's own block.
        nic = int.from_bytes(digest[:3], "big") & 0xFFFFF0
        return cls(
            serial_number=serial_number,
            oui=oui,
            product_class=product_class,
            manufacturer=manufacturer,
            model_name=model_name,
            software_version=software_version,
            hardware_version=hardware_version,
            mac_base=(int(oui, 16) << 24) | nic,
        )

    def _hash(self, salt: str, size: int) -> int:
        data = (salt + self.serial_number).encode()
        return int.from_bytes(hashlib.blake2s(data, digest_size=size).digest(), "big")

    def mac(self, offset: int = 0) -> str:
        return _format_mac(self.mac_base + offset)

    def host_mac(self, n: int) -> str:
        # LAN clients: locally administered unicast addresses, stable per device.
        value = (0x02 << 40) | (self._hash(f"host{n}", 5) & 0xFFFFFFFFFF)
        return _format_mac(value)

    def ssid(self, n: int) -> str:
        suffix = f"{self.mac_base & 0xFFFF:04X}"
        band = "" if n % 2 else "-5G"
        guest = "-Guest" if n > 2 else ""
        return f"Gateway-{suffix}{band}{guest}"

    def wan_ip(self) -> str:
        # Carrier-grade NAT space (RFC 6598): plausible and never routable.
        host = self._hash("wan", 3) % ((1 << 22) - 2) + 1
        return f"100.{64 + (host >> 16)}.{(host >> 8) & 0xFF}.{host & 0xFF}"

    def wan_ipv6(self) -> str:
        h = self._hash("wan6", 6)
        return f"2001:db8:{h >> 32 & 0xFFFF:x}:{h >> 16 & 0xFFFF:x}::{h & 0xFFFF:x}"

    def wifi_key(self) -> str:
        return f"{self._hash('psk', 6):012x}"

    def value(self, key: str) -> str | None:
        """The identity-derived value for a template identity key, or None if not ours."""
        kind, _, arg = key.partition(":")
        n = int(arg) if arg else 0
        match kind:
            case "serial_number" | "oui" | "product_class" | "manufacturer" | "model_name":
                return str(getattr(self, kind))
            case "software_version" | "hardware_version":
                return str(getattr(self, kind))
            case "mac":
                return self.mac(n)
            case "host_mac":
                return self.host_mac(n)
            case "ssid":
                return self.ssid(n)
            case "wan_ip":
                return self.wan_ip()
            case "wan_ipv6":
                return self.wan_ipv6()
            case "wifi_key":
                return self.wifi_key()
        return None


def _format_mac(value: int) -> str:
    raw = f"{value & 0xFFFFFFFFFFFF:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


# ----------------------------------------------------------------------------- value checks

_INT_LIMITS = {
    "xsd:unsignedInt": (0, 2**32 - 1),
    "xsd:int": (-(2**31), 2**31 - 1),
    "xsd:unsignedLong": (0, 2**64 - 1),
    "xsd:long": (-(2**63), 2**63 - 1),
}
_INT_RE = re.compile(r"[+-]?[0-9]+")
_DATETIME_RE = re.compile(
    r"-?[0-9]{4,}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?"
)
BOOLEAN_VALUES = frozenset({"true", "false", "1", "0"})

FAULT_TYPE = 9006
FAULT_VALUE = 9007


def _parse(xsd_type: str, value: str) -> int | float | bytes | str | None:
    """The value as a Python object for facet checks, or None if it is not of the type."""
    if xsd_type in _INT_LIMITS:
        if not _INT_RE.fullmatch(value):
            return None
        number = int(value)
        lo, hi = _INT_LIMITS[xsd_type]
        return number if lo <= number <= hi else None
    if xsd_type == "xsd:boolean":
        return value if value in BOOLEAN_VALUES else None
    if xsd_type == "xsd:dateTime":
        if not _DATETIME_RE.fullmatch(value):
            return None
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return None
        return value
    if xsd_type == "xsd:base64":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    if xsd_type == "xsd:hexBinary":
        try:
            return bytes.fromhex(value) if len(value) % 2 == 0 else None
        except ValueError:
            return None
    if xsd_type == "xsd:decimal":
        try:
            return float(Decimal(value))
        except InvalidOperation:
            return None
    return value


def _within(value: int, bounds: tuple[tuple[int | None, int | None], ...]) -> bool:
    return any((lo is None or value >= lo) and (hi is None or value <= hi) for lo, hi in bounds)


def _check_one(
    xsd_type: str, facets: Facets | None, value: str, allowed: frozenset[str] | None
) -> int | None:
    parsed = _parse(xsd_type, value)
    if parsed is None:
        return FAULT_TYPE
    if facets is None:
        return None
    if allowed is not None and value not in allowed:
        return FAULT_VALUE
    if (
        facets.ranges
        and isinstance(parsed, int | float)
        and not _within(int(parsed), facets.ranges)
    ):
        return FAULT_VALUE
    if facets.sizes and isinstance(parsed, str | bytes) and not _within(len(parsed), facets.sizes):
        return FAULT_VALUE
    return None


def check_value(pdef: ParamDef, value: str, ref_value: str | None = None) -> int | None:
    """None if ``value`` may be set on ``pdef``; else 9006 (wrong type) or 9007 (bad value).

    ``ref_value`` is the current value of the sibling named by ``facets.enum_ref``.
    """
    facets = pdef.facets
    allowed = None if facets is None else facets.enum
    if facets is not None and facets.enum_ref and ref_value is not None:
        items = {v.strip() for v in ref_value.split(",") if v.strip()}
        if facets.enum_null is not None:
            items.add(facets.enum_null)
        allowed = frozenset(items)
    if facets is None or not facets.is_list:
        return _check_one(pdef.xsd_type, facets, value, allowed)
    if facets.list_sizes and not _within(len(value), facets.list_sizes):
        return FAULT_VALUE
    if value == "":
        return None  # the empty list
    for item in value.split(","):
        fault = _check_one(facets.item_type, facets, item.strip(), allowed)
        if fault is not None:
            return fault
    return None


def local_type(xsd_type: str) -> str:
    """'xsd:unsignedInt' -> 'unsignedInt': ACSes differ in the prefix they bind."""
    return xsd_type.rpartition(":")[2]
