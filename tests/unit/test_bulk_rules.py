"""The bulk job rate limit: a token bucket kept as (epoch, queued)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acs.core.bulk import allowance, burst_for, earned
from acs.core.knocks import BUSY_AGAIN_AFTER_S, again_after


def test_the_first_device_goes_at_once_then_one_per_interval() -> None:
    assert earned(60, 0) == 1
    assert earned(60, 999) == 1
    assert earned(60, 1000) == 2
    assert earned(6, 9_999) == 1 and earned(6, 10_000) == 2
    assert earned(60, -5) == 0  # a clock that went backwards earns nothing


def test_queued_devices_use_up_what_was_earned() -> None:
    assert allowance(60, 5_000, queued=0, burst=100).take == 6
    assert allowance(60, 5_000, queued=6, burst=100).take == 0
    assert allowance(60, 5_000, queued=9, burst=100).take == 0  # never negative


def test_a_backlog_beyond_the_burst_slides_the_epoch_instead_of_bursting() -> None:
    # an hour without ticks at 60/min earned 3601 devices; only the burst goes
    a = allowance(60, 3_600_000, queued=10, burst=4)
    assert a.take == 4
    # after the shift the job has earned exactly queued + burst
    assert earned(60, 3_600_000 - a.epoch_shift_ms) == 10 + 4
    # and the next second earns one more, as at the configured rate
    assert earned(60, 3_600_000 - a.epoch_shift_ms + 1000) == 15


def test_burst_is_two_ticks_of_the_rate_and_at_least_one() -> None:
    assert burst_for(60, 2.0) == 4
    assert burst_for(1, 2.0) == 1
    assert burst_for(6000, 0.3) == 60


def test_a_rate_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        allowance(0, 1000, 0, 1)


@given(
    rate=st.integers(1, 60_000),
    burst=st.integers(1, 50),
    gaps=st.lists(st.integers(0, 120_000), min_size=1, max_size=40),
)
def test_no_device_is_ever_queued_before_its_time(rate: int, burst: int, gaps: list[int]) -> None:
    """Whatever the tick times (late, early, after an outage), the n-th device
    (0-based) is queued no sooner than n * 60 / rate s after the job's start."""
    epoch, now, queued = 0, 0, 0
    for gap in gaps:
        now += gap
        a = allowance(rate, now - epoch, queued, burst)
        assert 0 <= a.take <= burst and a.epoch_shift_ms >= 0
        for n in range(queued, queued + a.take):
            assert now * rate >= n * 60_000  # exact: now >= n * 60000 / rate
        queued += a.take
        epoch += a.epoch_shift_ms


@given(rate=st.integers(1, 6000), tick_ms=st.integers(100, 10_000))
def test_regular_ticks_keep_the_configured_rate(rate: int, tick_ms: int) -> None:
    """Ticking every tick_ms with two ticks' burst loses nothing: after ten
    minutes the job has queued what ten minutes earn."""
    burst = burst_for(rate, tick_ms / 1000)
    epoch, queued, now = 0, 0, 0
    while now < 600_000:
        now += tick_ms
        a = allowance(rate, now - epoch, queued, burst)
        queued += a.take
        epoch += a.epoch_shift_ms
    assert queued == earned(rate, now)


def test_only_a_busy_device_is_knocked_again() -> None:
    # 503: the CPE is up and limits the requests it takes (TR-069 3.2.2); try later
    assert again_after(503) == BUSY_AGAIN_AFTER_S > 0
    # no answer, wrong credentials, other refusals: a retry would not help
    for status in (None, 401, 403, 404, 500):
        assert again_after(status) is None
