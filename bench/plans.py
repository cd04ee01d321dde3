"""The query plans of what the ACS really sends PostgreSQL, on a bench-sized database.

For docs/scaling.md (the path past one PostgreSQL primary: which statements
would stay on one Citus shard if the device tables were distributed by device
id, and which would fan out to every shard). Nothing here is hand-written
SQL: an ACS runs in this process on the given database (one
``python -m bench.storage --keep`` left, say), every statement it sends
through asyncpg is recorded with its arguments, and afterwards each distinct
statement is EXPLAINed with those arguments (EXPLAIN without ANALYZE executes
nothing; each runs in a transaction that is rolled back anyway).

The phases: a few simulated CPEs bootstrap (discovery) and then open periodic
sessions; an operator searches the fleet through the API; the periodic ticks
(retention, the online gauge, transfer timeouts) run once.

    python -m bench.plans --database bench_storage      # markdown on stdout
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import asyncpg.connection

from acs.config import Settings
from acs.store import db, tokens
from bench import common

# the tables a distribution by device id would shard: devices and every table
# with a device_id column (read from the catalog in ``explain``)
DEVICE_TABLES: set[str] = {"devices"}
_SCAN = (
    r"(Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan)(?: Backward)?(?: using \w+)? on (\w+)"
)


@dataclass
class Statement:
    phase: str
    query: str
    args: tuple[Any, ...]
    calls: int = 1
    plan: list[str] = field(default_factory=list)


class Recorder:
    """Wraps asyncpg's query methods of every connection while ``phase`` is set."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.seen: dict[tuple[str, str], Statement] = {}

    _METHODS = ("fetch", "fetchrow", "fetchval", "execute")

    def install(self) -> None:
        cls = asyncpg.connection.Connection
        self._originals = {name: getattr(cls, name) for name in self._METHODS}
        for name, method in self._originals.items():
            setattr(cls, name, self._wrap(method))

    def uninstall(self) -> None:
        for name, method in self._originals.items():
            setattr(asyncpg.connection.Connection, name, method)

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        recorder = self

        async def recorded(conn: Any, query: str, *args: Any, **kw: Any) -> Any:
            if recorder.phase is not None and re.match(
                r"\s*(WITH|SELECT|INSERT|UPDATE|DELETE)\b", query, re.IGNORECASE
            ):
                key = (recorder.phase, query)
                if key in recorder.seen:
                    recorder.seen[key].calls += 1
                else:
                    recorder.seen[key] = Statement(recorder.phase, query, args)
            return await method(conn, query, *args, **kw)

        return recorded


def summary(query: str) -> str:
    text = " ".join(query.split())
    return text[:110] + ("…" if len(text) > 110 else "")


def plan_shape(plan: list[str]) -> str:
    """The plan's scan nodes on device tables, each with how it finds rows."""
    shapes = []
    for i, line in enumerate(plan):
        m = re.search(_SCAN, line)
        if m is None or m.group(2) not in DEVICE_TABLES:
            continue
        cond = ""
        for follow in plan[i + 1 : i + 4]:
            c = re.search(r"(Index Cond|Recheck Cond|Filter): (.*)", follow)
            if c:
                cond = c.group(2)[:80]
                break
        if m.group(1) == "Bitmap Heap Scan" and not cond:
            for follow in plan[i + 1 : i + 6]:
                c = re.search(r"Index Cond: (.*)", follow)
                if c:
                    cond = c.group(1)[:80]
                    break
        shapes.append(f"{m.group(1)} {m.group(2)} [{cond}]")
    return "; ".join(dict.fromkeys(shapes)) or "(no device table)"


_PINNED = re.compile(r"\b(device_id|id) = ('[^']*'::text|\$\d+)")
_COLOCATED = re.compile(r"\b(device_id|id) = \(?\w+\.(device_id|id)\b")


def by_device(plan: list[str]) -> bool:
    """Whether the statement would be a Citus router query: every scan of a device
    table finds its rows by one device id given as a value, or joins on the
    device id of another such scan (co-located), and at least one is pinned."""
    pinned = False
    for i, line in enumerate(plan):
        m = re.search(_SCAN, line)
        if m is None or m.group(2) not in DEVICE_TABLES:
            continue
        conds = []
        for follow in plan[i + 1 : i + 6]:
            if re.search(_SCAN, follow):
                break
            c = re.search(r"(?:Index Cond|Recheck Cond): (.*)", follow)
            if c:
                conds.append(c.group(1))
        if any(_PINNED.search(c) for c in conds):
            pinned = True
        elif not any(_COLOCATED.search(c) for c in conds):
            return False  # a scan over many devices: every shard
    return pinned or not any(
        (m := re.search(_SCAN, line)) and m.group(2) in DEVICE_TABLES for line in plan
    )


