"""Rules of bulk jobs: how many devices the rate limit lets a job queue now,
and what a device's state in the job is. No I/O.

The rate limit is a token bucket whose whole state is two persisted values:
the job's ``rate_epoch`` and how many devices it has queued. By ``elapsed``
after the epoch the job has earned ``1 + floor(rate * elapsed / 60 s)``
devices, so the first goes at once and the n-th (0-based) no sooner than
``n * 60 / rate`` seconds after the epoch. Because nothing lives in memory, an
ACS restart resumes the count where it was instead of starting a fresh
bucket (a burst) or forgetting what was queued (a gap in the count).

Tokens are capped at ``burst``: after a long pause of the ticks (the ACS was
down, the database was slow) the epoch slides forward instead of letting a
backlog of tokens out at once. The epoch only ever moves forward, so the
promise above — the n-th device no sooner than n * 60 / rate after the
job's start — holds for the job's whole life.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: what a device of a bulk job can be: not queued yet, skipped when its turn
#: came (its task could never run there, acs.core.tasks.never_runs), or its
#: job's status
NOT_QUEUED = "notQueued"
SKIPPED = "skipped"
DEVICE_STATES = (
    NOT_QUEUED,
    SKIPPED,
    "pending",
    "running",
    "done",
    "fault",
    "expired",
    "cancelled",
)
FINAL_TASK_STATES = frozenset({"done", "fault", "expired", "cancelled"})
JOB_STATES = ("running", "paused", "cancelled", "completed")

MAX_RATE_PER_MINUTE = 60_000


@dataclass(frozen=True, slots=True)
class Allowance:
    take: int  # devices to queue now
    epoch_shift_ms: int  # move the job's rate epoch forward by this much (0: leave it)


def earned(rate_per_minute: int, elapsed_ms: int) -> int:
    """Devices a job may have queued ``elapsed_ms`` after its rate epoch."""
    if elapsed_ms < 0:
        return 0
    return 1 + (rate_per_minute * elapsed_ms) // 60_000


def allowance(rate_per_minute: int, elapsed_ms: int, queued: int, burst: int) -> Allowance:
    """How many devices to queue now, at most ``burst`` at once.

    Integer milliseconds, not floats: a float epoch drifts by a rounding error
    per restart and can let one device too many through at a boundary.
    """
    if rate_per_minute < 1:
        raise ValueError("the rate must be at least one device per minute")
    burst = max(1, burst)
    available = earned(rate_per_minute, elapsed_ms) - queued
    if available <= burst:
        return Allowance(max(0, available), 0)
    # the earliest elapsed time at which queued + burst had been earned
    capped_ms = math.ceil((queued + burst - 1) * 60_000 / rate_per_minute)
    shift = max(0, elapsed_ms - capped_ms)
    return Allowance(min(burst, earned(rate_per_minute, capped_ms) - queued), shift)


def burst_for(rate_per_minute: int, tick_s: float) -> int:
    """Tokens a job may hold: two ticks' worth, so a tick that runs a little late
    still keeps the configured rate, and never fewer than one."""
    return max(1, math.ceil(rate_per_minute * 2 * tick_s / 60))
