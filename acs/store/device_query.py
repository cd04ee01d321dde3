"""Device search: the filter AST compiled to SQL, keyset paging, projections, tags.

Every value travels as a $n parameter; only column names from fixed tables
below and operators from the parser's closed set are written into the SQL.

Which index serves which term:
- ``DeviceID.ID``: the primary key; ``DeviceID.ProductClass``,
  ``DeviceID.SerialNumber``, ``SoftwareVersion``, ``LastInform``: btree
  indexes whose leading column is that column (0002_device_query.sql);
- ``tag = "x"``: ``d.tags @> ARRAY[$n]``, the GIN index on devices.tags;
- parameter ``=``: ``device_parameter_keys(dp.tree) @> ARRAY[device_parameter_key($path,
  $value)]``, the GIN index of (path, value) keys (0011_storage.sql). It is
  exact, so a match never opens the tree; but the function walks the whole
  tree, so this form is written only where that index can serve it (not
  under NOT, not in an OR with an unindexed arm);
- everywhere else (``!=``, ``=`` under NOT or in such an OR, ranges, LIKE,
  IS [NOT] NULL) parameters are read with ``dp.tree -> $path ->> 'v'``, one
  key lookup, not indexed: on a large fleet combine them with an indexed term.

Value rules (documented for operators in the API description too):
- hot text columns compare as plain text (collation order; firmware version
  ordering is another module's job);
- parameter ``=`` / ``!=`` compare the stored text exactly. A number literal
  is written in its canonical form (``5``, ``2.5``), which is how CPEs report
  xsd:int/unsignedInt values, so ``Device.X = 300`` matches "300";
- parameter ``<`` ``<=`` ``>`` ``>=`` with a number literal compare
  numerically when the stored value is a decimal number (``-?digits[.digits]``);
  a device whose value is not a number (or is missing) does not match. With a
  string literal they compare text;
- ``!=`` is "not equal", so a device without the value (NULL column, missing
  parameter) matches it; add ``X IS NOT NULL`` to exclude those. NOT is
  two-valued the same way: NOT of a term that cannot be evaluated is true.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from acs.core.filters import (
    COMPARISONS,
    PARAMETER_ROOTS,
    TAG_FIELD,
    And,
    Comparison,
    Expr,
    IsNull,
    Like,
    Not,
    Or,
    parse_time,
)
from acs.core.secrets import mask_value
from acs.core.tags import tag_problem
from acs.core.times import rfc3339

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
    # in the narrow device_sessions row (migration 0024); a subquery, so that a
    # filter compiles the same in every statement that reads "devices d"
    "LastInform": "(SELECT s.last_inform FROM device_sessions s WHERE s.device_id = d.id)",
    "LastBoot": "d.last_boot",
    "LastBootstrap": "d.last_bootstrap",
    "Registered": "d.created_at",
}


@dataclass(frozen=True, slots=True)
class _Sort:
    column: str
    pg_type: str
    nullable: bool


#: the sort whitelist: each is served by an index whose leading column it is
SORTS = {
    "id": _Sort("d.id", "text", False),
    # device_sessions' index; the list joins that table as "s"
    "last_inform": _Sort("s.last_inform", "timestamptz", True),
    "product_class": _Sort("d.product_class", "text", False),
    "software_version": _Sort("d.software_version", "text", True),
    "serial_number": _Sort("d.serial_number", "text", False),
}
MAX_LIMIT = 1000
MAX_PROJECTION = 100
_NUMBER = r"'^-?[0-9]+(\.[0-9]+)?$'"


# --------------------------------------------------------------------------- compiling


def _indexable(expr: Expr) -> bool:
    """Whether an index can answer ``expr`` by itself (so its terms should take index form)."""
    if isinstance(expr, And):
        return any(_indexable(e) for e in expr.items)
    if isinstance(expr, Or):
        return all(_indexable(e) for e in expr.items)
    if isinstance(expr, Comparison):
        if expr.field.startswith(PARAMETER_ROOTS):
            return expr.op == "=" and expr.value is not None
        return expr.op != "!=" and expr.value is not None
    return False  # NOT, LIKE, IS NULL


class _Compiler:
    def __init__(self, first_param: int) -> None:
        self.first = first_param
        self.params: list[object] = []
        # False inside NOT and unindexable ORs: there a parameter "=" is
        # evaluated row by row, where a key lookup costs far less than
        # building the tree's index keys
        self.indexed = True

    def add(self, value: object) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params) - 1}"

    def compile(self, expr: Expr) -> str:
        if isinstance(expr, And):
            return "(" + " AND ".join(self.compile(e) for e in expr.items) + ")"
        if isinstance(expr, Or):
            return "(" + " OR ".join(self.unindexed(e, _indexable(expr)) for e in expr.items) + ")"
        if isinstance(expr, Not):
            # a term over a missing value is NULL; NOT NULL would drop the row
            # from both "X" and "NOT X", so NOT treats unknown as false first
            return f"(NOT COALESCE({self.unindexed(expr.item, False)}, false))"
        if isinstance(expr, IsNull):
            return f"({self.scalar(expr.field, 'IS NULL')} IS {'NOT ' if expr.negated else ''}NULL)"
        if isinstance(expr, Like):
            if expr.field in _TIME_COLUMNS:
                raise ValueError(f"{expr.field} is a time: compare it with < or >, not LIKE")
            not_ = "NOT " if expr.negated else ""
            return f"({self.scalar(expr.field, 'LIKE')} {not_}LIKE {self.add(expr.pattern)})"
        return self.comparison(expr)

    def unindexed(self, expr: Expr, indexable: bool) -> str:
        """Compile ``expr``, in row-by-row form unless ``indexable`` (and so far indexed)."""
        outer = self.indexed
        self.indexed = outer and indexable
        try:
            return self.compile(expr)
        finally:
            self.indexed = outer

    def scalar(self, field: str, what: str) -> str:
        """SQL for a field's single value (not for tag, which is a set)."""
        if field in _TEXT_COLUMNS:
            return _TEXT_COLUMNS[field]
        if field in _TIME_COLUMNS:
            return _TIME_COLUMNS[field]
        if field == TAG_FIELD:
            raise ValueError(f"tag supports only = and !=, not {what}")
        if field.startswith(PARAMETER_ROOTS):
            return f"(dp.tree -> {self.add(field)}::text ->> 'v')"
        raise ValueError(f"unknown field {field!r}")

    def comparison(self, c: Comparison) -> str:
        if c.op not in COMPARISONS:
            raise ValueError(f"unknown operator {c.op!r}")
        if not (
            c.field in _TEXT_COLUMNS
            or c.field in _TIME_COLUMNS
            or c.field == TAG_FIELD
            or c.field.startswith(PARAMETER_ROOTS)
        ):
            raise ValueError(f"unknown field {c.field!r}")
        if c.value is None:
            if c.op not in ("=", "!="):
                raise ValueError(f"{c.field} {c.op} NULL compares with nothing; use IS NULL")
            return self.compile(IsNull(c.field, c.op == "!="))
        # SQL's <> is NULL for a NULL column; != means "not equal", so a
        # device without the value matches it
        op = "IS DISTINCT FROM" if c.op == "!=" else c.op
        if c.field == TAG_FIELD:
            if c.op not in ("=", "!="):
                raise ValueError("tag supports only = and !=")
            has = f"(d.tags @> ARRAY[{self.add(str(c.value))}::text])"
            return has if c.op == "=" else f"(NOT {has})"
        if c.field == "LastInform":
            # a semi-join, so that the range is a scan of device_sessions' index
            when = self.add(parse_time(c.value))
            return (
                "(d.id IN (SELECT s.device_id FROM device_sessions s"
                f" WHERE s.last_inform {op} {when}::timestamptz))"
            )
        if c.field in _TIME_COLUMNS:
            when = parse_time(c.value)
            return f"({_TIME_COLUMNS[c.field]} {op} {self.add(when)}::timestamptz)"
        if c.field in _TEXT_COLUMNS:
            return f"({_TEXT_COLUMNS[c.field]} {op} {self.add(str(c.value))}::text)"
        if c.op == "=" and self.indexed:
            # the form the GIN index of (path, value) keys serves, exactly
            return (
                f"(device_parameter_keys(dp.tree) @> ARRAY[device_parameter_key("
                f"{self.params_text(c.field)}, {self.params_text(_canonical(c.value))})])"
            )
        if c.op in ("=", "!="):
            equal = f"({self.scalar(c.field, c.op)} = {self.params_text(_canonical(c.value))})"
            return equal if c.op == "=" else f"(NOT COALESCE({equal}, false))"
        value = self.scalar(c.field, c.op)
        if isinstance(c.value, int | float):
            # CASE guards the cast: a value that is not a number never reaches it
            number = f"(CASE WHEN {value} ~ {_NUMBER} THEN ({value})::numeric END)"
            return f"({number} {c.op} {self.add(c.value)}::numeric)"
        return f"({value} {c.op} {self.add(c.value)}::text)"

    def params_text(self, value: str) -> str:
        return f"{self.add(value)}::text"


