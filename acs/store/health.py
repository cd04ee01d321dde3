"""Health soak rows: a campaign's health definition, its watched devices, its gates.

Informs are counted by a trigger on ``devices`` (migration 0024): the session
code does nothing for health, and a device nobody watches costs one probe of
a partial index. KPI conditions are the filter language compiled to SQL
(acs.store.device_query) and read over the values the device last reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from acs.core.filters import Expr
from acs.store.device_query import compile_filter

READ_BATCH = 2000  # devices read per statement

WATCH_COLUMNS = (
    "w.campaign_id, w.device_id, w.role, w.stage, w.verdict, w.since, w.until, w.interval_s,"
    " w.informs, w.last_heard, w.boots, w.checked_at, w.kpi_failures, w.kpi_values, w.jobs,"
    " w.job_faults, w.own_tasks, w.baseline, w.baseline_tripped, w.signals, w.tripped, w.note,"
    " w.finished_at"
)

# The device's PeriodicInformInterval when periodic Informs are on (NULL: off),
# read from whichever root its data model has.
_INTERVAL = """(CASE WHEN lower(COALESCE(
        dp.tree -> 'Device.ManagementServer.PeriodicInformEnable' ->> 'v',
        dp.tree -> 'InternetGatewayDevice.ManagementServer.PeriodicInformEnable' ->> 'v',
        'true')) IN ('true', '1')
    THEN (SELECT CASE WHEN i ~ '^[0-9]{1,9}$' AND i::int > 0 THEN i::int END FROM (SELECT COALESCE(
        dp.tree -> 'Device.ManagementServer.PeriodicInformInterval' ->> 'v',
        dp.tree -> 'InternetGatewayDevice.ManagementServer.PeriodicInformInterval' ->> 'v')
        AS i) AS x) END)"""


def decode(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    for key in ("boots", "kpi_values", "baseline", "signals"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


async def no_jit(conn: asyncpg.Connection) -> None:
    """For the rest of the transaction: no JIT compilation. The tick's queries
    over a large campaign look costly to the planner and run in milliseconds;
    compiling them took a second (bench/soak.py)."""
    await conn.execute("SET LOCAL jit = off")


# --------------------------------------------------------------------------- definition


async def save_spec(conn: asyncpg.Connection, campaign_id: int, spec: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO campaign_health (campaign_id, spec) VALUES ($1, $2::jsonb)"
        " ON CONFLICT (campaign_id) DO UPDATE SET spec = EXCLUDED.spec",
        campaign_id,
        spec,
    )


async def load_spec(conn: asyncpg.Connection, campaign_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT spec, acknowledged, watched FROM campaign_health WHERE campaign_id = $1",
        campaign_id,
    )
    if row is None:
        return None
    return {
        "spec": row["spec"],
        "acknowledged": {int(k): v for k, v in row["acknowledged"].items()},
        "watched": row["watched"],
    }


async def set_acknowledged(
    conn: asyncpg.Connection, campaign_id: int, acknowledged: dict[int, int]
) -> None:
    await conn.execute(
        "UPDATE campaign_health SET acknowledged = $2::jsonb WHERE campaign_id = $1",
        campaign_id,
        {str(k): v for k, v in acknowledged.items()},
    )


# --------------------------------------------------------------------------- watching


def _kpi_sql(kpis: Sequence[Expr], first_param: int) -> tuple[list[str], list[object]]:
    """One SQL boolean per KPI over ``d``/``dp``, their parameters from ``first_param``."""
    fragments: list[str] = []
    params: list[object] = []
    for expr in kpis:
        sql, more = compile_filter(expr, first_param=first_param + len(params))
        fragments.append(sql)
        params.extend(more)
    return fragments, params


def _values_sql(paths: Sequence[str], first_param: int) -> tuple[str, list[object]]:
    if not paths:
        return "'{}'::jsonb", []
    parts = [
        f"${first_param + i}::text, dp.tree -> ${first_param + i}::text ->> 'v'"
        for i in range(len(paths))
    ]
    return f"jsonb_build_object({', '.join(parts)})", list(paths)


async def watch_audience(conn: asyncpg.Connection, campaign_id: int, kpis: Sequence[Expr]) -> int:
    """Every staged member is watched from now on: the baseline of its own
    upgrade, and the pool the control group is drawn from. A KPI false now
    (before any upgrade) is the baseline's first bad reading."""
    fragments, params = _kpi_sql(kpis, 2)
    bad = "ARRAY[" + ", ".join(f"CASE WHEN ({f}) IS FALSE THEN 1 ELSE 0 END" for f in fragments)
    bad += "]::int[]"
    n: int = await conn.fetchval(
        f"""
        WITH added AS (
            INSERT INTO health_watch (campaign_id, device_id, role, stage, since, last_heard,
                                      interval_s, kpi_failures, checked_at)
            SELECT cd.campaign_id, cd.device_id, 'before', cd.stage, now(), s.last_inform,
                   {_INTERVAL}, {bad if fragments else "'{}'::int[]"},
                   COALESCE(s.last_inform, '-infinity')
            FROM campaign_devices cd JOIN devices d ON d.id = cd.device_id
            LEFT JOIN device_sessions s ON s.device_id = d.id
            LEFT JOIN device_parameters dp ON dp.device_id = d.id
            WHERE cd.campaign_id = $1 AND cd.stage IS NOT NULL AND cd.state = 'pending'
            ON CONFLICT (campaign_id, device_id) DO NOTHING
            RETURNING 1)
        SELECT count(*)::int FROM added
        """,
        campaign_id,
        *params,
    )
    await conn.execute(
        "UPDATE campaign_health SET watched = true WHERE campaign_id = $1", campaign_id
    )
    return n


