"""RFC 3339 with Z, whatever offset a datetime came with."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from acs.core.times import rfc3339, rfc3339_or_none


def test_any_offset_becomes_the_same_instant_in_utc_with_z() -> None:
    paris = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 6, 1, 14, 0, tzinfo=paris)) == "2026-06-01T12:00:00Z"
    behind = timezone(-timedelta(hours=5, minutes=30))
    assert rfc3339(datetime(2026, 6, 1, 23, 45, 1, 250000, tzinfo=behind)) == (
        "2026-06-02T05:15:01.250000Z"
    )


def test_a_naive_datetime_is_taken_as_utc_and_none_stays_none() -> None:
    assert rfc3339(datetime(2026, 1, 1)) == "2026-01-01T00:00:00Z"
    assert rfc3339_or_none(None) is None
