"""What PostgreSQL spent on a measured window: CPU, WAL, buffers, per statement.

The periodic row of bench.fleet says how much of the database a session costs,
and this module is how it knows. Around the window it takes two snapshots of
the server the ACS uses and divides the differences by the sessions counted:

- CPU: user + system time of that server's processes only (the postmaster's
  children, found from ``postmaster.pid`` in its data directory), so that other
  PostgreSQL servers on a shared machine do not count. A backend that started
  during the window (an autovacuum worker) counts from zero;
- WAL: ``pg_current_wal_lsn()`` moved, plus ``pg_stat_wal``'s records and full
  page images. Both are the whole server's: exact on the benchmark's own
  embedded server, an upper bound on a server others use too;
- buffers: ``pg_stat_database`` hits and reads of this database alone;
- HOT: per table, how many updates were heap-only (no index entry written);
- statements: ``pg_stat_statements`` when the server loaded it
  (shared_preload_libraries; bench/__main__.py loads it into its embedded
  server), reset at the start, then each statement's calls, time, buffers and
  WAL per session. Without it the row says so and keeps the other figures.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import common

# every statement of ours carries this mark, so that the statements table shows
# the ACS's alone
_MARK = "/* bench.pgcost */"
_DATABASE = f"""{_MARK}
SELECT blks_hit, blks_read, tup_inserted, tup_updated, tup_deleted, xact_commit
FROM pg_stat_database WHERE datname = current_database()
"""
_TABLES = f"""{_MARK}
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
FROM pg_stat_user_tables
"""
_STATEMENTS = f"""{_MARK}
SELECT query, calls, total_exec_time, shared_blks_hit, shared_blks_read, shared_blks_dirtied,
       wal_records, wal_fpi, wal_bytes
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%bench.pgcost%'
ORDER BY total_exec_time DESC LIMIT $1
"""


def server_pids(data_directory: str | None) -> list[int]:
    """The postmaster of ``data_directory`` and its children; every PostgreSQL
    process on the machine when the directory cannot be read."""
    try:
        assert data_directory
        postmaster = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text()
        return [postmaster, *(int(p) for p in children.split())]
    except (AssertionError, OSError, ValueError, IndexError):
        return common.postgres_pids()


@dataclass
class Snapshot:
    lsn: str
    wal: dict[str, int]
    database: dict[str, int]
    tables: dict[str, dict[str, int]]
    cpu: dict[int, float] = field(default_factory=dict)


def _lsn(text: str) -> int:
    """A WAL position ("16/B374D848") as a byte offset."""
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


async def _has_statements(conn: asyncpg.Connection) -> bool:
    loaded = await conn.fetchval("SELECT current_setting('shared_preload_libraries')")
    if "pg_stat_statements" not in (loaded or ""):
        return False
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return True


async def _snapshot(conn: asyncpg.Connection, pids: list[int]) -> Snapshot:
    wal = await conn.fetchrow(
        f"{_MARK} SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal"
    )
    return Snapshot(
        lsn=await conn.fetchval(f"{_MARK} SELECT pg_current_wal_lsn()::text"),
        wal={k: int(v) for k, v in dict(wal).items()},
        database={k: int(v) for k, v in dict(await conn.fetchrow(_DATABASE)).items()},
        tables={
            r["relname"]: {k: int(r[k]) for k in r.keys() if k != "relname"}
            for r in await conn.fetch(_TABLES)
        },
        cpu={p: common.cpu_seconds(p) for p in pids},
    )


class PgCost:
    """``await start()`` before the window, ``await stop(sessions)`` after it;
    ``mark()`` (not a coroutine: a load generator's callback) moves the window's
    start to now, past a warm-up."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._before: Snapshot | None = None
        self._data_directory: str | None = None
        self.statements = False
        self._marked: asyncio.Future[None] | None = None

    async def start(self) -> PgCost:
        self._conn = conn = await asyncpg.connect(self.dsn)
        try:
            self._data_directory = await conn.fetchval("SHOW data_directory")
        except asyncpg.InsufficientPrivilegeError:
            self._data_directory = None
        self.statements = await _has_statements(conn)
        if self.statements:
            await conn.execute(f"{_MARK} SELECT pg_stat_statements_reset()")
        # statistics are read from a snapshot taken once per transaction by default
        await conn.execute(f"{_MARK} SET stats_fetch_consistency = none")
        self._before = await _snapshot(conn, server_pids(self._data_directory))
        return self

    def mark(self) -> None:
        self._marked = asyncio.ensure_future(self._restart())

    async def _restart(self) -> None:
        assert self._conn is not None
        if self.statements:
            await self._conn.execute(f"{_MARK} SELECT pg_stat_statements_reset()")
        self._before = await _snapshot(self._conn, server_pids(self._data_directory))

    async def stop(self, sessions: int, top: int = 8) -> dict[str, Any]:
        if self._marked is not None:
            await self._marked
        assert self._conn is not None and self._before is not None
        conn, before, n = self._conn, self._before, max(sessions, 1)
        try:
            await conn.execute(f"{_MARK} SELECT pg_stat_clear_snapshot()")
            # the counters of a table reach pg_stat_* when a backend reports them
            # (at most every second, PGSTAT_MIN_INTERVAL) ; give them that time
            await conn.execute(f"{_MARK} SELECT pg_sleep(1.1)")
            pids = server_pids(self._data_directory)
            after = await _snapshot(conn, sorted(set(pids) | set(before.cpu)))
            statements = await conn.fetch(_STATEMENTS, top) if self.statements else []
        finally:
            await conn.close()
        wal_bytes = _lsn(after.lsn) - _lsn(before.lsn)
        cpu = sum(max(0.0, s - before.cpu.get(p, 0.0)) for p, s in after.cpu.items())
        db = {k: after.database[k] - before.database[k] for k in after.database}
        tables = {}
        for name, t in after.tables.items():
            b = before.tables.get(name, dict.fromkeys(t, 0))
            d = {k: t[k] - b[k] for k in t}
            if any(d.values()):
                tables[name] = {k: round(v / n, 2) for k, v in d.items()}
        return {
            "pg_server_cpu_ms_per_session": cpu / n * 1000,
            "pg_processes": len(after.cpu),
            "wal_bytes_per_session": wal_bytes / n,
            "wal_records_per_session": (after.wal["wal_records"] - before.wal["wal_records"]) / n,
            "wal_fpi_per_session": (after.wal["wal_fpi"] - before.wal["wal_fpi"]) / n,
            "buffers_per_session": (db["blks_hit"] + db["blks_read"]) / n,
            "buffer_reads_per_session": db["blks_read"] / n,
            "commits_per_session": db["xact_commit"] / n,
            "tables_per_session": tables,
            "statements_loaded": self.statements,
            "statements": [
                {
                    "query": " ".join(r["query"].split())[:160],
                    "calls_per_session": round(r["calls"] / n, 2),
                    "ms_per_call": round(r["total_exec_time"] / max(r["calls"], 1), 4),
                    "ms_per_session": round(r["total_exec_time"] / n, 4),
                    "buffers_per_call": round(
                        (r["shared_blks_hit"] + r["shared_blks_read"]) / max(r["calls"], 1), 1
                    ),
                    "dirtied_per_call": round(r["shared_blks_dirtied"] / max(r["calls"], 1), 2),
                    "wal_bytes_per_call": round(int(r["wal_bytes"]) / max(r["calls"], 1)),
                    "wal_fpi_per_call": round(r["wal_fpi"] / max(r["calls"], 1), 2),
                }
                for r in statements
            ],
        }


def note(cost: dict[str, Any]) -> str:
    """The figures for the periodic row's notes."""
    hot = {
        name: f"{t['n_tup_hot_upd']:g}/{t['n_tup_upd']:g} HOT"
        for name, t in cost["tables_per_session"].items()
        if t.get("n_tup_upd")
    }
    text = (
        f"PostgreSQL server {cost['pg_server_cpu_ms_per_session']:.2f} ms CPU, "
        f"WAL {cost['wal_bytes_per_session']:,.0f} B ({cost['wal_records_per_session']:.1f} "
        f"records, {cost['wal_fpi_per_session']:.2f} full pages), "
        f"{cost['buffers_per_session']:.0f} buffers, "
        f"{cost['commits_per_session']:.1f} commits per session; updates per session {hot}"
    )
    if not cost["statements_loaded"]:
        text += "; pg_stat_statements not loaded"
    return text


def statements_table(cost: dict[str, Any]) -> str:
    """Markdown: the statements of the window by time, per session (for BENCHMARKS.md)."""
    out = [
        "| statement | calls/session | ms/call | buffers/call | dirtied/call | WAL B/call |",
        "|---|---|---|---|---|---|",
    ]
    for s in cost["statements"]:
        q = s["query"].replace("|", "/")
        out.append(
            f"| `{q}` | {s['calls_per_session']} | {s['ms_per_call']} | {s['buffers_per_call']} "
            f"| {s['dirtied_per_call']} | {s['wal_bytes_per_call']} |"
        )
    return "\n".join(out)