async def pick_control(conn: asyncpg.Connection, campaign_id: int, size: int) -> list[str]:
    """The control group: up to ``size`` watched devices of the latest stages (the
    last to be upgraded), in a stable order unrelated to their serial numbers."""
    rows = await conn.fetch(
        """
        WITH picked AS (
            SELECT w.device_id FROM health_watch w
            JOIN campaign_devices cd ON cd.campaign_id = w.campaign_id
                                    AND cd.device_id = w.device_id
            WHERE w.campaign_id = $1 AND w.role = 'before'
            ORDER BY cd.stage DESC, md5(w.device_id)
            LIMIT $2)
        UPDATE health_watch w SET role = 'control' FROM picked
        WHERE w.campaign_id = $1 AND w.device_id = picked.device_id
        RETURNING w.device_id
        """,
        campaign_id,
        size,
    )
    return [r["device_id"] for r in rows]


async def add_own_tasks(
    conn: asyncpg.Connection, campaign_id: int, device_id: str, task_ids: Sequence[int]
) -> None:
    await conn.execute(
        "UPDATE health_watch SET own_tasks = own_tasks || $3::bigint[]"
        " WHERE campaign_id = $1 AND device_id = $2",
        campaign_id,
        device_id,
        list(task_ids),
    )


async def watch_row(
    conn: asyncpg.Connection, campaign_id: int, device_id: str, *, lock: bool = False
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {WATCH_COLUMNS} FROM health_watch w WHERE campaign_id = $1 AND device_id = $2"
        + (" FOR UPDATE" if lock else ""),
        campaign_id,
        device_id,
    )
    return None if row is None else decode(row)


async def begin_soak(
    conn: asyncpg.Connection,
    campaign_id: int,
    device_id: str,
    *,
    soak_s: float,
    kpis: int,
    baseline: dict[str, Any] | None,
    baseline_tripped: bool,
    stage: int,
) -> None:
    """The device reports the target version: its watch starts over as a soak,
    with what was seen before the upgrade kept as its baseline."""
    await conn.execute(
        f"""
        INSERT INTO health_watch (campaign_id, device_id, role, stage, verdict, since, until,
                                  interval_s, last_heard, checked_at, kpi_failures,
                                  baseline, baseline_tripped)
        SELECT $1, d.id, 'soak', $7, 'soaking', now(), now() + make_interval(secs => $3),
               {_INTERVAL}, s.last_inform, '-infinity', array_fill(0, ARRAY[$4::int]),
               $5::jsonb, $6
        FROM devices d LEFT JOIN device_parameters dp ON dp.device_id = d.id
        LEFT JOIN device_sessions s ON s.device_id = d.id
        WHERE d.id = $2
        ON CONFLICT (campaign_id, device_id) DO UPDATE SET
            role = 'soak', stage = EXCLUDED.stage, verdict = 'soaking', since = EXCLUDED.since,
            until = EXCLUDED.until, interval_s = EXCLUDED.interval_s,
            last_heard = EXCLUDED.last_heard, informs = 0, boots = '[]',
            checked_at = '-infinity', kpi_failures = EXCLUDED.kpi_failures,
            kpi_values = '{{}}', jobs = 0, job_faults = 0, own_tasks = '{{}}',
            baseline = EXCLUDED.baseline, baseline_tripped = EXCLUDED.baseline_tripped,
            signals = '[]', tripped = '{{}}', note = NULL, finished_at = NULL
        """,
        campaign_id,
        device_id,
        float(soak_s),
        kpis,
        baseline,
        baseline_tripped,
        stage,
    )


