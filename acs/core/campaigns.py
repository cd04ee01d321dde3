"""Campaign rules: stages, thresholds and what a campaign does next (pure: no I/O).

A campaign's audience is ordered by a hash of (campaign name, device), so each
stage is a random sample of the fleet rather than its oldest serial numbers,
and a dry run, made before the campaign exists, shows the same stages.
Stage sizes are cumulative: stages "1%", "10%", "100%" take the first 1% of
the audience, then up to 10% in all, then everyone. A size given as a count is
cumulative too. Thresholds count the devices of one stage, each stage its own.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

ACTIVE_STATES = ("pending", "downloading", "installing", "verifying")
IN_FLIGHT_STATES = ("downloading", "installing", "verifying")
FINAL_STATES = ("succeeded", "failed", "skipped", "rolled_back")

# CPE faults worth another attempt: the network or the CPE's state, not the image
# (TR-069 Table A.7: 9002 internal error, 9004 resources exceeded, 9010 download
# failure, 9015 cannot contact server, 9017 download incomplete).
TRANSIENT_FAULTS = frozenset({9002, 9004, 9010, 9015, 9017})
# failures without a fault code that are worth another attempt
POWER_LOSS = "came back on the old version without TransferComplete (power lost while flashing?)"
TRANSFER_LOST = "the device kept in touch but never finished the transfer (it dropped the Download)"

_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


class CampaignError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Amount:
    """A count ("25") or a share ("10%") of some total. Exact fractions: "1.1%" of
    3000 devices is 33, where binary floating point would round up to 34."""

    value: Fraction
    percent: bool

    @classmethod
    def parse(cls, text: str | int) -> Amount:
        match = _AMOUNT.match(str(text))
        if match is None:
            raise CampaignError(f"{text!r} is neither a count nor a percentage like '10%'")
        value, percent = Fraction(match.group(1)), bool(match.group(2))
        if percent and value > 100:
            raise CampaignError(f"{text!r} is over 100%")
        if not percent and value.denominator != 1:
            raise CampaignError(f"{text!r}: a count must be a whole number")
        return cls(value, percent)

    def of(self, total: int) -> int:
        """The count this amount stands for among ``total``; a share rounds up,
        so "1%" of 50 devices is one device, not none."""
        if self.percent:
            return min(total, math.ceil(total * self.value / 100))
        return int(self.value)

    def __str__(self) -> str:
        number = str(self.value) if self.value.denominator == 1 else str(float(self.value))
        return f"{number}%" if self.percent else number


@dataclass(frozen=True, slots=True)
class Stage:
    size: Amount
    success: Amount = field(default_factory=lambda: Amount(Fraction(100), True))
    failure: Amount = field(default_factory=lambda: Amount(Fraction(10), True))
    on_success: str = "next"  # next | pause
    on_failure: str = "pause"  # pause | abort


def cutoffs(stages: Sequence[Stage], audience: int) -> list[int]:
    """Cumulative device counts at the end of each stage, never decreasing."""
    result: list[int] = []
    for stage in stages:
        n = min(audience, stage.size.of(audience))
        result.append(max(n, result[-1] if result else 0))
    return result


def stage_of(position: int, bounds: Sequence[int]) -> int | None:
    """The stage of the device at ``position`` (0-based) in the ordered audience;
    None past the last stage (a campaign whose last stage is under 100%)."""
    for index, bound in enumerate(bounds):
        if position < bound:
            return index
    return None


def audience_order(campaign_name: str, device_id: str) -> bytes:
    return hashlib.blake2s(f"{campaign_name}/{device_id}".encode(), digest_size=8).digest()


@dataclass(slots=True)
class StageCounts:
    total: int = 0
    by_state: dict[str, int] = field(default_factory=dict)

    def count(self, *states: str) -> int:
        return sum(self.by_state.get(s, 0) for s in states)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the tick does to a running campaign: nothing, advance, pause, abort, complete."""

    action: str  # none | advance | pause | abort | complete
    reason: str = ""
    stage: int | None = None
    failure: bool = False  # a failure threshold was crossed (rollback applies)


def decide(
    stages: Sequence[Stage],
    current: int,
    counts: Mapping[int, StageCounts],
    baseline: Mapping[int, int] | None = None,
) -> Decision:
    """The next step of a running campaign, from its per-stage member counts.

    Failure thresholds are checked for every stage that has started (a late
    failure of stage 1 still halts stage 2); ``baseline`` holds the failures an
    operator already acknowledged by resuming.
    """
    baseline = baseline or {}
    for index in range(min(current, len(stages) - 1) + 1):
        c = counts.get(index, StageCounts())
        failed = c.count("failed") - baseline.get(index, 0)
        limit = stages[index].failure.of(c.total)
        if c.total and failed > 0 and failed >= max(limit, 1):
            return Decision(
                "abort" if stages[index].on_failure == "abort" else "pause",
                f"stage {index + 1}: {c.count('failed')} of {c.total} devices failed, "
                f"failure threshold {stages[index].failure} reached",
                index,
                failure=True,
            )
    stage = stages[current]
    c = counts.get(current, StageCounts())
    succeeded = c.count("succeeded")
    active = c.count(*ACTIVE_STATES)
    last = current == len(stages) - 1
    reached = succeeded >= stage.success.of(c.total) and (c.total > 0 or active == 0)
    if last:
        everything_done = all(
            counts.get(i, StageCounts()).count(*ACTIVE_STATES) == 0 for i in range(len(stages))
        )
        if everything_done:
            return Decision("complete", "every device of every stage is finished")
        return Decision("none")
    if reached:
        if stage.on_success == "pause":
            return Decision(
                "pause",
                f"stage {current + 1} reached its success threshold ({succeeded} of {c.total});"
                f" {GATE} start stage {current + 2}",
                current,
            )
        return Decision("advance", f"stage {current + 1}: {succeeded} of {c.total} succeeded")
    if active == 0:
        return Decision(
            "pause",
            f"stage {current + 1} finished below its success threshold {stage.success} "
            f"({succeeded} of {c.total} succeeded); {GATE} go on",
            current,
        )
    return Decision("none")


# the words every stage-gate pause ends its reason with: the campaign waits for
# an operator's approve (a resume would only stop at the same gate again)
GATE = "approve to"


def awaits_approval(status: str, reason: str | None) -> bool:
    """Whether a paused campaign stands at a stage gate (approve, not resume)."""
    return status == "paused" and reason is not None and GATE in reason


def retry_delay(attempts: int, base_s: float) -> float:
    """Back-off before attempt ``attempts + 1``: base, 2x, 4x... capped at a day."""
    return float(min(86400.0, base_s * 2 ** max(0, attempts - 1)))


def is_transient(fault_code: int | None, reason: str) -> bool:
    if fault_code is not None:
        return fault_code in TRANSIENT_FAULTS
    return reason in (POWER_LOSS, TRANSFER_LOST)
