"""The back-off rule for failed CPE passwords, and the in-memory state that applies it."""

from __future__ import annotations

import pytest

from acs.core.auth_throttle import Throttle, address_key, user_key
from acs.web.cpe_auth_state import MemoryAuthState

RULE = Throttle(max_failures=3, window_s=60.0, backoff_s=2.0, backoff_max_s=30.0)


def test_refusal_starts_at_the_limit_and_doubles_up_to_the_cap() -> None:
    assert [RULE.block_s(n) for n in range(1, 8)] == [0, 0, 2, 4, 8, 16, 30]
    assert RULE.block_s(10**6) == 30  # no float overflow for a persistent guesser


def test_zero_failures_allowed_means_never_refused() -> None:
    off = Throttle(max_failures=0, window_s=60.0, backoff_s=2.0, backoff_max_s=30.0)
    assert off.block_s(1000) == 0


def test_keys_are_bounded_and_kept_apart() -> None:
    assert user_key("x" * 10_000) == "user:" + "x" * 256
    assert user_key("1.2.3.4") != address_key("1.2.3.4")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_state_counts_within_the_window_and_forgets_after_it() -> None:
    clock = Clock()
    state = MemoryAuthState(RULE, clock=clock)
    keys = [user_key("u"), address_key("a")]
    assert await state.count_failure(keys) == 0
    assert await state.count_failure(keys) == 0
    assert await state.count_failure(keys) == pytest.approx(2.0)
    assert await state.blocked_s([address_key("a")]) == pytest.approx(2.0)
    assert await state.blocked_s([address_key("elsewhere")]) == 0
    clock.now += 2.5
    assert await state.blocked_s(keys) == 0
    clock.now += 61  # a quiet window: the count starts again
    assert await state.count_failure(keys) == 0


async def test_memory_state_nonce_counts_must_increase() -> None:
    clock = Clock()
    state = MemoryAuthState(RULE, clock=clock)
    keys = [user_key("u")]
    assert await state.use_nonce(keys, "n", 1, clock.now + 300) == (0.0, True)
    assert await state.use_nonce(keys, "n", 1, clock.now + 300) == (0.0, False)
    assert await state.use_nonce(keys, "n", 5, clock.now + 300) == (0.0, True)
    assert await state.use_nonce(keys, "n", 4, clock.now + 300) == (0.0, False)
    assert await state.use_nonce(keys, "other", 1, clock.now + 300) == (0.0, True)
    for _ in range(3):
        await state.count_failure(keys)
    blocked, fresh = await state.use_nonce(keys, "n", 6, clock.now + 300)
    assert blocked > 0 and not fresh  # refused: the count is not spent
    clock.now += 3
    assert await state.use_nonce(keys, "n", 6, clock.now + 300) == (0.0, True)