async def read_signals(
    conn: asyncpg.Connection, campaign_id: int, kpis: Sequence[Expr], paths: Sequence[str]
) -> int:
    """Devices heard from since their last reading: one more KPI reading each
    (over the values they reported), and their later jobs counted again."""
    fragments, params = _kpi_sql(kpis, 2)
    values, value_params = _values_sql(paths, 2 + len(params))
    sets = ""
    if fragments:
        bad = ", ".join(
            f"COALESCE(w.kpi_failures[{i + 1}], 0) + CASE WHEN ({f}) IS FALSE THEN 1 ELSE 0 END"
            for i, f in enumerate(fragments)
        )
        sets = f", kpi_failures = ARRAY[{bad}]::int[], kpi_values = {values}"
    later_jobs = """FROM tasks t WHERE t.device_id = w.device_id AND t.finished_at >= w.since
        AND t.status IN ('done', 'fault') AND t.id <> ALL (w.own_tasks)
        AND t.id IS DISTINCT FROM cd.task_id"""
    # the devices heard from first (a partial index), then the update by id:
    # a join the planner cannot size would scan every tree of the campaign
    due = [
        r["device_id"]
        for r in await conn.fetch(
            "SELECT device_id FROM health_watch WHERE campaign_id = $1"
            " AND verdict IN ('watching', 'soaking') AND last_heard > checked_at",
            campaign_id,
        )
    ]
    heard: list[str] = []
    ids = 2 + len(params) + len(value_params)  # the placeholder of the batch's ids
    for first in range(0, len(due), READ_BATCH):
        done: list[str] | None = await conn.fetchval(
            f"""
            WITH heard AS (
                UPDATE health_watch w SET checked_at = w.last_heard{sets},
                    jobs = (SELECT count(*)::int {later_jobs}),
                    job_faults = (SELECT count(*)::int {later_jobs} AND t.status = 'fault')
                FROM devices d LEFT JOIN device_parameters dp ON dp.device_id = d.id,
                     campaign_devices cd
                WHERE w.campaign_id = $1 AND w.device_id = ANY(${ids}::text[])
                  AND d.id = w.device_id AND d.id = ANY(${ids}::text[])
                  AND cd.campaign_id = $1 AND cd.device_id = w.device_id
                  AND cd.device_id = ANY(${ids}::text[])
                  -- before the upgrade ends at its Download: what follows is the upgrade's
                  AND (w.role = 'soak' OR cd.state = 'pending')
                RETURNING w.device_id)
            SELECT array_agg(device_id) FROM heard
            """,
            campaign_id,
            *params,
            *value_params,
            due[first : first + READ_BATCH],
        )
        heard.extend(done or [])
    return heard


