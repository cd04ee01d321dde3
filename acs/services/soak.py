"""The health soak at work: watching devices after their install, and the gate.

Hooks into the campaign engine, each one call:
- ``on_start`` when a campaign starts: its audience is watched from then on
  (the baseline of each device's own upgrade), a control group is drawn from
  the last stages, and the control devices are asked to report the KPIs;
- ``begin`` when a device reports the target version (rollout.succeed): its
  soak starts, with what was seen before kept as its baseline;
- ``observe`` at every tick: new readings, verdicts, devices that left;
- ``decide`` in the tick instead of the plain stage rules;
- ``acknowledge`` when an operator resumes or approves.

KPIs are read without an extra session: at the start of a watch the device
gets a GetParameterValues (the values now) and a SetParameterAttributes
asking for passive notification, so every later change rides on its own
Informs, where the trigger of migration 0024 counts them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from acs.core import campaigns as rules
from acs.core import health as H
from acs.core import webhooks as hook_rules
from acs.core.filters import parse_filter
from acs.logs import log
from acs.services.catalog import stages_of
from acs.store import campaigns as campaign_store
from acs.store import health as store
from acs.store import tasks as task_store
from acs.store import webhooks as hooks

logger = logging.getLogger("acs.campaigns")

PASSIVE = 1  # TR-069 Table 44: Notification 1, changes ride on the next Inform


def utcnow() -> datetime:
    return datetime.now(UTC)


def soaks(campaign: campaign_store.Campaign) -> list[int]:
    return [H.soak_of(s) for s in campaign.stages]


@dataclass(slots=True)
class Watch:
    spec: H.HealthSpec
    acknowledged: dict[int, int] = field(default_factory=dict)
    watched: bool = False


async def define(conn: asyncpg.Connection, campaign_id: int, health: dict[str, Any] | None) -> None:
    """Store the campaign's health definition (already checked by parse_spec)."""
    if health is not None:
        await store.save_spec(conn, campaign_id, health)


async def watch_of(conn: asyncpg.Connection, campaign: campaign_store.Campaign) -> Watch | None:
    """The campaign's health rules; None when no stage soaks (today's behaviour)."""
    if not any(soaks(campaign)):
        return None
    loaded = await store.load_spec(conn, campaign.id)
    if loaded is None:
        return Watch(H.parse_spec(None))
    return Watch(H.parse_spec(loaded["spec"]), loaded["acknowledged"], loaded["watched"])


def kpi_paths(spec: H.HealthSpec) -> list[str]:
    return list(dict.fromkeys(p for k in spec.kpis for p in k.parameters))


async def _ask_for_kpis(
    conn: asyncpg.Connection, campaign_id: int, device_id: str, spec: H.HealthSpec
) -> None:
    """Jobs run in the device's next own session: notification on, values now."""
    paths = kpi_paths(spec)
    if not paths:
        return
    attrs = await task_store.enqueue(
        conn,
        device_id,
        "setParameterAttributes",
        {"parameterAttributes": [{"name": p, "notification": PASSIVE} for p in paths]},
    )
    values = await task_store.enqueue(
        conn, device_id, "getParameterValues", {"parameterNames": paths}
    )
    await store.add_own_tasks(conn, campaign_id, device_id, [attrs.id, values.id])


async def on_start(conn: asyncpg.Connection, campaign: campaign_store.Campaign) -> None:
    """The campaign started (its members are admitted): watch the audience."""
    watch = await watch_of(conn, campaign)
    if watch is None:
        return
    if await store.load_spec(conn, campaign.id) is None:
        await store.save_spec(conn, campaign.id, {})
    watched = await store.watch_audience(conn, campaign.id, [k.expr for k in watch.spec.kpis])
    control = await store.pick_control(conn, campaign.id, watch.spec.control_group)
    for device_id in control:
        await _ask_for_kpis(conn, campaign.id, device_id, watch.spec)
    log(
        logger,
        logging.INFO,
        "campaign_health_watch",
        campaign=campaign.id,
        devices=watched,
        control=len(control),
    )


def observation(row: dict[str, Any]) -> H.Observation:
    return H.Observation(
        since=row["since"],
        last_heard=row["last_heard"],
        interval_s=row["interval_s"],
        boot_events=tuple(tuple(e) for e in row["boots"]),
        jobs=row["jobs"],
        job_faults=row["job_faults"],
        kpi_failures=tuple(row["kpi_failures"] or ()),
        kpi_values=row["kpi_values"] or {},
    )


