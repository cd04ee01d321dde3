"""Health soak rules: signals, a device's verdict, the comparison and the gate (pure).

After a device of a stage with a ``soak`` reports the campaign's target
version it is *soaking*: watched for the soak's length. Four signals, each
with a threshold in the campaign's ``health``:

- unexpected reboots: an Inform with ``1 BOOT`` that the ACS did not cause
  (no ``M Reboot``/``M Download``/... and no TransferComplete in it);
- silence: more than ``missedInforms`` PeriodicInformIntervals without an Inform;
- fault rate: the share of the device's later jobs that faulted;
- KPIs: conditions in the filter language over the values the device reports.

A signal over its threshold makes the device ``unhealthy`` at once (no need to
wait for the end of the soak); a device that reaches the end of its soak with
none is ``healthy``.

The gate compares, never judges absolute numbers alone: the share of soaked
devices that are unhealthy is set against the same devices before their
upgrade (the baseline) and against devices of the audience not yet upgraded
over the same time (the control group). Only unhealthy devices beyond what
the worse of the two explains count against the firmware, so an evening
when the whole network dips does not halt a good image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from acs.core.campaigns import Amount, CampaignError, Decision, Stage, StageCounts
from acs.core.filters import (
    And,
    Comparison,
    Expr,
    FilterError,
    IsNull,
    Like,
    Not,
    Or,
    parse_filter,
)

MAX_SOAK_S = 30 * 86400  # a soak longer than this would hold a stage for over a month
MAX_KPIS = 10

# Inform events that say the ACS caused the boot (TR-069 3.7.1.5): a Reboot or
# a Download it asked for, a transfer it started, a factory reset it ordered.
ACS_CAUSED = frozenset(
    {
        "M Reboot",
        "M Download",
        "M ScheduleDownload",
        "M ChangeDUState",
        "7 TRANSFER COMPLETE",
        "10 AUTONOMOUS TRANSFER COMPLETE",
        "0 BOOTSTRAP",
    }
)

REBOOTS = "reboots"
SILENCE = "silence"
FAULT_RATE = "fault_rate"
KPI = "kpi"


class HealthError(ValueError):
    """A health definition that cannot work; ``path`` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Kpi:
    condition: str
    expr: Expr
    max_failures: int = 0  # bad readings allowed before the device is unhealthy

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(parameters_of(self.expr)))


@dataclass(frozen=True, slots=True)
class HealthSpec:
    reboots: int | None = 0  # unexpected reboots allowed during the soak; None: not watched
    missed_informs: int | None = 3  # silent PeriodicInformIntervals allowed; None: not watched
    fault_rate: Amount | None = None  # share of later jobs that may fault
    min_jobs: int = 2  # the fault rate is judged from this many finished jobs on
    kpis: tuple[Kpi, ...] = ()
    control_group: int = 20  # devices of the audience not yet upgraded, watched for comparison
    margin: Fraction = Fraction(0)  # percentage points the soaked share may exceed the reference

    def to_json(self) -> dict[str, Any]:
        return {
            "reboots": self.reboots,
            "missedInforms": self.missed_informs,
            "faultRate": None if self.fault_rate is None else str(self.fault_rate),
            "minJobs": self.min_jobs,
            "kpis": [{"condition": k.condition, "maxFailures": k.max_failures} for k in self.kpis],
            "controlGroup": self.control_group,
            "margin": f"{float(self.margin):g}%",
        }


def parameters_of(expr: Expr) -> Iterable[str]:
    """The parameter paths a condition reads (what the device must report)."""
    if isinstance(expr, And | Or):
        for item in expr.items:
            yield from parameters_of(item)
    elif isinstance(expr, Not):
        yield from parameters_of(expr.item)
    elif isinstance(expr, Comparison | Like | IsNull):
        if expr.field.startswith(("Device.", "InternetGatewayDevice.")):
            yield expr.field