async def to_judge(
    conn: asyncpg.Connection, campaign_id: int, missed_informs: int | None, heard: list[str]
) -> list[dict[str, Any]]:
    """Soaking devices whose verdict may have changed: the soak is over, a reading
    came in (``heard``), a boot was seen, or they fell silent; and
    every control device (a handful)."""
    silent = (
        "OR (w.interval_s IS NOT NULL AND COALESCE(w.last_heard, w.since) < now()"
        " - make_interval(secs => w.interval_s * ($3::int + 1)))"
        if missed_informs is not None
        else "OR $3::int IS NULL"
    )
    rows = await conn.fetch(
        f"""
        SELECT {WATCH_COLUMNS} FROM health_watch w
        WHERE w.campaign_id = $1 AND (
            (w.role = 'control' AND w.verdict = 'watching')
            OR (w.verdict = 'soaking' AND (w.until <= now() OR w.device_id = ANY($2::text[])
                OR jsonb_array_length(w.boots) > 0 {silent})))
        """,
        campaign_id,
        heard,
        missed_informs,
    )
    return [decode(r) for r in rows]


async def set_judgements(conn: asyncpg.Connection, campaign_id: int, rows: Sequence[tuple]) -> None:
    """(device, verdict, signals, tripped, note); a final verdict stamps finished_at.
    One statement for all of them (a tick may judge thousands)."""
    if not rows:
        return
    await conn.execute(
        """
        UPDATE health_watch w SET verdict = u.verdict, signals = u.signals::jsonb,
            tripped = string_to_array(u.tripped, ','), note = COALESCE(u.note, w.note),
            finished_at = CASE WHEN u.verdict IN ('healthy', 'unhealthy', 'ignored')
                               THEN COALESCE(w.finished_at, now()) END
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
             AS u (device_id, verdict, signals, tripped, note)
        WHERE w.campaign_id = $1 AND w.device_id = u.device_id
          AND w.verdict IN ('watching', 'soaking')
        """,
        campaign_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        # JSON text: a list of lists would be taken for a two-dimensional array
        [json.dumps(r[2]) for r in rows],
        [",".join(r[3]) for r in rows],
        [r[4] for r in rows],
    )


async def ignore_leavers(
    conn: asyncpg.Connection, campaign_id: int, audience: Expr | None, heard: list[str]
) -> list[str]:
    """Watched devices just heard from (``heard``) that the campaign's filter no
    longer matches: their signals are ignored, and the row says so."""
    if audience is None or not heard:
        return []
    where, params = compile_filter(audience, first_param=3)
    rows = await conn.fetch(
        f"""
        UPDATE health_watch w SET verdict = 'ignored', finished_at = now(),
            note = 'left the campaign''s audience (its filter no longer matches the device):'
                   || ' its health signals are ignored'
        FROM devices d LEFT JOIN device_parameters dp ON dp.device_id = d.id
        WHERE w.campaign_id = $1 AND w.verdict IN ('watching', 'soaking')
          AND w.device_id = ANY($2::text[]) AND d.id = w.device_id
          AND NOT COALESCE(({where}), false)
        RETURNING w.device_id
        """,
        campaign_id,
        heard,
        *params,
    )
    return [r["device_id"] for r in rows]


async def stage_rows(conn: asyncpg.Connection, campaign_id: int) -> list[asyncpg.Record]:
    """Soaked devices per stage and verdict, with how many already showed a
    signal before their upgrade, and a sample of the unhealthy ones."""
    return await conn.fetch(
        """
        SELECT w.stage, w.verdict, count(*)::int AS n,
               count(*) FILTER (WHERE w.baseline IS NOT NULL)::int AS with_baseline,
               count(*) FILTER (WHERE w.baseline_tripped)::int AS baseline_tripped,
               CASE WHEN w.verdict = 'unhealthy' THEN (
                   SELECT array_agg(device_id) FROM (
                       SELECT u.device_id FROM health_watch u
                       WHERE u.campaign_id = $1 AND u.stage = w.stage
                         AND u.verdict = 'unhealthy' AND u.role = 'soak'
                       ORDER BY u.device_id LIMIT 20) AS s) END AS sample
        FROM health_watch w
        WHERE w.campaign_id = $1 AND w.role = 'soak' AND w.stage IS NOT NULL
        GROUP BY w.stage, w.verdict
        """,
        campaign_id,
    )


async def signal_rows(conn: asyncpg.Connection, campaign_id: int) -> list[asyncpg.Record]:
    """Per role, stage and signal: the devices showing it now."""
    return await conn.fetch(
        """
        SELECT w.role, w.stage, t AS signal, count(*)::int AS n
        FROM health_watch w CROSS JOIN LATERAL unnest(w.tripped) AS t
        WHERE w.campaign_id = $1 AND cardinality(w.tripped) > 0 AND w.verdict <> 'ignored'
        GROUP BY 1, 2, 3
        """,
        campaign_id,
    )