async def begin(
    conn: asyncpg.Connection, campaign: campaign_store.Campaign, member: campaign_store.Member
) -> None:
    """The device reports the target version: soaking, when its stage has a soak."""
    if member.rollback or member.stage is None or member.stage >= len(campaign.stages):
        return
    soak_s = H.soak_of(campaign.stages[member.stage])
    if not soak_s:
        return
    watch = await watch_of(conn, campaign)
    if watch is None:
        return
    before = await store.watch_row(conn, campaign.id, member.device_id, lock=True)
    baseline: dict[str, Any] | None = None
    tripped = False
    if before is not None and before["role"] != "soak":
        # judged up to the Download: what came after it is the upgrade's doing
        until = member.started_at or utcnow()
        found = H.signals(watch.spec, observation(before), until)
        tripped = any(s.tripped for s in found)
        baseline = {
            "since": before["since"].isoformat(),
            "until": until.isoformat(),
            "informs": before["informs"],
            "signals": [s.to_json() for s in found],
        }
    await store.begin_soak(
        conn,
        campaign.id,
        member.device_id,
        soak_s=soak_s,
        kpis=len(watch.spec.kpis),
        baseline=baseline,
        baseline_tripped=tripped,
        stage=member.stage,
    )
    await _ask_for_kpis(conn, campaign.id, member.device_id, watch.spec)
    log(
        logger,
        logging.INFO,
        "campaign_device_soaking",
        campaign=campaign.id,
        device=member.device_id,
        soak_s=soak_s,
    )


async def observe(conn: asyncpg.Connection, campaign: campaign_store.Campaign) -> None:
    """One tick of watching: readings at the Informs that came, then verdicts."""
    watch = await watch_of(conn, campaign)
    if watch is None:
        return
    spec = watch.spec
    async with conn.transaction():
        await store.no_jit(conn)
        heard = await store.read_signals(
            conn, campaign.id, [k.expr for k in spec.kpis], kpi_paths(spec)
        )
        left = await store.ignore_leavers(conn, campaign.id, parse_filter(campaign.filter), heard)
        if left:
            log(
                logger,
                logging.INFO,
                "campaign_health_ignored",
                campaign=campaign.id,
                devices=len(left),
                reason="left the campaign's audience",
            )
        now = utcnow()
        judged: list[tuple[str, str, list[dict[str, Any]], list[str], str | None]] = []
        for row in await store.to_judge(conn, campaign.id, spec.missed_informs, heard):
            seen = observation(row)
            if row["role"] == "control":
                found = H.signals(spec, seen, now)
                state = "watching"
            else:
                state, found = H.verdict(spec, seen, now, row["until"])
            tripped = [s.name for s in found if s.tripped]
            signals = [s.to_json() for s in found]
            if (state, signals, tripped) == (row["verdict"], row["signals"], list(row["tripped"])):
                continue  # nothing new: no write (a tick may look at thousands)
            judged.append((row["device_id"], state, signals, tripped, None))
            if state in ("healthy", "unhealthy"):
                log(
                    logger,
                    logging.INFO if state == "healthy" else logging.WARNING,
                    "campaign_device_" + state,
                    campaign=campaign.id,
                    device=row["device_id"],
                    signals=",".join(tripped) or None,
                )
        await store.set_judgements(conn, campaign.id, judged)


# --------------------------------------------------------------------------- the gate


async def stage_health(conn: asyncpg.Connection, campaign_id: int) -> dict[int, H.StageHealth]:
    control_n, control_bad = await store.control_rows(conn, campaign_id)
    control = H.Share(control_bad, control_n)
    per: dict[int, H.StageHealth] = {}
    baseline: dict[int, list[int]] = {}
    for r in await store.stage_rows(conn, campaign_id):
        h = per.setdefault(r["stage"], H.StageHealth())
        verdict = r["verdict"]
        if verdict == "soaking":
            h.soaking += r["n"]
        elif verdict == "healthy":
            h.healthy += r["n"]
        elif verdict == "unhealthy":
            h.unhealthy += r["n"]
            h.tripped = list(r["sample"] or [])
        elif verdict == "ignored":
            h.ignored += r["n"]
            continue
        b = baseline.setdefault(r["stage"], [0, 0])
        b[0] += r["baseline_tripped"]
        b[1] += r["with_baseline"]
    for r in await store.signal_rows(conn, campaign_id):
        if r["role"] == "soak" and r["stage"] in per:
            per[r["stage"]].signals[r["signal"]] = r["n"]
    for stage, h in per.items():
        observed = h.soaking + h.healthy + h.unhealthy
        h.comparison = H.Compared(
            "any",
            H.Share(h.unhealthy, observed),
            H.Share(*baseline.get(stage, [0, 0])),
            control,
        )
    return per


async def decide(
    conn: asyncpg.Connection,
    campaign: campaign_store.Campaign,
    counts: dict[int, rules.StageCounts],
    baseline: dict[int, int],
) -> rules.Decision:
    """The stage rules with soaks: soaking devices hold their stage, unhealthy
    ones beyond the baseline and the control group count as failed. Each
    health gate decision is recorded, announced and counted."""
    stages = stages_of(campaign)
    watch = await watch_of(conn, campaign)
    if watch is None:
        return rules.decide(stages, campaign.current_stage, counts, baseline)
    await store.no_jit(conn)  # decide runs in the tick's transaction
    health = await stage_health(conn, campaign.id)
    adjusted, by_health = H.adjusted_counts(
        stages, soaks(campaign), counts, health, watch.spec.margin, watch.acknowledged
    )
    merged = dict(baseline)
    for stage, n in watch.acknowledged.items():
        merged[stage] = merged.get(stage, 0) + n
    decision = rules.decide(stages, campaign.current_stage, adjusted, merged)
    stage = decision.stage if decision.stage is not None else campaign.current_stage
    h = health.get(stage)
    if decision.failure and h is not None and by_health.get(stage, 0) > 0:
        decision = rules.Decision(
            decision.action,
            H.gate_reason(decision, h, watch.spec.margin),
            decision.stage,
            failure=True,
        )
        await _gate(conn, campaign, watch, stage, decision.action, decision.reason, h.tripped, h)
    elif decision.action in ("advance", "pause", "complete") and soaks(campaign)[stage]:
        if decision.action == "complete" and campaign.membership == "continuous":
            return decision  # not applied: it runs until cancelled
        action = "passed" if decision.action != "pause" or "reached" in decision.reason else "pause"
        await _gate(conn, campaign, watch, stage, action, decision.reason, [], h)
    return decision


