"""Maintenance windows: when a firmware campaign may send a Download (pure: no I/O).

A window is a crontab expression saying when it opens, how many minutes it
then stays open, and the IANA zone the expression is read in: "0 2 * * *" in
Europe/Berlin opens at 02:00 on Berlin's wall clock all year, whatever the
UTC offset is that day. A window that opened at F is open for [F, F + duration).

APScheduler 3 computes the fire times. Several of its habits would silently
move an operator's window, so they are handled here rather than passed on:

- it numbers weekdays from Monday=0 where crontab counts from Sunday=0 (and
  7), so a numeric day-of-week is refused and names are required ("mon-fri");
- it ANDs day-of-month with day-of-week, where crontab fires on either when
  both are restricted ("0 2 1 * mon" is the 1st *and* every Monday), so such
  a cron is evaluated as two triggers;
- it is exact only while the zone's UTC offset stays put, so each stretch
  between DST changes is searched on its own (see ``_next_fire``);
- for a date that never exists ("0 0 30 2 *") it tries every year up to 9999
  before answering None (0.1-0.5 s per call), so every search here stops at
  ``HORIZON``; a window that opens less often than that counts as never.

Around DST: durations are elapsed time, not wall-clock time. A wall time the
spring-forward skips is read with the offset from before the jump, so an
opening there happens the jump's length late (01:30 in Europe/London on the
last Sunday of March opens at 02:30 BST); one on a wall time the fall-back
repeats happens twice. Every datetime returned is in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import timezone as FixedOffset
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped,unused-ignore]

#: a week: any longer and even a weekly window would never close
MAX_DURATION_MINUTES = 7 * 24 * 60
#: how far ahead a window must open at least once; 366-day years so that a
#: leap day ("0 0 29 2 *") is always reachable from any start
HORIZON = timedelta(days=5 * 366)
#: longer than any clock jump a zone has made (Samoa skipped 30 Dec 2011 whole)
_MAX_JUMP = timedelta(days=2)
#: zones change their UTC offset months apart, so probing at this step cannot
#: step over a change and its reversal together
_PROBE = timedelta(days=1)

# the operator's names for the five crontab fields, and APScheduler's
_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_TRIGGER_ARGS = ("minute", "hour", "day", "month", "day_of_week")
_EXAMPLE = "minute hour day-of-month month day-of-week, e.g. '0 2 * * *'"


class WindowError(ValueError):
    """A window that cannot be used as written; the message names the field to fix."""


@dataclass(frozen=True, slots=True)
class Window:
    """One maintenance window, as stored with a campaign.

    Build it with ``parse_window`` to have it checked; the functions below
    re-check a hand-built one and raise WindowError if it is malformed.
    """

    cron: str
    duration_minutes: int
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class _Spec:
    # one APScheduler trigger's worth of a window: a crontab that ORs its day
    # fields needs two of these
    zone: ZoneInfo
    fields: tuple[str, str, str, str, str]


def parse_window(
    cron: str, duration_minutes: int, timezone: str = "UTC", *, now: datetime | None = None
) -> Window:
    """Check an operator's window and return it, or raise WindowError saying what to fix.

    Besides the syntax, a window that would not open within ``HORIZON`` of
    ``now`` (default: the current time) is refused, since a campaign waiting
    on it would never start.
    """
    # stored with single spaces so that equal crons compare equal
    normalised = " ".join(cron.split()) if isinstance(cron, str) else cron
    window = Window(normalised, duration_minutes, timezone)
    _compile(window)
    if never_opens(window, datetime.now(UTC) if now is None else now):
        raise WindowError(
            f"never opens: cron {window.cron!r} in {timezone} has no opening in the next "
            f"5 years; check that the day-of-month exists in the month (there is no 30 Feb) "
            f"and agrees with the day-of-week"
        )
    return window


def always_open(windows: Sequence[Window]) -> bool:
    """No windows means the campaign is not restricted at all, not that it may never run."""
    return not windows


def open_window(windows: Sequence[Window], now: datetime) -> tuple[datetime, datetime] | None:
    """The (start, end) of a window opening that contains ``now``, else None.

    With no windows at all this returns None even though sending is allowed
    (see ``always_open``): there is no opening to report. When several
    openings contain ``now`` the one that stays open longest is returned.
    ``end`` is when that opening closes; a later opening that overlaps it
    (a cron firing more often than the duration) may keep the window open
    beyond it, so ask ``is_open`` again then rather than treating it as final.
    """
    return max(_containing(windows, _as_utc(now)), key=lambda span: span[1], default=None)


def is_open(windows: Sequence[Window], now: datetime) -> bool:
    """Whether a Download may be sent at ``now``."""
    return always_open(windows) or any(True for _ in _containing(windows, _as_utc(now)))


def next_opening(windows: Sequence[Window], now: datetime) -> datetime | None:
    """When a Download may next be sent: ``now`` if allowed already, else the earliest opening.

    None when no window opens within ``HORIZON``.
    """
    at = _as_utc(now)
    if is_open(windows, at):
        return at
    cap = at + HORIZON
    starts = (
        start
        for window in windows
        for spec in _compile(window)
        if (start := _next_fire(spec, at, cap)) is not None
    )
    return min(starts, default=None)


def never_opens(window: Window, now: datetime) -> bool:
    """True when ``window`` has no opening within ``HORIZON`` of ``now``."""
    at = _as_utc(now)
    return all(_next_fire(spec, at, at + HORIZON) is None for spec in _compile(window))


def _containing(windows: Sequence[Window], now: datetime) -> Iterator[tuple[datetime, datetime]]:
    # the earliest opening in (now - duration, now] is one that still covers
    # now; searching from just after now - duration keeps the end exclusive
    for window in windows:
        duration = timedelta(minutes=window.duration_minutes)
        for spec in _compile(window):
            start = _next_fire(spec, now - duration + timedelta(microseconds=1), now)
            if start is not None and start <= now:
                yield start, start + duration


def _next_fire(spec: _Spec, at: datetime, cap: datetime) -> datetime | None:
    """The first opening at or after ``at`` and no later than ``cap``, in UTC."""
    # APScheduler 3 is exact only while the UTC offset stays put: it crosses a
    # change by adding wall-clock time to UTC time and lands an hour off
    # (Berlin's "0 0 * * *" searched from 00:30 on the spring-forward Sunday
    # next fires on Tuesday), and what it makes of a wall time the jump skips
    # depends on where its search started. So each stretch of constant offset
    # is searched in a fixed-offset zone, where it is exact, and a skipped
    # wall time is read with the offset from before the jump.
    zone = spec.zone
    first: datetime | None = None
    for before, after in _offset_changes(zone, at - _MAX_JUMP, at):
        # a jump just before ``at`` whose skipped wall times are still ahead
        first = _earliest(first, _skipped(spec, before, after, at, cap))
    start = at
    while first is None or start < first:
        fire = _search(spec, _fixed(zone, start), start, first or cap)
        change = next(_offset_changes(zone, start, fire or first or cap), None)
        if change is None:
            return _earliest(first, fire)
        # ``fire`` lies beyond the change, computed with the wrong offset
        before, after = change
        first = _earliest(first, _skipped(spec, before, after, after, first or cap))
        start = after
    return first


def _skipped(
    spec: _Spec, before: datetime, after: datetime, at: datetime, cap: datetime
) -> datetime | None:
    """The first opening at or after ``at`` on a wall time that the change of offset
    between ``before`` and ``after`` skips, read with the old offset (so the jump's length late).
    """
    old, new = _offset(spec.zone, before), _offset(spec.zone, after)
    if new <= old:
        return None
    end = min(cap, after + (new - old) - timedelta(microseconds=1))
    return _search(spec, FixedOffset(old), max(at, after), end) if at <= end else None


def _search(spec: _Spec, zone: tzinfo, at: datetime, cap: datetime) -> datetime | None:
    minute, hour, day, month, day_of_week = spec.fields
    trigger = CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=day_of_week,
        timezone=zone,
        # the cap also stops APScheduler trying every year to 9999 for "0 0 30 2 *"
        end_date=cap,
    )
    fire: datetime | None = trigger.get_next_fire_time(None, at)
    return None if fire is None else fire.astimezone(UTC)


def _fixed(zone: ZoneInfo, instant: datetime) -> FixedOffset:
    return FixedOffset(_offset(zone, instant))


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


def _offset_changes(
    zone: ZoneInfo, start: datetime, end: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Each change of the zone's UTC offset in [start, end], as the whole seconds either side.

    Whole seconds because APScheduler rounds its start up to the second: from a
    fraction before the change it would start after it, and from a fraction
    after it would miss an opening at the change itself.
    """
    lo = start.replace(microsecond=0)
    end = end.replace(microsecond=0) + (timedelta(seconds=1) if end.microsecond else timedelta())
    offset = _offset(zone, lo)
    while lo < end:
        hi = min(lo + _PROBE, end)
        if _offset(zone, hi) == offset:
            lo = hi
            continue
        while hi - lo > timedelta(seconds=1):
            mid = lo + timedelta(seconds=(hi - lo) // timedelta(seconds=2))
            if _offset(zone, mid) == offset:
                lo = mid
            else:
                hi = mid
        yield lo, hi
        lo, offset = hi, _offset(zone, hi)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _as_utc(now: datetime) -> datetime:
    # a naive time would be read in the server's local zone by APScheduler
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")
    return now.astimezone(UTC)


@lru_cache(maxsize=1024)
def _compile(window: Window) -> tuple[_Spec, ...]:
    """Check every field of ``window`` and split it into the triggers it needs."""
    duration = window.duration_minutes
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise WindowError(f"duration_minutes must be a whole number of minutes, got {duration!r}")
    if not 1 <= duration <= MAX_DURATION_MINUTES:
        raise WindowError(
            f"duration_minutes must be between 1 and {MAX_DURATION_MINUTES} (one week), "
            f"got {duration}"
        )
    zone = _zone(window.timezone)
    fields = _cron_fields(window.cron)
    minute, hour, day, month, day_of_week = fields
    # crontab's own rule: a day field starting with "*" only narrows the other
    if day.startswith("*") or day_of_week.startswith("*"):
        return (_Spec(zone, fields),)
    return (
        _Spec(zone, (minute, hour, day, month, "*")),
        _Spec(zone, (minute, hour, "*", month, day_of_week)),
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        # ValueError: a key that is not a plain relative path, such as "" or "/etc/x"
        raise WindowError(
            f"timezone {name!r} is not a known IANA time zone name, e.g. 'Europe/London' or 'UTC'"
        ) from None


def _cron_fields(cron: str) -> tuple[str, str, str, str, str]:
    if not isinstance(cron, str):
        raise WindowError(f"cron must be text ({_EXAMPLE}), got {cron!r}")
    parts = cron.split()
    if len(parts) != 5:
        raise WindowError(f"cron {cron!r} has {len(parts)} fields, it needs 5: {_EXAMPLE}")
    if any(c.isdigit() for c in parts[4]):
        raise WindowError(
            f"cron day-of-week field {parts[4]!r}: write weekday names (sun, mon, tue, wed, "
            f"thu, fri, sat; e.g. 'mon-fri' or 'sat,sun'): numbers are ambiguous, crontab "
            f"counts from Sunday=0 but the scheduler from Monday=0"
        )
    # one field at a time, so that the message can say which field is wrong:
    # APScheduler's own quotes the bad value but not its field
    for name, arg, value in zip(_FIELD_NAMES, _TRIGGER_ARGS, parts, strict=True):
        try:
            CronTrigger(timezone=UTC, **{arg: value})
        except ValueError as exc:
            raise WindowError(f"cron {name} field {value!r}: {exc}") from None
    minute, hour, day, month, day_of_week = parts
    return minute, hour, day, month, day_of_week