async def control_rows(conn: asyncpg.Connection, campaign_id: int) -> tuple[int, int]:
    """(control devices watched, those showing a signal)."""
    row = await conn.fetchrow(
        "SELECT count(*)::int AS n, count(*) FILTER (WHERE cardinality(tripped) > 0)::int AS bad"
        " FROM health_watch WHERE campaign_id = $1 AND role = 'control' AND verdict = 'watching'",
        campaign_id,
    )
    assert row is not None
    return row["n"], row["bad"]


async def verdict_totals(conn: asyncpg.Connection, campaign_id: int) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT verdict, count(*)::int AS n FROM health_watch"
        " WHERE campaign_id = $1 AND role = 'soak' GROUP BY verdict",
        campaign_id,
    )
    return {r["verdict"]: r["n"] for r in rows}


# --------------------------------------------------------------------------- gates


async def record_gate(
    conn: asyncpg.Connection,
    campaign_id: int,
    stage: int,
    action: str,
    reason: str,
    devices: Sequence[str],
) -> None:
    await conn.execute(
        "INSERT INTO health_gates (campaign_id, stage, action, reason, devices)"
        " VALUES ($1, $2, $3, $4, $5)",
        campaign_id,
        stage,
        action,
        reason,
        list(devices),
    )


async def gates(
    conn: asyncpg.Connection, campaign_id: int, limit: int = 20
) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT stage, action, reason, devices, at FROM health_gates WHERE campaign_id = $1"
        " ORDER BY id DESC LIMIT $2",
        campaign_id,
        limit,
    )


async def gate_counts(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Gate decisions per campaign and action (metrics)."""
    return await conn.fetch(
        "SELECT campaign_id, action, count(*)::int AS n FROM health_gates GROUP BY 1, 2"
    )


async def unhealthy_total(conn: asyncpg.Connection) -> int:
    """Unhealthy soaked devices of campaigns still running or paused (the overview)."""
    n: int = await conn.fetchval(
        "SELECT count(*)::int FROM health_watch w JOIN campaigns c ON c.id = w.campaign_id"
        " WHERE w.verdict = 'unhealthy' AND w.role = 'soak' AND c.status IN ('running', 'paused')"
    )
    return n


# --------------------------------------------------------------------------- the report


async def report_rows(
    conn: asyncpg.Connection, campaign_id: int, *, after: str | None, limit: int
) -> list[asyncpg.Record]:
    """Every member with its health, in device order (a page from ``after``)."""
    return await conn.fetch(
        """
        SELECT cd.device_id, cd.stage, cd.state, cd.rollback, cd.from_version,
               cd.target_version, cd.started_at, cd.finished_at, cd.code, cd.fault_code,
               cd.reason, w.role, w.verdict, w.since AS soak_started, w.until AS soak_until,
               w.finished_at AS soak_finished, w.signals, w.tripped, w.note, w.baseline
        FROM campaign_devices cd
        LEFT JOIN health_watch w ON w.campaign_id = cd.campaign_id AND w.device_id = cd.device_id
        WHERE cd.campaign_id = $1 AND ($2::text IS NULL OR cd.device_id > $2)
        ORDER BY cd.device_id LIMIT $3
        """,
        campaign_id,
        after,
        limit,
    )


async def baseline_signal_rows(conn: asyncpg.Connection, campaign_id: int) -> list[asyncpg.Record]:
    """Per stage and signal: soaked devices that showed it before their upgrade."""
    return await conn.fetch(
        """
        SELECT w.stage, s ->> 'signal' AS signal, count(*)::int AS n
        FROM health_watch w
        CROSS JOIN LATERAL jsonb_array_elements(COALESCE(w.baseline -> 'signals', '[]')) AS s
        WHERE w.campaign_id = $1 AND w.role = 'soak' AND w.verdict <> 'ignored'
          AND (s ->> 'tripped')::boolean
        GROUP BY 1, 2
        """,
        campaign_id,
    )
