"""The fleet's history in 5-minute buckets: which series exist, how they add up.

Counters (sessions, boots, faults...) are sums: each worker adds what it saw
in a bucket, and a coarser step (an hour, a day) is the sum of its buckets.
The online-devices gauge is a level: a coarser step takes its highest bucket.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

BUCKET = timedelta(minutes=5)
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

# series name -> what it counts (the API's and the charts' wording)
COUNTERS = {
    "sessions": "CWMP sessions served",
    "sessions_abandoned": "sessions that ended abandoned",
    "boots": "Informs with 1 BOOT",
    "cpe_faults": "CWMP faults answered by CPEs",
    "jobs_faulted": "jobs that ended in fault",
    "connection_requests": "connection requests sent",
    "connection_requests_failed": "connection requests that failed",
}
GAUGES = {"online": "devices seen in the hour before the bucket"}
SERIES = {**COUNTERS, **GAUGES}

STEPS = {"5m": BUCKET, "1h": timedelta(hours=1), "1d": timedelta(days=1)}


def bucket_of(at: datetime) -> datetime:
    """The start of the 5-minute bucket ``at`` falls in."""
    return EPOCH + ((at - EPOCH) // BUCKET) * BUCKET


def step_start(at: datetime, step: timedelta) -> datetime:
    return EPOCH + ((at - EPOCH) // step) * step


def fill(
    points: dict[datetime, int], since: datetime, until: datetime, step: timedelta
) -> list[tuple[datetime, int]]:
    """Every step from ``since`` to ``until`` with its value, 0 where nothing was
    recorded: a chart's gaps are then quiet times, not missing points."""
    out = []
    t = step_start(since, step)
    while t < until:
        out.append((t, points.get(t, 0)))
        t += step
    return out
