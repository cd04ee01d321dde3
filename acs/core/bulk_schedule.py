"""When a bulk job may send (pure: no I/O): not before its start time, and,
if it has maintenance windows, only while one is open (acs.core.windows, the
same windows campaigns have).

A job that may not send queues nothing and knocks on no one; a task it queued
that no session has picked up by the time its window closes is withdrawn and
queued again at the next opening, so nothing reaches a device outside its
window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from acs.core.times import rfc3339
from acs.core.windows import Window, WindowError, is_open, next_opening, parse_window

#: a start this far in the past is taken as "now" (clocks differ, requests
#: take time); further back it is a mistake worth saying so
START_TOLERANCE = timedelta(minutes=5)
#: how far ahead a job may be scheduled: windows are searched from its start
MAX_AHEAD = timedelta(days=366)


class ScheduleError(ValueError):
    """A schedule refused, with the JSON path of the field at fault."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Schedule:
    start_at: datetime | None
    windows: tuple[Window, ...] = ()

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {"cron": w.cron, "durationMinutes": w.duration_minutes, "timezone": w.timezone}
            for w in self.windows
        ]


def check_schedule(
    start_at: datetime | None, windows: Sequence[dict[str, Any]], now: datetime
) -> Schedule:
    """The schedule as given, or ScheduleError: a start in the past beyond the
    tolerance or more than a year ahead, a window that is malformed or never
    opens after the start."""
    if start_at is not None:
        if start_at < now - START_TOLERANCE:
            raise ScheduleError(
                "startAt",
                f"{rfc3339(start_at)} is in the past (more than "
                f"{int(START_TOLERANCE.total_seconds())} s before now, {rfc3339(now)}); "
                "leave it out to start now",
            )
        if start_at > now + MAX_AHEAD:
            raise ScheduleError(
                "startAt", f"{rfc3339(start_at)} is more than {MAX_AHEAD.days} days ahead"
            )
    begin = max(now, start_at) if start_at is not None else now
    parsed: list[Window] = []
    for i, w in enumerate(windows):
        try:
            parsed.append(
                parse_window(
                    str(w["cron"]),
                    int(w["durationMinutes"]),
                    str(w.get("timezone", "UTC")),
                    now=begin,
                )
            )
        except WindowError as err:
            raise ScheduleError(f"windows[{i}]", str(err)) from None
    return Schedule(start_at, tuple(parsed))


def from_stored(start_at: datetime | None, windows: Sequence[dict[str, Any]]) -> Schedule:
    """A stored schedule: checked when the job was written."""
    return Schedule(
        start_at,
        tuple(
            Window(w["cron"], int(w["durationMinutes"]), w.get("timezone", "UTC")) for w in windows
        ),
    )


def held(schedule: Schedule, now: datetime) -> str | None:
    """Why the job may not send now, or None."""
    if schedule.start_at is not None and schedule.start_at > now:
        return f"scheduled: starts at {rfc3339(schedule.start_at)}"
    if not is_open(schedule.windows, now):
        opening = next_opening(schedule.windows, now)
        return "outside the maintenance windows; the next opens at " + (
            rfc3339(opening) if opening else "never"
        )
    return None
