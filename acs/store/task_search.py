"""Jobs across the whole fleet: search, counts, groups and actions on a selection.

The per-device queue lives in acs.store.tasks; this module answers the
operator's questions about all of it ("every 9005 of the last day on HG8245
routers") and acts on the answer (retry, cancel, dismiss) in one statement,
so a selection of thousands of jobs is one round trip and one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from acs.core.filters import Expr
from acs.store.device_query import compile_filter
from acs.store.tasks import _COLUMNS, Task

# largest selection one action touches; the caller says how many matched more
ACTION_LIMIT = 100_000

# group keys an operator may ask for, and the SQL that yields each
GROUP_KEYS = {
    "faultCode": "t.fault_code::text",
    "name": "t.name",
    "status": "t.status",
    "productClass": "d.product_class",
    "softwareVersion": "d.software_version",
}


@dataclass(slots=True)
class Selection:
    """Which jobs: every field narrows; None (or empty) leaves it open."""

    statuses: list[str] | None = None
    names: list[str] | None = None
    # the job's own code, or the code of one of a 9003's per-parameter faults
    fault_code: int | None = None
    device_filter: Expr | None = None
    device_id: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    open_faults: bool = False  # faulted and not dismissed
    ids: list[int] | None = None


class _Where:
    def __init__(self) -> None:
        self.params: list[Any] = []
        self.parts: list[str] = []
        self.needs_device = False

    def arg(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"


def _where(sel: Selection, *, ignore_status: bool = False) -> _Where:
    w = _Where()
    if sel.ids is not None:
        w.parts.append(f"t.id = ANY({w.arg(sel.ids)}::bigint[])")
    if sel.statuses and not ignore_status:
        w.parts.append(f"t.status = ANY({w.arg(sel.statuses)}::text[])")
    if sel.open_faults:
        w.parts.append("t.status = 'fault' AND t.dismissed_at IS NULL")
    if sel.names:
        w.parts.append(f"t.name = ANY({w.arg(sel.names)}::text[])")
    if sel.fault_code is not None:
        code = w.arg(sel.fault_code)
        w.parts.append(
            f"(t.fault_code = {code}::int OR (t.fault_code IS NOT NULL AND t.result @>"
            " jsonb_build_object('setParameterValuesFaults',"
            f" jsonb_build_array(jsonb_build_object('faultCode', {code}::int)))))"
        )
    if sel.device_id is not None:
        w.parts.append(f"t.device_id = {w.arg(sel.device_id)}")
    if sel.since is not None:
        w.parts.append(f"t.created_at >= {w.arg(sel.since)}")
    if sel.until is not None:
        w.parts.append(f"t.created_at < {w.arg(sel.until)}")
    if sel.device_filter is not None:
        fragment, params = compile_filter(sel.device_filter, first_param=len(w.params) + 1)
        w.params.extend(params)
        w.parts.append(f"({fragment})")
        w.needs_device = True
    return w


def _from(w: _Where, *, device: bool = False) -> str:
    if w.needs_device:
        return (
            "tasks t JOIN devices d ON d.id = t.device_id"
            " LEFT JOIN device_parameters dp ON dp.device_id = d.id"
        )
    if device:
        return "tasks t JOIN devices d ON d.id = t.device_id"
    return "tasks t"


def _sql_where(w: _Where) -> str:
    return " AND ".join(w.parts) if w.parts else "TRUE"


_TASK_COLUMNS = ", ".join(f"t.{c.strip()}" for c in _COLUMNS.split(","))


@dataclass(slots=True)
class TaskPage:
    items: list[Task]
    total: int
    counts: dict[str, int]  # by status, over the selection without its status filter
    next_cursor: int | None


async def search(
    conn: asyncpg.Connection, sel: Selection, *, limit: int = 50, before_id: int | None = None
) -> TaskPage:
    """Newest first; ``before_id`` is the next_cursor of the previous page."""
    w = _where(sel)
    where = _sql_where(w)
    page_where = where if before_id is None else f"{where} AND t.id < {w.arg(before_id)}"
    rows = await conn.fetch(
        f"SELECT {_TASK_COLUMNS} FROM {_from(w)} WHERE {page_where}"
        f" ORDER BY t.id DESC LIMIT {w.arg(limit + 1)}",
        *w.params,
    )
    more = len(rows) > limit
    items = [Task.from_row(r) for r in rows[:limit]]
    cw = _where(sel, ignore_status=True)
    by_status = await conn.fetch(
        f"SELECT t.status, count(*) AS n FROM {_from(cw)} WHERE {_sql_where(cw)} GROUP BY t.status",
        *cw.params,
    )
    counts = {r["status"]: r["n"] for r in by_status}
    if sel.statuses:
        total = sum(counts.get(s, 0) for s in sel.statuses)
        if sel.open_faults or sel.ids is not None:
            total = await _count(conn, sel)
    else:
        total = await _count(conn, sel) if sel.open_faults else sum(counts.values())
    return TaskPage(items, total, counts, items[-1].id if more and items else None)


async def _count(conn: asyncpg.Connection, sel: Selection) -> int:
    w = _where(sel)
    n: int = await conn.fetchval(
        f"SELECT count(*) FROM {_from(w)} WHERE {_sql_where(w)}", *w.params
    )
    return n


@dataclass(slots=True)
class Group:
    key: dict[str, str | None]
    count: int
    devices: int
    first_seen: datetime | None
    last_seen: datetime | None
    example: str | None  # one fault string of the group
    results: list[dict[str, Any] | None]  # a sample, for the per-parameter causes


async def groups(
    conn: asyncpg.Connection, sel: Selection, by: list[str], *, limit: int = 100
) -> list[Group]:
    """Jobs of the selection grouped by ``by`` (keys of GROUP_KEYS), largest first."""
    w = _where(sel)
    device = any(GROUP_KEYS[k].startswith("d.") for k in by)
    keys = ", ".join(f"{GROUP_KEYS[k]} AS k{i}" for i, k in enumerate(by))
    group_by = ", ".join(str(i + 1) for i in range(len(by)))
    rows = await conn.fetch(
        f"""
        SELECT {keys}, count(*) AS n, count(DISTINCT t.device_id) AS devices,
               min(coalesce(t.finished_at, t.created_at)) AS first_seen,
               max(coalesce(t.finished_at, t.created_at)) AS last_seen,
               (array_agg(t.fault_string ORDER BY t.id DESC)
                    FILTER (WHERE t.fault_string IS NOT NULL))[1] AS example,
               (array_agg(t.result ORDER BY t.id DESC)
                    FILTER (WHERE t.result ? 'setParameterValuesFaults'))[1:20] AS results
        FROM {_from(w, device=device)} WHERE {_sql_where(w)}
        GROUP BY {group_by} ORDER BY n DESC, {group_by} LIMIT {w.arg(limit)}
        """,
        *w.params,
    )
    return [
        Group(
            key={k: r[f"k{i}"] for i, k in enumerate(by)},
            count=r["n"],
            devices=r["devices"],
            first_seen=r["first_seen"],
            last_seen=r["last_seen"],
            example=r["example"],
            results=list(r["results"] or []),
        )
        for r in rows
    ]


# ----------------------------------------------------------------- actions on a selection


async def retry(conn: asyncpg.Connection, sel: Selection) -> int:
    """Faulted or expired jobs of the selection pending again, fault cleared.

    Of several jobs sharing a unique key only the newest comes back, and none
    whose key already has a pending job: at most one stays pending per key.
    """
    w = _where(sel)
    n: int = await conn.fetchval(
        f"""
        WITH chosen AS (
            SELECT DISTINCT ON (t.device_id, coalesce(t.unique_key, t.id::text)) t.id
            FROM {_from(w)}
            WHERE {_sql_where(w)} AND t.status IN ('fault', 'expired')
              AND (t.unique_key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM tasks p WHERE p.device_id = t.device_id
                     AND p.unique_key = t.unique_key AND p.status = 'pending'))
            ORDER BY t.device_id, coalesce(t.unique_key, t.id::text), t.id DESC
            LIMIT {ACTION_LIMIT}
        ), done AS (
            UPDATE tasks SET status = 'pending', fault_code = NULL, fault_string = NULL,
                finished_at = NULL, started_at = NULL, session_id = NULL, not_before = NULL,
                dismissed_at = NULL,
                expires_at = CASE WHEN expires_at < now() THEN NULL ELSE expires_at END
            WHERE id IN (SELECT id FROM chosen) AND status IN ('fault', 'expired')
            RETURNING 1
        )
        SELECT count(*) FROM done
        """,
        *w.params,
    )
    return n


async def cancel(conn: asyncpg.Connection, sel: Selection) -> int:
    """Pending jobs of the selection cancelled (running ones finish as they are)."""
    w = _where(sel)
    n: int = await conn.fetchval(
        f"""
        WITH done AS (
            UPDATE tasks SET status = 'cancelled', finished_at = now()
            WHERE id IN (SELECT t.id FROM {_from(w)} WHERE {_sql_where(w)}
                         AND t.status = 'pending' LIMIT {ACTION_LIMIT})
              AND status = 'pending'
            RETURNING 1
        )
        SELECT count(*) FROM done
        """,
        *w.params,
    )
    return n


async def dismiss(conn: asyncpg.Connection, sel: Selection, by: str) -> int:
    """Faults of the selection taken off the open-faults list (the job stays as it was)."""
    w = _where(sel)
    who = w.arg(by)
    n: int = await conn.fetchval(
        f"""
        WITH done AS (
            UPDATE tasks SET dismissed_at = now(), dismissed_by = {who}
            WHERE id IN (SELECT t.id FROM {_from(w)} WHERE {_sql_where(w)}
                         AND t.status = 'fault' AND t.dismissed_at IS NULL
                         LIMIT {ACTION_LIMIT})
            RETURNING 1
        )
        SELECT count(*) FROM done
        """,
        *w.params,
    )
    return n
