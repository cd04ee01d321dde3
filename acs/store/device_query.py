"""Device search: the filter AST compiled to SQL, keyset paging, projections, tags.

Which indexes serve which filters:
- DeviceID.ID: the primary key; ProductClass, SoftwareVersion, LastInform:
  btree indexes on their columns; tag: the GIN index on devices.tags;
- parameter equality (Device.X = "v"): containment on the tree,
  ``tree @> {"Device.X": {"v": "v"}}``, served by the GIN jsonb_path_ops index;
- ranges, LIKE and IS NULL on parameters read the value from the tree and
  are not indexed: combine them with an indexed term on large fleets.

Comparisons with a number literal on a parameter compare numerically where the
stored value is a number (devices whose value is not a number do not match);
with a string literal they compare text.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from acs.core.filters import And, Comparison, Expr, IsNull, Like, Not, Or

_TEXT_COLUMNS = {
    "DeviceID.ID": "d.id",
    "DeviceID.OUI": "d.oui",
    "DeviceID.ProductClass": "d.product_class",
    "DeviceID.SerialNumber": "d.serial_number",
    "DeviceID.Manufacturer": "d.manufacturer",
    "SoftwareVersion": "d.software_version",
    "HardwareVersion": "d.hardware_version",
    "ProvisioningCode": "d.provisioning_code",
}
_TIME_COLUMNS = {
    "LastInform": "d.last_inform",
    "LastBoot": "d.last_boot",
    "LastBootstrap": "d.last_bootstrap",
    "Registered": "d.created_at",
}
SORTS = {
    "id": ("d.id", "text"),
    "last_inform": ("COALESCE(d.last_inform, '-infinity'::timestamptz)", "timestamptz"),
    "product_class": ("d.product_class", "text"),
    "software_version": ("COALESCE(d.software_version, '')", "text"),
    "serial_number": ("d.serial_number", "text"),
}
_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_NUMERIC = r"'^-?[0-9]+(\.[0-9]+)?$'"


class _Compiler:
    def __init__(self) -> None:
        self.params: list[object] = []

    def add(self, value: object) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def compile(self, expr: Expr) -> str:
        if isinstance(expr, And):
            return "(" + " AND ".join(self.compile(e) for e in expr.items) + ")"
        if isinstance(expr, Or):
            return "(" + " OR ".join(self.compile(e) for e in expr.items) + ")"
        if isinstance(expr, Not):
            return f"(NOT COALESCE({self.compile(expr.item)}, false))"
        if isinstance(expr, IsNull):
            return f"({self.value_of(expr.field)} IS {'NOT ' if expr.negated else ''}NULL)"
        if isinstance(expr, Like):
            return (
                f"({self.value_of(expr.field)} {'NOT ' if expr.negated else ''}LIKE "
                f"{self.add(expr.pattern)})"
            )
        return self.comparison(expr)

    def value_of(self, field: str) -> str:
        if field in _TEXT_COLUMNS:
            return _TEXT_COLUMNS[field]
        if field in _TIME_COLUMNS:
            return _TIME_COLUMNS[field]
        if field == "tag":
            return "d.tags"
        return f"(dp.tree -> {self.add(field)} ->> 'v')"

    def comparison(self, c: Comparison) -> str:
        if c.field == "tag":
            has = f"(d.tags @> ARRAY[{self.add(str(c.value))}]::text[])"
            return has if c.op == "=" else f"(NOT {has})"
        if c.field in _TIME_COLUMNS:
            column = _TIME_COLUMNS[c.field]
            op = "IS DISTINCT FROM" if c.op == "!=" else c.op
            return f"({column} {op} {self.add(_timestamp(c.field, c.value))}::timestamptz)"
        if c.field in _TEXT_COLUMNS:
            column = _TEXT_COLUMNS[c.field]
            op = "IS DISTINCT FROM" if c.op == "!=" else c.op
            return f"({column} {op} {self.add(str(c.value))})"
        # a parameter of the tree
        if c.op == "=" and isinstance(c.value, str):
            doc = {c.field: {"v": c.value}}
            return f"(dp.tree @> {self.add(doc)}::jsonb)"
        value = f"(dp.tree -> {self.add(c.field)} ->> 'v')"
        if isinstance(c.value, int | float):
            number = f"(CASE WHEN {value} ~ {_NUMERIC} THEN {value}::numeric END)"
            if c.op == "!=":
                return f"({number} IS DISTINCT FROM {self.add(c.value)}::numeric)"
            return f"({number} {c.op} {self.add(c.value)}::numeric)"
        op = "IS DISTINCT FROM" if c.op == "!=" else c.op
        return f"({value} {op} {self.add(c.value)})"


def _timestamp(field: str, value: object) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(
            f'{field} needs an ISO 8601 time such as "2026-01-31T08:00:00Z", got {value!r}'
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def compile_filter(expr: Expr | None, first_param: int = 1) -> tuple[str, list[object]]:
    """A WHERE fragment over ``d`` (devices) and ``dp`` (device_parameters)."""
    compiler = _Compiler()
    compiler.params = [None] * (first_param - 1)
    sql = "TRUE" if expr is None else compiler.compile(expr)
    return sql, compiler.params[first_param - 1 :]


@dataclass(slots=True)
class DevicePage:
    items: list[dict[str, Any]]
    total: int
    next_cursor: str | None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _encode_cursor(key: Any, device_id: str) -> str:
    if isinstance(key, datetime):
        key = key.isoformat()
    return base64.urlsafe_b64encode(json.dumps([key, device_id]).encode()).decode()


def _decode_cursor(cursor: str, kind: str) -> tuple[Any, str]:
    try:
        key, device_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if kind == "timestamptz":
            key = datetime.fromisoformat(key)
        if not isinstance(device_id, str):
            raise ValueError
        return key, device_id
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValueError(
            "invalid cursor: pass next_cursor of the previous page unchanged"
        ) from None


async def list_devices(
    conn: asyncpg.Connection,
    expr: Expr | None,
    *,
    sort: str = "id",
    descending: bool = False,
    limit: int = 50,
    cursor: str | None = None,
    projection: list[str] | None = None,
) -> DevicePage:
    if sort not in SORTS:
        raise ValueError(f"cannot sort by {sort!r}; use one of {', '.join(SORTS)}")
    key_sql, kind = SORTS[sort]
    where, params = compile_filter(expr)
    total = await count_devices(conn, expr)
    conditions = [where]
    if cursor:
        key, after_id = _decode_cursor(cursor, kind)
        params += [key, after_id]
        cmp = "<" if descending else ">"
        conditions.append(
            f"(({key_sql}, d.id) {cmp} (${len(params) - 1}::{kind}, ${len(params)}::text))"
        )
    project_sql = "NULL::jsonb"
    if projection:
        exact = [p for p in projection if not p.endswith(".")]
        prefixes = [
            p.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
            for p in projection
            if p.endswith(".")
        ]
        params += [exact, prefixes]
        project_sql = (
            "(SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(dp.tree) e"
            f" WHERE e.key = ANY(${len(params) - 1}::text[])"
            f" OR e.key LIKE ANY(${len(params)}::text[]))"
        )
    params.append(limit + 1)
    order = "DESC" if descending else "ASC"
    rows = await conn.fetch(
        f"""
        SELECT d.*, {key_sql} AS sort_key, {project_sql} AS projected
        FROM devices d LEFT JOIN device_parameters dp ON dp.device_id = d.id
        WHERE {" AND ".join(conditions)}
        ORDER BY {key_sql} {order}, d.id {order}
        LIMIT ${len(params)}
        """,
        *params,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_item(r, projection is not None and bool(projection)) for r in rows]
    next_cursor = _encode_cursor(rows[-1]["sort_key"], rows[-1]["id"]) if more and rows else None
    return DevicePage(items, total, next_cursor)


async def count_devices(conn: asyncpg.Connection, expr: Expr | None) -> int:
    where, params = compile_filter(expr)
    total: int = await conn.fetchval(
        "SELECT count(*) FROM devices d LEFT JOIN device_parameters dp ON dp.device_id = d.id"
        f" WHERE {where}",
        *params,
    )
    return total


def _item(r: asyncpg.Record, projected: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": r["id"],
        "oui": r["oui"],
        "productClass": r["product_class"],
        "serialNumber": r["serial_number"],
        "manufacturer": r["manufacturer"],
        "registered": _iso(r["created_at"]),
        "lastInform": _iso(r["last_inform"]),
        "lastBoot": _iso(r["last_boot"]),
        "lastBootstrap": _iso(r["last_bootstrap"]),
        "softwareVersion": r["software_version"],
        "hardwareVersion": r["hardware_version"],
        "provisioningCode": r["provisioning_code"],
        "connectionRequestUrl": r["connection_request_url"],
        "cwmpVersion": r["cwmp_version"],
        "tags": list(r["tags"]),
    }
    if projected:
        raw = r["projected"] or {}
        if isinstance(raw, str):
            raw = json.loads(raw)
        item["parameters"] = {
            path: {
                "value": e.get("v"),
                "type": f"xsd:{e['t']}" if e.get("t") else None,
                "writable": e.get("w"),
                "valueAt": e.get("vt"),
            }
            for path, e in sorted(raw.items())
        }
    return item


def _check_tags(tags: list[str]) -> list[str]:
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise ValueError(f"invalid tag {tag!r}: 1-64 letters, digits or _.:-")
    return tags


async def add_tags(conn: asyncpg.Connection, device_id: str, tags: list[str]) -> bool:
    done = await conn.fetchval(
        "UPDATE devices SET tags = ARRAY(SELECT DISTINCT t FROM unnest(tags || $2::text[]) t"
        " ORDER BY t) WHERE id = $1 RETURNING 1",
        device_id,
        _check_tags(tags),
    )
    return done is not None


async def remove_tags(conn: asyncpg.Connection, device_id: str, tags: list[str]) -> bool:
    done = await conn.fetchval(
        "UPDATE devices SET tags = ARRAY(SELECT t FROM unnest(tags) t WHERE t <> ALL($2::text[])"
        " ORDER BY t) WHERE id = $1 RETURNING 1",
        device_id,
        _check_tags(tags),
    )
    return done is not None