def _canonical(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def compile_filter(expr: Expr | None, first_param: int = 1) -> tuple[str, list[object]]:
    """A WHERE fragment over ``d`` (devices) and ``dp`` (device_parameters).

    Placeholders start at ``$first_param`` so the fragment can be embedded in
    a statement with parameters of its own. Raises ValueError for an AST the
    parser would not have produced (unknown field, LIKE on a time, ...).
    """
    if expr is None:
        return "TRUE", []
    compiler = _Compiler(first_param)
    return compiler.compile(expr), compiler.params


# --------------------------------------------------------------------------- listing


@dataclass(slots=True)
class DevicePage:
    items: list[dict[str, Any]]
    total: int
    next_cursor: str | None


def _iso(value: datetime | None) -> str | None:
    return rfc3339(value) if value else None


def _encode_cursor(sort: str, descending: bool, key: Any, device_id: str) -> str:
    if isinstance(key, datetime):
        key = key.isoformat()
    raw = json.dumps([sort, "d" if descending else "a", key, device_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


class InvalidParameter(ValueError):
    """A listing parameter the query cannot take; ``field`` names it for the caller."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _decode_cursor(cursor: str, sort: str, descending: bool) -> tuple[Any, str]:
    bad = "invalid cursor: pass next_cursor of the previous page unchanged"
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c_sort, c_dir, key, device_id = json.loads(raw)
        if not isinstance(device_id, str) or not (key is None or isinstance(key, str)):
            raise ValueError(bad)
        # a forged cursor: text PostgreSQL cannot take (NUL, a lone surrogate)
        # would fail in the query, so it is refused as any other bad cursor
        for text in (device_id, key or ""):
            text.encode("utf-8")
            if "\x00" in text:
                raise ValueError(bad)
        if SORTS[sort].pg_type == "timestamptz" and key is not None:
            key = datetime.fromisoformat(key)
            if key.tzinfo is None:
                raise ValueError(bad)
            key = key.astimezone(UTC)  # OverflowError past datetime's range in UTC
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeError):
        raise InvalidParameter("cursor", bad) from None
    if (c_sort, c_dir) != (sort, "d" if descending else "a"):
        raise InvalidParameter(
            "cursor",
            "cursor belongs to another sort order: keep sort and order unchanged while paging",
        )
    return key, device_id


def _keyset_branches(
    s: _Sort, descending: bool, key: Any, after_id: str, add: Callable[[object], str]
) -> list[str]:
    """Conditions, one per UNION ALL branch, selecting the rows after the cursor.

    Rows are ordered (column, id) with PostgreSQL's default NULL placement
    (last ascending, first descending), which is the order a btree index
    scans in either direction. The rows after a cursor are a row-comparison
    range plus, for a nullable column, the NULL block; each is its own branch
    so each stays an index range scan instead of an OR the planner cannot use.
    Parameters are added only where used: PostgreSQL cannot type an unused one.
    """
    col = s.column
    lt = "<" if descending else ">"
    i = f"{add(after_id)}::text"
    if col == "d.id":
        return [f"d.id {lt} {i}"]
    if key is None:  # the cursor is in the NULL block
        rest = [f"{col} IS NOT NULL"] if descending else []
        return [f"{col} IS NULL AND d.id {lt} {i}", *rest]
    after = f"({col}, d.id) {lt} ({add(key)}::{s.pg_type}, {i})"
    return [after, f"{col} IS NULL"] if s.nullable and not descending else [after]


def _projection_params(projection: list[str]) -> tuple[list[str], list[str]]:
    if len(projection) > MAX_PROJECTION:
        raise InvalidParameter(
            "projection", f"projection names {len(projection)} paths; the limit is {MAX_PROJECTION}"
        )
    for path in projection:
        if not path.startswith(PARAMETER_ROOTS):
            raise InvalidParameter(
                "projection",
                f"projection path {path!r} must start with Device. or InternetGatewayDevice.",
            )
    exact = [p for p in projection if not p.endswith(".")]
    prefixes = [p for p in projection if p.endswith(".")]
    return exact, prefixes


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
    """One page of the devices matching ``expr``, after ``cursor`` in (sort, id) order.

    The cursor is the last row's sort key and id, so a page is the same rows
    whatever was inserted or deleted before it (keyset paging, no OFFSET).
    ``projection`` selects parameters to return: exact paths, or prefixes
    ending with ".". Raises ValueError for a bad sort, limit, cursor or
    projection.
    """
    if sort not in SORTS:
        raise ValueError(f"cannot sort by {sort!r}; use one of {', '.join(SORTS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    async with conn.transaction():  # a savepoint inside the caller's transaction
        await _custom_plans(conn)
        return await _list_devices(conn, expr, sort, descending, limit, cursor, projection)


async def _custom_plans(conn: asyncpg.Connection) -> None:
    """Plan each filter query for its own values, not once for all.

    asyncpg prepares every statement, and after five runs PostgreSQL may
    switch to a generic plan, chosen without the values: for a parameter
    filter it walked the id index evaluating the tree's keys row by row,
    200-400 ms over 100,000 devices instead of 8 ms through the GIN index
    (bench/storage.py). Planning a filter query costs well under a millisecond.
    """
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")


async def _list_devices(
    conn: asyncpg.Connection,
    expr: Expr | None,
    sort: str,
    descending: bool,
    limit: int,
    cursor: str | None,
    projection: list[str] | None,
) -> DevicePage:
    s = SORTS[sort]
    where, params = compile_filter(expr)
    total = await _count(conn, expr)

    def add(value: object) -> str:
        params.append(value)
        return f"${len(params)}"

    if cursor:
        key, after_id = _decode_cursor(cursor, sort, descending)
        branches = _keyset_branches(s, descending, key, after_id, add)
    else:
        branches = ["TRUE"]
    order = "DESC" if descending else "ASC"
    limit_ref = add(limit + 1)  # one more than asked tells whether a next page exists
    ids_sql = " UNION ALL ".join(
        f"(SELECT d.id FROM devices d LEFT JOIN device_parameters dp ON dp.device_id = d.id"
        f" LEFT JOIN device_sessions s ON s.device_id = d.id"
        f" WHERE {where} AND {branch}"
        f" ORDER BY {s.column} {order}, d.id {order} LIMIT {limit_ref})"
        for branch in branches
    )
    projected = "NULL::jsonb"
    if projection:
        exact, prefixes = _projection_params(projection)
        e_ref, p_ref = add(exact), add(prefixes)
        # object entries (keys ending with ".") carry no value: not parameters
        projected = (
            "(SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(dp.tree) e"
            " WHERE right(e.key, 1) <> '.'"
            f" AND (e.key = ANY({e_ref}::text[])"
            f" OR EXISTS (SELECT 1 FROM unnest({p_ref}::text[]) p WHERE starts_with(e.key, p))))"
        )
    rows = await conn.fetch(
        f"""
        SELECT d.*, s.last_inform, {s.column} AS sort_key, {projected} AS projected
        FROM ({ids_sql}) page
        JOIN devices d ON d.id = page.id
        LEFT JOIN device_parameters dp ON dp.device_id = d.id
        LEFT JOIN device_sessions s ON s.device_id = d.id
        ORDER BY {s.column} {order}, d.id {order}
        LIMIT {limit_ref}
        """,
        *params,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_item(r) for r in rows]
    next_cursor = (
        _encode_cursor(sort, descending, rows[-1]["sort_key"], rows[-1]["id"])
        if more and rows
        else None
    )
    return DevicePage(items, total, next_cursor)


async def count_devices(conn: asyncpg.Connection, expr: Expr | None) -> int:
    """How many devices match ``expr`` (all devices for None)."""
    async with conn.transaction():
        await _custom_plans(conn)
        return await _count(conn, expr)


async def _count(conn: asyncpg.Connection, expr: Expr | None) -> int:
    where, params = compile_filter(expr)
    total: int = await conn.fetchval(
        "SELECT count(*) FROM devices d LEFT JOIN device_parameters dp ON dp.device_id = d.id"
        f" WHERE {where}",
        *params,
    )
    return total


def _item(r: asyncpg.Record) -> dict[str, Any]:
    raw = r["projected"] or {}
    if isinstance(raw, str):  # a connection without the pool's jsonb codec
        raw = json.loads(raw)
    return {
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
        "parameters": {
            path: {
                "value": mask_value(path, e.get("v"), e.get("t")),
                "type": f"xsd:{e['t']}" if e.get("t") else None,
                "writable": e.get("w"),
                "valueAt": _iso(
                    datetime.fromtimestamp(e["vt"], UTC) if e.get("vt") is not None else None
                ),
            }
            for path, e in sorted(raw.items())
        },
    }


# --------------------------------------------------------------------------- tags


def _check_tags(tags: list[str]) -> list[str]:
    if isinstance(tags, str):  # a bare string would be taken letter by letter
        raise ValueError("tags must be a list of strings")
    for tag in tags:
        if (problem := tag_problem(tag)) is not None:
            raise ValueError(problem)
    return list(tags)


async def add_tags(conn: asyncpg.Connection, device_id: str, tags: list[str]) -> bool:
    """Add tags (kept sorted, without duplicates); False for an unknown device."""
    done = await conn.fetchval(
        "UPDATE devices SET tags = ARRAY(SELECT DISTINCT t FROM unnest(tags || $2::text[]) t"
        " ORDER BY t) WHERE id = $1 RETURNING 1",
        device_id,
        _check_tags(tags),
    )
    return done is not None


async def remove_tags(conn: asyncpg.Connection, device_id: str, tags: list[str]) -> bool:
    """Remove tags (absent ones are ignored); False for an unknown device."""
    done = await conn.fetchval(
        "UPDATE devices SET tags = ARRAY(SELECT t FROM unnest(tags) t WHERE t <> ALL($2::text[])"
        " ORDER BY t) WHERE id = $1 RETURNING 1",
        device_id,
        _check_tags(tags),
    )
    return done is not None