def _int(raw: Mapping[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HealthError(key, f"must be a whole number from {low} to {high} (or null: off)")
    return value


def parse_spec(raw: Mapping[str, Any] | None) -> HealthSpec:
    """The campaign's ``health`` object (API names) as rules; HealthError names the field.
    A KPI condition that does not compile is refused with its position."""
    raw = raw or {}
    fault_rate = raw.get("faultRate")
    try:
        rate = None if fault_rate is None else Amount.parse(fault_rate)
    except CampaignError as err:
        raise HealthError("faultRate", str(err)) from None
    if rate is not None and not rate.percent:
        raise HealthError("faultRate", "give a share of the device's jobs, like '50%'")
    kpis: list[Kpi] = []
    raw_kpis = raw.get("kpis") or []
    if len(raw_kpis) > MAX_KPIS:
        raise HealthError("kpis", f"at most {MAX_KPIS} KPIs")
    for i, item in enumerate(raw_kpis):
        condition = str(item.get("condition", ""))
        try:
            expr = parse_filter(condition)
        except FilterError as err:
            raise HealthError(f"kpis[{i}].condition", str(err)) from None
        if expr is None:
            raise HealthError(f"kpis[{i}].condition", "position 0: empty condition")
        if not list(parameters_of(expr)):
            raise HealthError(
                f"kpis[{i}].condition",
                "position 0: a KPI must read at least one parameter the device reports "
                "(a path starting with Device. or InternetGatewayDevice.)",
            )
        max_failures = _int(item, "maxFailures", 0, 0, 1000)
        kpis.append(Kpi(condition, expr, max_failures or 0))
    margin_raw = raw.get("margin", "0%")
    try:
        margin = Amount.parse(margin_raw)
    except CampaignError as err:
        raise HealthError("margin", str(err)) from None
    if not margin.percent:
        raise HealthError("margin", "give percentage points, like '5%'")
    return HealthSpec(
        reboots=_int(raw, "reboots", 0, 0, 1000),
        missed_informs=_int(raw, "missedInforms", 3, 1, 1000),
        fault_rate=rate,
        min_jobs=_int(raw, "minJobs", 2, 1, 1000) or 1,
        kpis=tuple(kpis),
        control_group=_int(raw, "controlGroup", 20, 0, 10000) or 0,
        margin=margin.value,
    )


def soak_of(stage: Mapping[str, Any]) -> int:
    return int(stage.get("soak") or 0)


def check_soaks(stages: Sequence[Mapping[str, Any]], has_health: bool) -> None:
    """Refuse soaks that could never complete, with the reason."""
    for i, stage in enumerate(stages):
        soak = soak_of(stage)
        if soak < 0:
            raise HealthError(f"stages[{i}].soak", "a soak cannot be negative")
        if soak > MAX_SOAK_S:
            raise HealthError(
                f"stages[{i}].soak",
                f"a soak of {soak} s would hold the stage for over {MAX_SOAK_S // 86400} days;"
                " it could never complete in a campaign's life",
            )
    if has_health and not any(soak_of(s) for s in stages):
        raise HealthError(
            "health",
            "no stage has a soak, so these signals would never be watched; give a stage"
            " a soak (seconds) or leave health out",
        )


def unexpected_boot(events: Sequence[str]) -> bool:
    """An Inform that says the CPE booted, with nothing saying the ACS caused it."""
    codes = set(events)
    return "1 BOOT" in codes and not (codes & ACS_CAUSED)


def missed_intervals(
    last_heard: datetime | None, since: datetime, now: datetime, interval_s: int | None
) -> int:
    """Whole PeriodicInformIntervals without an Inform, counted from the last one
    (or the start of the watch); 0 when the device has no periodic Inform."""
    if not interval_s or interval_s <= 0:
        return 0
    start = max(last_heard or since, since)
    return max(0, math.floor((now - start).total_seconds() / interval_s))


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal of one device: what was seen and the limit it is held to."""

    name: str  # reboots | silence | fault_rate | kpi
    value: str
    limit: str
    tripped: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "signal": self.name,
            "value": self.value,
            "limit": self.limit,
            "tripped": self.tripped,
        }
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Observation:
    """What the ACS saw of one device over a watch (its soak, or before the upgrade)."""

    since: datetime
    last_heard: datetime | None
    interval_s: int | None
    boot_events: tuple[tuple[str, ...], ...] = ()  # the events of each 1 BOOT Inform
    jobs: int = 0
    job_faults: int = 0
    kpi_failures: tuple[int, ...] = ()  # bad readings per KPI
    kpi_values: Mapping[str, str | None] = field(default_factory=dict)


def signals(spec: HealthSpec, seen: Observation, now: datetime) -> list[Signal]:
    out: list[Signal] = []
    if spec.reboots is not None:
        boots = sum(1 for events in seen.boot_events if unexpected_boot(events))
        out.append(
            Signal(
                REBOOTS,
                str(boots),
                f"at most {spec.reboots}",
                boots > spec.reboots,
                "1 BOOT Informs the ACS did not cause",
            )
        )
    if spec.missed_informs is not None and seen.interval_s:
        missed = missed_intervals(seen.last_heard, seen.since, now, seen.interval_s)
        out.append(
            Signal(
                SILENCE,
                f"{missed} intervals",
                f"at most {spec.missed_informs}",
                missed > spec.missed_informs,
                f"PeriodicInformInterval {seen.interval_s} s",
            )
        )
    if spec.fault_rate is not None:
        if seen.jobs >= spec.min_jobs:
            share = Fraction(seen.job_faults * 100, seen.jobs)
            out.append(
                Signal(
                    FAULT_RATE,
                    f"{seen.job_faults} of {seen.jobs} jobs",
                    f"at most {spec.fault_rate}",
                    share > spec.fault_rate.value,
                )
            )
    for i, kpi in enumerate(spec.kpis):
        bad = seen.kpi_failures[i] if i < len(seen.kpi_failures) else 0
        values = ", ".join(f"{p} = {seen.kpi_values.get(p)!r}" for p in kpi.parameters)
        out.append(
            Signal(
                KPI,
                f"{bad} bad readings",
                f"at most {kpi.max_failures}",
                bad > kpi.max_failures,
                f"{kpi.condition} (last: {values})",
            )
        )
    return out


def verdict(
    spec: HealthSpec, seen: Observation, now: datetime, until: datetime
) -> tuple[str, list[Signal]]:
    """soaking | healthy | unhealthy, with the signals that decided it."""
    found = signals(spec, seen, now)
    if any(s.tripped for s in found):
        return "unhealthy", found
    if now >= until:
        return "healthy", found
    return "soaking", found


# --------------------------------------------------------------------------- the comparison


@dataclass(frozen=True, slots=True)
class Share:
    """Devices showing a signal among those observed."""

    showing: int = 0
    observed: int = 0

    @property
    def rate(self) -> Fraction:
        return Fraction(self.showing, self.observed) if self.observed else Fraction(0)

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": self.observed,
            "showing": self.showing,
            "share": f"{float(self.rate * 100):.1f}%",
        }


@dataclass(frozen=True, slots=True)
class Compared:
    """One signal (or "any"), upgraded vs the same devices before vs the control group."""

    signal: str
    upgraded: Share
    baseline: Share
    control: Share

    @property
    def reference(self) -> Fraction:
        return max(self.baseline.rate, self.control.rate)

    def excess(self, margin: Fraction) -> int:
        """Upgraded devices showing the signal beyond what the reference explains."""
        explained = math.floor(self.upgraded.observed * (self.reference + margin / 100))
        return max(0, self.upgraded.showing - explained)

    def to_json(self, margin: Fraction) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "upgraded": self.upgraded.to_json(),
            "baseline": self.baseline.to_json(),
            "control": self.control.to_json(),
            "beyondReference": self.excess(margin),
        }


@dataclass(slots=True)
class StageHealth:
    """The soaked devices of one stage, as the gate sees them."""

    soaking: int = 0
    healthy: int = 0
    unhealthy: int = 0
    ignored: int = 0
    comparison: Compared | None = None
    tripped: list[str] = field(default_factory=list)  # unhealthy devices, a sample
    signals: dict[str, int] = field(default_factory=dict)  # signal -> unhealthy devices


def adjusted_counts(
    stages: Sequence[Stage],
    soaks: Sequence[int],
    counts: Mapping[int, StageCounts],
    health: Mapping[int, StageHealth],
    margin: Fraction,
    acknowledged: Mapping[int, int],
) -> tuple[dict[int, StageCounts], dict[int, int]]:
    """The campaign's counts as the stage rules must see them with soaks on:
    a soaking device is still active (the stage has not finished with it), an
    unhealthy device beyond the reference failed, and one the reference
    explains counts as succeeded. Returns the counts and, per stage, the
    unhealthy devices counted as failed."""
    out: dict[int, StageCounts] = {}
    failed_by_health: dict[int, int] = {}
    for index, c in counts.items():
        h = health.get(index)
        if h is None or index >= len(soaks) or not soaks[index]:
            out[index] = c
            continue
        by_state = dict(c.by_state)
        excess = h.comparison.excess(margin) if h.comparison is not None else h.unhealthy
        excess = min(excess, h.unhealthy)
        counted = max(0, excess - acknowledged.get(index, 0))
        by_state["succeeded"] = max(0, by_state.get("succeeded", 0) - h.soaking - excess)
        if h.soaking:
            by_state["verifying"] = by_state.get("verifying", 0) + h.soaking
        if excess:
            by_state["failed"] = by_state.get("failed", 0) + excess
        out[index] = StageCounts(c.total, by_state)
        failed_by_health[index] = counted
    del stages
    return out, failed_by_health


def gate_reason(decision: Decision, stage_health: StageHealth | None, margin: Fraction) -> str:
    """The plain-words reason of a gate halting on health."""
    if stage_health is None or stage_health.comparison is None:
        return decision.reason
    cmp = stage_health.comparison
    names = ", ".join(f"{k} ({v})" for k, v in sorted(stage_health.signals.items())) or "none"
    stage = (decision.stage or 0) + 1
    return (
        f"stage {stage}: {cmp.upgraded.showing} of {cmp.upgraded.observed} soaked devices are"
        f" unhealthy ({names}); before the upgrade {cmp.baseline.to_json()['share']} of them"
        f" were, and {cmp.control.to_json()['share']} of the {cmp.control.observed} devices"
        f" not yet upgraded are: {cmp.excess(margin)} beyond that, failure threshold reached"
    )