async def explain(dsn: str, statements: list[Statement]) -> None:
    conn = await db.connect(dsn)
    try:
        DEVICE_TABLES.update(
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.columns WHERE column_name = 'device_id'"
                " AND table_schema = 'public'"
            )
        )
        for st in statements:
            tr = conn.transaction()
            await tr.start()
            try:
                rows = await conn.fetch("EXPLAIN " + st.query, *st.args)
                st.plan = [r[0] for r in rows]
            except (asyncpg.PostgresError, TypeError, ValueError) as exc:
                st.plan = [f"(not explained: {type(exc).__name__}: {exc})"]
            finally:
                await tr.rollback()
    finally:
        await conn.close()


async def run(dsn: str, devices: int, *, skip_reseal: bool = True) -> list[Statement]:
    # imported late: bench.plans must be importable without starting anything
    from acs.services.reseal import MARKER

    # the one-time sealing of secrets already stored scans every tree with a
    # regex; on a bench database loaded by COPY it is not what we look at, and
    # on a loaded machine it outlasts the statement timeout: mark it done
    if skip_reseal:
        conn = await db.connect(dsn)
        try:
            await conn.execute(
                "INSERT INTO acs_keys (name, value) VALUES ($1, ''::bytea) ON CONFLICT DO NOTHING",
                MARKER,
            )
        finally:
            await conn.close()
    recorder = Recorder()
    recorder.install()
    try:
        await _phases(recorder, dsn, devices)
    finally:
        recorder.uninstall()
    statements = list(recorder.seen.values())
    await explain(dsn, statements)
    return statements


async def _phases(recorder: Recorder, dsn: str, devices: int) -> None:
    from acs.services import retention
    from acs.store import history
    from acs.store import tasks as task_store
    from acs.web.server import running_acs
    from cpe_simulator.fleet import Fleet, FleetConfig
    from cpe_simulator.profiles import Timing

    settings = Settings(
        host="127.0.0.1",
        cwmp_port=0,
        api_port=0,
        files_port=0,
        stun_port=0,
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        default_policies=False,
        data_dir=Path(tempfile.mkdtemp(prefix="acs-bench-plans-")),
    )
    async with running_acs(settings, dsn) as acs:
        fleet = Fleet(
            FleetConfig(
                acs_url=acs.url("cwmp"),
                devices=devices,
                serial_prefix=f"PLAN{secrets.token_hex(2).upper()}",
                username="cpe",
                password="cpe-pw",
                timing=Timing(slow_s=0.3, reboot_s=0.2, retry_min_wait_s=0.2),
            )
        )
        recorder.phase = "bootstrap (first Inform, discovery)"
        await fleet.start()
        try:
            await fleet.wait_for(
                lambda: all(d.sessions_ok >= 1 for d in fleet.devices.values()), within_s=900
            )
            recorder.phase = "periodic session"
            for serial in fleet.devices:
                await fleet.trigger(serial)
            recorder.phase = None
        finally:
            await fleet.stop()
        async with acs.pool.acquire() as conn:
            token = await tokens.create_token(conn, f"plans-{secrets.token_hex(3)}", "admin")
        recorder.phase = "operator API"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            base = f"http://127.0.0.1:{acs.ports['api']}/api/v1"
            some = next(iter(fleet.devices))
            for path in (
                '/devices?filter=Device.DeviceInfo.SoftwareVersion = "2.1.0"',
                "/devices?limit=50",
                f'/devices?filter=DeviceID.SerialNumber = "{some}"',
                "/tasks?status=fault",
            ):
                async with http.get(base + path) as resp:
                    await resp.read()
        recorder.phase = "periodic ticks"
        await retention.prune(acs.pool, settings)
        async with acs.pool.acquire() as conn:
            await history.set_online(conn, datetime.now(UTC).replace(second=0, microsecond=0), 600)
            await task_store.expire_transfers(conn, 3600)
        recorder.phase = None


def report(statements: list[Statement], out: Callable[[str], Any] = print) -> None:
    phases = dict.fromkeys(s.phase for s in statements)
    for phase in phases:
        rows = [s for s in statements if s.phase == phase]
        routed = sum(by_device(s.plan) for s in rows)
        out(f"\n### {phase}: {len(rows)} distinct statements, {routed} pinned to one device\n")
        out("| calls | statement | device-table scans (how rows are found) | one device |")
        out("|---|---|---|---|")
        for s in rows:
            cell = summary(s.query).replace("|", "\\|")
            shape = plan_shape(s.plan).replace("|", "\\|")
            out(f"| {s.calls} | `{cell}` | {shape} | {'yes' if by_device(s.plan) else '**no**'} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database", required=True, help="a database bench.storage --keep left")
    ap.add_argument("--devices", type=int, default=3, help="simulated CPEs that run sessions")
    ap.add_argument("--plans", action="store_true", help="print every full plan too")
    args = ap.parse_args(argv)
    dsn = asyncio.run(db.ensure_database(common.admin_dsn(), args.database))
    statements = asyncio.run(run(dsn, args.devices))
    report(statements)
    if args.plans:
        for s in statements:
            print(f"\n-- {s.phase} ({s.calls} calls)\n{s.query.strip()}\n", file=sys.stdout)
            print("\n".join(s.plan))


if __name__ == "__main__":
    main()