async def _gate(
    conn: asyncpg.Connection,
    campaign: campaign_store.Campaign,
    watch: Watch,
    stage: int,
    action: str,
    reason: str,
    devices: list[str],
    h: H.StageHealth | None,
) -> None:
    await store.record_gate(conn, campaign.id, stage, action, reason, devices)
    data: dict[str, Any] = {
        "campaign": campaign.id,
        "name": campaign.name,
        "stage": stage + 1,
        "action": action,
        "reason": reason,
        "devices": devices,
    }
    if h is not None and h.comparison is not None:
        data["comparison"] = h.comparison.to_json(watch.spec.margin)
        data["signals"] = dict(h.signals)
    await hooks.emit(conn, hook_rules.CAMPAIGN_HEALTH_GATE, data)
    log(
        logger,
        logging.WARNING if action != "passed" else logging.INFO,
        "campaign_health_gate",
        campaign=campaign.id,
        stage=stage + 1,
        action=action,
        devices=len(devices) or None,
        reason=reason,
    )


async def acknowledge(conn: asyncpg.Connection, campaign_id: int) -> None:
    """An operator resumed or approved: the unhealthy devices seen so far are
    acknowledged, so only new ones count against the failure thresholds."""
    campaign = await campaign_store.get(conn, campaign_id)
    if campaign is None:
        return
    watch = await watch_of(conn, campaign)
    if watch is None:
        return
    health = await stage_health(conn, campaign_id)
    await store.set_acknowledged(
        conn,
        campaign_id,
        {
            stage: min(h.unhealthy, h.comparison.excess(watch.spec.margin))
            for stage, h in health.items()
            if h.comparison is not None
        },
    )


# --------------------------------------------------------------------------- reading


SIGNALS = (H.REBOOTS, H.SILENCE, H.FAULT_RATE, H.KPI)


async def view(
    conn: asyncpg.Connection, campaign: campaign_store.Campaign
) -> dict[str, Any] | None:
    """The campaign's health as the API shows it: per stage the soaked devices,
    each signal against the baseline and the control group, and the gates."""
    watch = await watch_of(conn, campaign)
    if watch is None:
        return None
    margin = watch.spec.margin
    health = await stage_health(conn, campaign.id)
    control_n, control_bad = await store.control_rows(conn, campaign.id)
    by_signal: dict[tuple[str, int | None, str], int] = {}
    for r in await store.signal_rows(conn, campaign.id):
        by_signal[(r["role"], r["stage"], r["signal"])] = r["n"]
    control_signal: dict[str, int] = {}
    for (role, _stage, signal), n in by_signal.items():
        if role == "control":
            control_signal[signal] = control_signal.get(signal, 0) + n
    before = {
        (r["stage"], r["signal"]): r["n"]
        for r in await store.baseline_signal_rows(conn, campaign.id)
    }
    stages: list[dict[str, Any]] = []
    for index, soak_s in enumerate(soaks(campaign)):
        if not soak_s:
            continue
        h = health.get(index, H.StageHealth())
        observed = h.soaking + h.healthy + h.unhealthy
        with_baseline = h.comparison.baseline.observed if h.comparison is not None else 0
        compared = [
            H.Compared(
                signal,
                H.Share(by_signal.get(("soak", index, signal), 0), observed),
                H.Share(before.get((index, signal), 0), with_baseline),
                H.Share(control_signal.get(signal, 0), control_n),
            ).to_json(margin)
            for signal in SIGNALS
        ]
        stages.append(
            {
                "stage": index + 1,
                "soak": soak_s,
                "soaking": h.soaking,
                "healthy": h.healthy,
                "unhealthy": h.unhealthy,
                "ignored": h.ignored,
                "overall": h.comparison.to_json(margin) if h.comparison is not None else None,
                "signals": compared,
                "unhealthyDevices": h.tripped,
            }
        )
    gates = [
        {
            "stage": g["stage"] + 1,
            "action": g["action"],
            "reason": g["reason"],
            "devices": list(g["devices"]),
            "at": g["at"],
        }
        for g in await store.gates(conn, campaign.id)
    ]
    return {
        "definition": watch.spec.to_json(),
        "control": H.Share(control_bad, control_n).to_json(),
        "stages": stages,
        "gates": gates,
        "totals": await store.verdict_totals(conn, campaign.id),
    }
