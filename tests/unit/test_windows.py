"""Maintenance windows: validation, containment at the edges, time zones and DST, next opening."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from acs.core.windows import (
    HORIZON,
    MAX_DURATION_MINUTES,
    Window,
    WindowError,
    always_open,
    is_open,
    never_opens,
    next_opening,
    open_window,
    parse_window,
)

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)  # a Wednesday in winter (no DST anywhere in EU)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def window(cron: str, minutes: int, tz: str = "UTC") -> Window:
    return parse_window(cron, minutes, tz, now=NOW)


# --- parse_window: what it accepts and how it refuses -------------------------------------


def test_parse_window_returns_the_window_with_whitespace_normalised() -> None:
    w = parse_window("  0   2 * *\t*  ", 60, "Europe/London", now=NOW)
    assert w == Window("0 2 * * *", 60, "Europe/London")


def test_parse_window_defaults_to_utc_and_the_current_time() -> None:
    assert parse_window("0 2 * * *", 60) == Window("0 2 * * *", 60, "UTC")


@pytest.mark.parametrize(
    ("cron", "field"),
    [
        ("61 2 * * *", "minute"),
        ("0 25 * * *", "hour"),
        ("0 2 32 * *", "day-of-month"),
        ("0 2 * 13 *", "month"),
        ("0 2 * * funday", "day-of-week"),
        ("x 2 * * *", "minute"),
        ("0 2-1 * * *", "hour"),
    ],
)
def test_a_bad_cron_field_is_named(cron: str, field: str) -> None:
    with pytest.raises(WindowError, match=f"cron {field} field"):
        window(cron, 60)


@pytest.mark.parametrize("cron", ["", "0 2 * *", "0 2 * * * *", "@daily", "every night"])
def test_a_cron_without_five_fields_is_refused(cron: str) -> None:
    with pytest.raises(WindowError, match="needs 5: minute hour day-of-month month day-of-week"):
        window(cron, 60)


@pytest.mark.parametrize("dow", ["0", "1-5", "7", "*/2", "mon,3"])
def test_a_numeric_day_of_week_is_refused_because_it_is_ambiguous(dow: str) -> None:
    # APScheduler 3 reads 0 as Monday, crontab as Sunday: refusing beats guessing
    with pytest.raises(WindowError, match="day-of-week field .* write weekday names"):
        window(f"0 2 * * {dow}", 60)


def test_weekday_names_are_accepted() -> None:
    for dow in ["mon-fri", "sat,sun", "sun", "*"]:
        assert window(f"0 2 * * {dow}", 60).cron == f"0 2 * * {dow}"


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "/etc/passwd", "../UTC", "GMT+25"])
def test_an_unknown_timezone_is_refused(tz: str) -> None:
    with pytest.raises(WindowError, match="timezone .* is not a known IANA time zone"):
        window("0 2 * * *", 60, tz)


@pytest.mark.parametrize("minutes", [0, -5, MAX_DURATION_MINUTES + 1, 10**9])
def test_a_duration_out_of_range_is_refused(minutes: int) -> None:
    with pytest.raises(WindowError, match=r"duration_minutes must be between 1 and 10080"):
        window("0 2 * * *", minutes)


@pytest.mark.parametrize("minutes", [True, 1.5, "60"])
def test_a_duration_that_is_not_whole_minutes_is_refused(minutes: object) -> None:
    with pytest.raises(WindowError, match="duration_minutes must be a whole number"):
        window("0 2 * * *", minutes)  # type: ignore[arg-type]


@pytest.mark.parametrize("minutes", [1, MAX_DURATION_MINUTES])
def test_the_duration_limits_themselves_are_allowed(minutes: int) -> None:
    assert window("0 2 * * *", minutes).duration_minutes == minutes


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"])
def test_a_window_that_never_opens_is_refused(cron: str) -> None:
    with pytest.raises(WindowError, match=r"^never opens: cron '.*' in UTC has no opening"):
        window(cron, 60)


def test_a_rare_window_is_accepted_as_long_as_it_opens_within_five_years() -> None:
    assert window("0 0 29 2 *", 60).cron == "0 0 29 2 *"  # next: 2028
    assert window("0 0 30 2 mon", 60).cron == "0 0 30 2 mon"  # 30 Feb never, Mondays do


def test_window_error_is_a_value_error() -> None:
    # callers that only know ValueError (pydantic validators) still catch it
    with pytest.raises(ValueError):
        window("0 2 * *", 60)


# --- never_opens ----------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 2,4,6,9,11 *", "59 23 31 11 *"])
def test_never_opens_is_true_and_quick_for_impossible_dates(cron: str) -> None:
    # unbounded, APScheduler would try every year up to 9999 before giving up
    started = time.perf_counter()
    assert never_opens(Window(cron, 60), NOW)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "cron",
    [
        "0 2 * * *",
        "0 0 29 2 *",
        "0 0 31 12 *",
        "59 23 31 * *",
        "0 0 30 2 mon",  # 30 Feb or any Monday in February, as in crontab
    ],
)
def test_never_opens_is_false_for_dates_that_occur(cron: str) -> None:
    assert not never_opens(Window(cron, 60), NOW)


def test_never_opens_rejects_a_malformed_hand_built_window() -> None:
    with pytest.raises(WindowError, match="cron hour field"):
        never_opens(Window("0 24 * * *", 60), NOW)


# --- containment: start inclusive, end exclusive --------------------------------------------


def test_open_from_the_first_instant_to_just_before_the_end() -> None:
    w = [window("0 2 * * *", 60)]
    assert not is_open(w, utc(2025, 1, 15, 1, 59, 59, 999999))
    assert is_open(w, utc(2025, 1, 15, 2, 0))
    assert is_open(w, utc(2025, 1, 15, 2, 30))
    assert is_open(w, utc(2025, 1, 15, 2, 59, 59, 999999))
    assert not is_open(w, utc(2025, 1, 15, 3, 0))
    assert not is_open(w, utc(2025, 1, 15, 12, 0))


def test_open_window_reports_the_opening_in_utc() -> None:
    w = [window("0 2 * * *", 90)]
    assert open_window(w, utc(2025, 1, 15, 2, 0)) == (
        utc(2025, 1, 15, 2, 0),
        utc(2025, 1, 15, 3, 30),
    )
    start, end = open_window(w, utc(2025, 1, 15, 3, 29)) or (None, None)
    assert start == utc(2025, 1, 15, 2, 0) and end == utc(2025, 1, 15, 3, 30)
    assert start is not None and start.tzinfo is UTC
    assert open_window(w, utc(2025, 1, 15, 3, 30)) is None


def test_a_one_minute_window_is_open_for_exactly_that_minute() -> None:
    w = [window("15 4 * * *", 1)]
    assert is_open(w, utc(2025, 1, 15, 4, 15, 59))
    assert not is_open(w, utc(2025, 1, 15, 4, 16))


def test_a_window_spanning_midnight_is_open_the_next_morning() -> None:
    w = [window("0 23 * * *", 120)]
    assert is_open(w, utc(2025, 1, 15, 23, 0))
    assert is_open(w, utc(2025, 1, 16, 0, 30))
    assert open_window(w, utc(2025, 1, 16, 0, 30)) == (utc(2025, 1, 15, 23), utc(2025, 1, 16, 1))
    assert not is_open(w, utc(2025, 1, 16, 1, 0))
    assert not is_open(w, utc(2025, 1, 15, 22, 59))


def test_a_window_spanning_new_year_is_open_the_next_year() -> None:
    w = [window("0 22 31 12 *", 240)]
    assert is_open(w, utc(2026, 1, 1, 1, 0))
    assert not is_open(w, utc(2026, 1, 1, 2, 0))


def test_times_in_other_zones_are_compared_as_instants() -> None:
    w = [window("0 2 * * *", 60)]
    assert is_open(w, datetime(2025, 1, 15, 3, 30, tzinfo=ZoneInfo("Europe/Paris")))  # 02:30Z
    assert not is_open(w, datetime(2025, 1, 15, 2, 30, tzinfo=ZoneInfo("Europe/Paris")))


def test_a_naive_now_is_refused_rather_than_read_as_server_local_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open([window("0 2 * * *", 60)], datetime(2025, 1, 15, 2, 30))


def test_a_malformed_hand_built_window_raises_instead_of_reading_as_closed() -> None:
    with pytest.raises(WindowError, match="timezone 'Nowhere/Land'"):
        is_open([Window("0 2 * * *", 60, "Nowhere/Land")], NOW)
    with pytest.raises(WindowError, match="duration_minutes"):
        open_window([Window("0 2 * * *", 0)], NOW)


# --- time zones and DST ---------------------------------------------------------------------


def test_a_berlin_window_follows_berlin_wall_clock_in_winter_and_summer() -> None:
    w = [window("0 2 * * *", 60, "Europe/Berlin")]
    # winter, CET = UTC+1: 02:00-03:00 Berlin is 01:00-02:00 UTC
    assert is_open(w, utc(2025, 1, 15, 1, 30))
    assert open_window(w, utc(2025, 1, 15, 1, 30)) == (utc(2025, 1, 15, 1), utc(2025, 1, 15, 2))
    assert not is_open(w, utc(2025, 1, 15, 2, 0))
    # summer, CEST = UTC+2: 02:00-03:00 Berlin is 00:00-01:00 UTC
    assert is_open(w, utc(2025, 7, 15, 0, 30))
    assert not is_open(w, utc(2025, 7, 15, 1, 30))


def test_a_window_west_of_utc_opens_on_the_previous_utc_day() -> None:
    w = [window("0 22 * * *", 60, "America/New_York")]  # 22:00 EST = 03:00 UTC next day
    assert is_open(w, utc(2025, 1, 16, 3, 30))
    assert not is_open(w, utc(2025, 1, 15, 22, 30))


def test_a_london_window_on_the_spring_forward_day_works() -> None:
    # 2025-03-30: London jumps from 01:00 GMT to 02:00 BST (01:00 UTC)
    w = [window("30 2 * * *", 60, "Europe/London")]
    assert next_opening(w, utc(2025, 3, 29, 23, 0)) == utc(2025, 3, 30, 1, 30)  # 02:30 BST
    assert is_open(w, utc(2025, 3, 30, 2, 0))
    assert not is_open(w, utc(2025, 3, 30, 2, 30))


def test_an_opening_in_the_skipped_hour_happens_an_hour_later_on_the_wall_clock() -> None:
    # 01:30 does not exist in London on 2025-03-30; the window opens at 02:30 BST instead
    w = [window("30 1 * * *", 60, "Europe/London")]
    assert next_opening(w, utc(2025, 3, 30, 0, 0)) == utc(2025, 3, 30, 1, 30)
    assert not is_open(w, utc(2025, 3, 30, 0, 45))
    assert not is_open(w, utc(2025, 3, 30, 1, 29, 59))
    # open for its whole hour, also when asked after the jump (APScheduler alone says no)
    for minute in (30, 45, 59):
        assert is_open(w, utc(2025, 3, 30, 1, minute))
    for minute in (0, 15, 29):
        assert is_open(w, utc(2025, 3, 30, 2, minute))
    assert open_window(w, utc(2025, 3, 30, 2, 15)) == (
        utc(2025, 3, 30, 1, 30),
        utc(2025, 3, 30, 2, 30),
    )
    assert not is_open(w, utc(2025, 3, 30, 2, 30))
    # and asked between the jump and the late opening, it is still to come today
    assert next_opening(w, utc(2025, 3, 30, 1, 10)) == utc(2025, 3, 30, 1, 30)
    # and the next day is back to 01:30 local
    assert next_opening(w, utc(2025, 3, 30, 12, 0)) == utc(2025, 3, 31, 0, 30)


def test_every_opening_in_the_skipped_hour_happens_an_hour_late() -> None:
    w = [window("*/20 1 * * *", 10, "Europe/London")]  # 01:00, 01:20, 01:40 local
    assert next_opening(w, utc(2025, 3, 30, 0, 50)) == utc(2025, 3, 30, 1, 0)  # 02:00 BST
    assert next_opening(w, utc(2025, 3, 30, 1, 10)) == utc(2025, 3, 30, 1, 20)
    assert next_opening(w, utc(2025, 3, 30, 1, 30)) == utc(2025, 3, 30, 1, 40)
    assert is_open(w, utc(2025, 3, 30, 1, 45))
    assert not is_open(w, utc(2025, 3, 30, 1, 50))
    assert next_opening(w, utc(2025, 3, 30, 1, 50)) == utc(2025, 3, 31, 0, 0)


def test_a_skipped_midnight_opens_an_hour_late() -> None:
    # 2025-09-07: Santiago jumps from 00:00 -04 straight to 01:00 -03 (04:00 UTC)
    w = [window("0 0 * * *", 60, "America/Santiago")]
    assert next_opening(w, utc(2025, 9, 6, 12, 0)) == utc(2025, 9, 7, 4, 0)
    assert is_open(w, utc(2025, 9, 7, 4, 30))
    assert next_opening(w, utc(2025, 9, 7, 5, 0)) == utc(2025, 9, 8, 3, 0)


def test_the_opening_after_a_spring_forward_is_not_skipped() -> None:
    # APScheduler alone, searching from 00:30 on Berlin's spring-forward Sunday, says Tuesday
    midnight = [window("0 0 * * *", 60, "Europe/Berlin")]
    assert next_opening(midnight, utc(2025, 3, 30, 0, 10)) == utc(2025, 3, 30, 22, 0)
    all_day = [window("0 0 * * *", 23 * 60, "Europe/Berlin")]
    assert is_open(all_day, utc(2025, 3, 30, 22, 30))  # Monday 00:30 CEST


def test_a_skipped_opening_in_new_york() -> None:
    # 2025-03-09: New York jumps from 02:00 EST to 03:00 EDT (07:00 UTC)
    w = [window("30 2 * * *", 60, "America/New_York")]
    assert next_opening(w, utc(2025, 3, 9, 7, 5)) == utc(2025, 3, 9, 7, 30)  # 03:30 EDT
    assert is_open(w, utc(2025, 3, 9, 8, 15))
    assert not is_open(w, utc(2025, 3, 9, 8, 30))


def test_an_opening_in_the_repeated_hour_happens_twice() -> None:
    # 2025-10-26: London's 01:00-02:00 happens at 00:00Z (BST) and again at 01:00Z (GMT)
    w = [window("30 1 * * *", 20, "Europe/London")]
    assert next_opening(w, utc(2025, 10, 25, 23, 0)) == utc(2025, 10, 26, 0, 30)
    assert not is_open(w, utc(2025, 10, 26, 1, 0))
    assert next_opening(w, utc(2025, 10, 26, 1, 0)) == utc(2025, 10, 26, 1, 30)
    assert is_open(w, utc(2025, 10, 26, 1, 40))


def test_the_duration_is_elapsed_time_across_a_dst_change() -> None:
    # opens 00:00 GMT; 180 real minutes later is 03:00Z, which London calls 04:00 BST
    w = [window("0 0 * * *", 180, "Europe/London")]
    assert open_window(w, utc(2025, 3, 30, 2, 0)) == (utc(2025, 3, 30, 0), utc(2025, 3, 30, 3))
    assert not is_open(w, utc(2025, 3, 30, 3, 0))


# --- day-of-month and day-of-week -----------------------------------------------------------


def test_day_of_month_and_day_of_week_both_set_means_either_as_in_crontab() -> None:
    w = [window("0 2 1 * mon", 60)]
    monday_8th, wednesday_1st, tuesday_9th = (
        utc(2025, 9, 8, 2, 30),
        utc(2025, 10, 1, 2, 30),
        utc(2025, 9, 9, 2, 30),
    )
    assert (monday_8th.weekday(), wednesday_1st.weekday(), tuesday_9th.weekday()) == (0, 2, 1)
    assert is_open(w, monday_8th)
    assert is_open(w, wednesday_1st)
    assert not is_open(w, tuesday_9th)


def test_a_starred_day_field_only_narrows_the_other_as_in_crontab() -> None:
    w = [window("0 2 */2 * mon", 60)]  # odd days of the month that are Mondays
    assert is_open(w, utc(2025, 9, 1, 2, 30))  # Monday the 1st
    assert not is_open(w, utc(2025, 9, 8, 2, 30))  # Monday the 8th
    assert not is_open(w, utc(2025, 9, 3, 2, 30))  # Wednesday the 3rd


def test_weekday_names_mean_the_days_they_name() -> None:
    weekend = [window("0 2 * * sat,sun", 60)]
    assert is_open(weekend, utc(2025, 9, 6, 2, 30))  # Saturday
    assert is_open(weekend, utc(2025, 9, 7, 2, 30))  # Sunday
    assert not is_open(weekend, utc(2025, 9, 8, 2, 30))  # Monday
    assert next_opening(weekend, utc(2025, 9, 8, 2, 30)) == utc(2025, 9, 13, 2, 0)


# --- several windows ------------------------------------------------------------------------


def test_any_open_window_is_enough() -> None:
    w = [window("0 2 * * *", 60), window("0 14 * * *", 30, "Europe/Berlin")]  # 13:00Z in winter
    assert is_open(w, utc(2025, 1, 15, 2, 10))
    assert is_open(w, utc(2025, 1, 15, 13, 10))
    assert not is_open(w, utc(2025, 1, 15, 13, 30))
    assert not is_open(w, utc(2025, 1, 15, 8, 0))


def test_when_several_openings_contain_now_the_longest_lasting_is_reported() -> None:
    w = [window("0 2 * * *", 60), window("30 1 * * *", 180), window("0 0 * * *", 90)]
    assert open_window(w, utc(2025, 1, 15, 2, 15)) == (
        utc(2025, 1, 15, 1, 30),
        utc(2025, 1, 15, 4, 30),
    )


def test_an_opening_overlapping_the_previous_one_keeps_the_window_open() -> None:
    w = [window("0 * * * *", 90)]  # every hour for 90 minutes: never closes
    for minute in range(0, 24 * 60, 7):
        assert is_open(w, NOW + timedelta(minutes=minute))
    # the reported end is only the earliest covering opening's: a bound, not the last instant
    assert open_window(w, utc(2025, 1, 15, 12, 10)) == (
        utc(2025, 1, 15, 11),
        utc(2025, 1, 15, 12, 30),
    )


# --- next_opening ---------------------------------------------------------------------------


def test_next_opening_is_now_while_open() -> None:
    w = [window("0 2 * * *", 60)]
    assert next_opening(w, utc(2025, 1, 15, 2, 0)) == utc(2025, 1, 15, 2, 0)
    assert next_opening(w, utc(2025, 1, 15, 2, 59)) == utc(2025, 1, 15, 2, 59)


def test_next_opening_is_the_coming_start_when_closed() -> None:
    w = [window("0 2 * * *", 60)]
    assert next_opening(w, utc(2025, 1, 15, 1, 0)) == utc(2025, 1, 15, 2, 0)
    assert next_opening(w, utc(2025, 1, 15, 1, 59, 59, 1)) == utc(2025, 1, 15, 2, 0)
    assert next_opening(w, utc(2025, 1, 15, 3, 0)) == utc(2025, 1, 16, 2, 0)


def test_next_opening_is_the_earliest_of_several_windows() -> None:
    w = [window("0 22 * * *", 60), window("0 2 * * *", 60, "Europe/Berlin")]  # 01:00Z in winter
    assert next_opening(w, utc(2025, 1, 15, 12, 0)) == utc(2025, 1, 15, 22, 0)
    assert next_opening(w, utc(2025, 1, 15, 23, 0)) == utc(2025, 1, 16, 1, 0)


def test_next_opening_finds_a_rare_window() -> None:
    w = [window("0 0 29 2 *", 60)]
    assert next_opening(w, NOW) == utc(2028, 2, 29, 0, 0)


def test_next_opening_is_none_when_nothing_opens_within_the_horizon() -> None:
    started = time.perf_counter()
    assert next_opening([Window("0 0 30 2 *", 60)], NOW) is None
    assert next_opening([Window("0 0 30 2 *", 60), Window("0 0 31 4 *", 60)], NOW) is None
    assert time.perf_counter() - started < 1.0
    assert HORIZON >= timedelta(days=5 * 365)


def test_next_opening_returns_utc_for_any_input_zone() -> None:
    now = datetime(2025, 1, 15, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 02:00Z: open
    opening = next_opening([window("0 2 * * *", 60)], now)
    assert opening == utc(2025, 1, 15, 2, 0)
    assert opening is not None and opening.tzinfo is UTC


# --- no windows at all ----------------------------------------------------------------------


def test_no_windows_means_no_restriction() -> None:
    assert always_open([])
    assert is_open([], NOW)
    assert next_opening([], NOW) == NOW
    # but there is no opening to report
    assert open_window([], NOW) is None


def test_some_windows_means_restricted() -> None:
    assert not always_open([window("0 2 * * *", 60)])
