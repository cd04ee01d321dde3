"""When a bulk job may send: its start time and maintenance windows (issue 18 item 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from acs.core.bulk_schedule import ScheduleError, check_schedule, held

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NIGHT = {"cron": "0 2 * * *", "durationMinutes": 60, "timezone": "UTC"}


def test_a_start_in_the_past_beyond_the_tolerance_is_refused_with_the_reason() -> None:
    with pytest.raises(ScheduleError) as err:
        check_schedule(NOW - timedelta(hours=1), [], NOW)
    assert err.value.path == "startAt" and "in the past" in err.value.message
    # a few seconds late is "now": clocks differ and requests take time
    assert check_schedule(NOW - timedelta(seconds=30), [], NOW).start_at is not None


def test_a_start_more_than_a_year_ahead_is_refused() -> None:
    with pytest.raises(ScheduleError, match="days ahead") as err:
        check_schedule(NOW + timedelta(days=400), [], NOW)
    assert err.value.path == "startAt"


def test_a_window_that_never_opens_is_refused_naming_it() -> None:
    never = {"cron": "0 0 30 2 *", "durationMinutes": 60, "timezone": "UTC"}
    with pytest.raises(ScheduleError) as err:
        check_schedule(None, [NIGHT, never], NOW)
    assert err.value.path == "windows[1]" and "never opens" in err.value.message
    bad_zone = {"cron": "0 2 * * *", "durationMinutes": 60, "timezone": "Mars/Olympus"}
    with pytest.raises(ScheduleError) as err:
        check_schedule(None, [bad_zone], NOW)
    assert err.value.path == "windows[0]"


def test_a_job_waits_for_its_start_then_for_its_window() -> None:
    schedule = check_schedule(NOW + timedelta(hours=1), [NIGHT], NOW)
    assert held(schedule, NOW) == "scheduled: starts at 2026-12-01T13:00:00Z"
    after_start = NOW + timedelta(hours=2)
    assert held(schedule, after_start) == (
        "outside the maintenance windows; the next opens at 2026-12-02T02:00:00Z"
    )
    assert held(schedule, datetime(2026, 12, 2, 2, 30, tzinfo=UTC)) is None
    assert held(schedule, datetime(2026, 12, 2, 3, 0, tzinfo=UTC)) is not None  # closed at 03:00


def test_no_schedule_sends_at_once() -> None:
    schedule = check_schedule(None, [], NOW)
    assert held(schedule, NOW) is None
    assert schedule.as_json() == []
