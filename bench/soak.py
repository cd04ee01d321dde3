"""The campaign tick with the health soak on, over a large campaign.

A campaign of N devices (100,000 in the full run) whose every member has
installed the image and is soaking: each tick reads the Informs that came
since the last one (KPI readings, later jobs), judges the devices whose
verdict may have changed, and runs the gate over every stage. Between ticks
a share of the fleet Informs as a periodic fleet would (some with an
unexpected 1 BOOT), through the same trigger a real session fires.

Figures: wall time per tick (median and worst), and how much of it the
database took (wall time minus this process's CPU time during the tick).

    python -m bench.soak --quick       # 2,000 devices, a few seconds
    python -m bench.soak --devices 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from acs.services import campaigns
from acs.store import db
from bench import common

SCENARIO = "soak"
GOAL_S = 1.0
KPI = 'Device.IP.Interface.1.Status = "Up"'
INTERVAL_S = 300  # the fleet's PeriodicInformInterval
TICK_S = 2.0  # the campaign tick's period the Informs between ticks stand for


async def load(conn: db.asyncpg.Connection, n: int) -> int:
    """N devices with trees, a soaking campaign over all of them; its id."""
    await conn.execute(
        """
        INSERT INTO devices (id, oui, product_class, serial_number, manufacturer,
                             last_events, software_version, hardware_version)
        SELECT 'ACDE48-HGW-SOAK' || lpad(i::text, 8, '0'), 'ACDE48', 'HGW',
               'SOAK' || lpad(i::text, 8, '0'), 'SimCPE', '{2 PERIODIC}',
               '2.0.0', 'HW1.0'
        FROM generate_series(1, $1) AS i
        """,
        n,
    )
    await conn.execute("UPDATE device_sessions SET last_inform = now()")
    await conn.execute(
        """
        INSERT INTO device_parameters (device_id, tree)
        SELECT id, jsonb_build_object(
            'Device.ManagementServer.PeriodicInformInterval', jsonb_build_object('v', $1::text),
            'Device.ManagementServer.PeriodicInformEnable', jsonb_build_object('v', 'true'),
            'Device.IP.Interface.1.Status', jsonb_build_object('v', 'Up'))
        FROM devices
        """,
        str(INTERVAL_S),
    )
    stages = [{"size": "100%", "soak": 21600, "failureThreshold": "10%"}]
    cid: int = await conn.fetchval(
        """
        INSERT INTO campaigns (name, status, channel, stages, started_at, audience)
        VALUES ('bench-soak', 'running', 'stable', $1, now(), $2) RETURNING id
        """,
        stages,
        n,
    )
    health = {
        "reboots": 0,
        "missedInforms": 3,
        "faultRate": "50%",
        "kpis": [{"condition": KPI}],
        "controlGroup": 0,
    }
    await conn.execute(
        "INSERT INTO campaign_health (campaign_id, spec, watched) VALUES ($1, $2, true)",
        cid,
        health,
    )
    await conn.execute(
        """
        INSERT INTO campaign_devices (campaign_id, device_id, stage, state, from_version,
                                      target_version, started_at, finished_at)
        SELECT $1, id, 0, 'succeeded', '1.0.0', '2.0.0', now(), now() FROM devices
        """,
        cid,
    )
    await conn.execute(
        """
        INSERT INTO health_watch (campaign_id, device_id, role, stage, verdict, since, until,
                                  interval_s, last_heard, checked_at, kpi_failures)
        SELECT $1, id, 'soak', 0, 'soaking', now(), now() + interval '6 hours', $2,
               now(), now(), '{0}' FROM devices
        """,
        cid,
        INTERVAL_S,
    )
    await conn.execute("ANALYZE")
    return cid


async def informs(conn: db.asyncpg.Connection, n: int, share_boot: float) -> int:
    """The Informs of one tick period: devices chosen at random, as sessions write them."""
    count = max(1, round(n * TICK_S / INTERVAL_S))
    await conn.execute(
        """
        WITH told AS (
            UPDATE devices SET
                last_events = CASE WHEN random() < $2 THEN '{1 BOOT}'::text[]
                                   ELSE '{2 PERIODIC}'::text[] END
            WHERE id IN (SELECT id FROM devices ORDER BY random() LIMIT $1)
            RETURNING id)
        UPDATE device_sessions SET last_inform = clock_timestamp()
        WHERE device_id IN (SELECT id FROM told)
        """,
        count,
        share_boot,
    )
    return count


async def run(n: int, ticks: int, database: str) -> dict[str, object]:
    dsn = await common.fresh_database(database)
    pool = await db.create_pool(dsn)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
            started = time.monotonic()
            cid = await load(conn, n)
            loaded_s = time.monotonic() - started
            await campaigns.tick_campaign(conn, cid)  # warm: plans, caches
            walls: list[float] = []
            db_times: list[float] = []
            heard = 0
            for _ in range(ticks):
                heard += await informs(conn, n, share_boot=0.01)
                wall0, cpu0 = time.perf_counter(), time.process_time()
                await campaigns.tick_campaign(conn, cid)
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                walls.append(wall)
                db_times.append(max(0.0, wall - cpu))
            verdicts = {
                r["verdict"]: r["n"]
                for r in await conn.fetch(
                    "SELECT verdict, count(*)::int AS n FROM health_watch GROUP BY 1"
                )
            }
            status = await conn.fetchval("SELECT status FROM campaigns WHERE id = $1", cid)
    finally:
        await pool.close()
        await common.drop_database(database)
    return {
        "walls": walls,
        "db": db_times,
        "loaded_s": loaded_s,
        "heard": heard,
        "verdicts": verdicts,
        "status": status,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--database", default=f"bench_soak_{os.getpid()}")
    args = ap.parse_args(argv)
    n, ticks = (2_000, 3) if args.quick else (args.devices, args.ticks)
    r = asyncio.run(run(n, ticks, args.database))
    walls, dbs = r["walls"], r["db"]
    assert isinstance(walls, list) and isinstance(dbs, list)
    median, worst = statistics.median(walls), max(walls)
    print(f"{n:,} soaking campaign devices (loaded in {r['loaded_s']:.1f} s), {ticks} ticks")
    print(f"{r['heard']:,} Informs between ticks in all; verdicts after: {r['verdicts']}")
    print("| tick | wall s | database s |")
    print("|---|---|---|")
    for i, (w, d) in enumerate(zip(walls, dbs, strict=True), start=1):
        print(f"| {i} | {w:.3f} | {d:.3f} |")
    met = worst < GOAL_S
    print(f"worst tick {worst:.3f} s, goal < {GOAL_S} s: {'met' if met else 'NOT met'}")
    result = {
        "scenario": SCENARIO,
        "rows": [
            {
                "target": f"campaign tick with health soak, {n:,} soaking devices",
                "goal": f"< {GOAL_S:g} s per tick",
                "measured": (
                    f"median {median:.3f} s, worst {worst:.3f} s; database "
                    f"{statistics.median(dbs):.3f} s median"
                ),
                "value": round(worst, 4),
                "met": met,
                "ratio": f"{worst / GOAL_S:.3f}",
                "notes": (
                    f"one KPI, reboots, silence and fault rate watched; "
                    f"{round(n * TICK_S / INTERVAL_S):,} Informs between ticks "
                    f"(PeriodicInformInterval {INTERVAL_S} s, a tick every {TICK_S:g} s); "
                    f"campaign {r['status']} after"
                ),
            }
        ],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
