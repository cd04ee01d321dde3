"""Nonce counts and failure counts in PostgreSQL: what every worker shares."""

from __future__ import annotations

import asyncio
import secrets
import time

import asyncpg
import pytest

from acs.core.auth_throttle import Throttle
from acs.store import cpe_auth_state as store

pytestmark = pytest.mark.db

RULE = Throttle(max_failures=2, window_s=60.0, backoff_s=30.0, backoff_max_s=120.0)


def fresh_key() -> str:
    return "addr:test-" + secrets.token_hex(6)


async def test_a_nonce_count_is_spent_once_even_by_concurrent_requests(
    db_pool: asyncpg.Pool,
) -> None:
    nonce = "n-" + secrets.token_hex(8)
    keys = [fresh_key()]
    expires = time.time() + 300

    async def use(nc: int) -> bool:
        async with db_pool.acquire() as conn:
            return (await store.use_nonce(conn, keys, nonce, nc, expires))[1]

    # eight requests with the same count at once, as a replayed header would arrive
    results = await asyncio.gather(*(use(1) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert await use(2) and not await use(2) and not await use(1) and await use(9)


async def test_failures_refuse_every_key_for_the_back_off(db_pool: asyncpg.Pool) -> None:
    user, addr, bystander = fresh_key(), fresh_key(), fresh_key()
    async with db_pool.acquire() as conn:
        assert await store.count_failure(conn, [user, addr], RULE) == 0
        blocked = await store.count_failure(conn, [user, addr], RULE)
        assert 29 < blocked <= 30
        assert 29 < await store.blocked_s(conn, [addr]) <= 30
        assert await store.blocked_s(conn, [bystander]) == 0
        # refused: the nonce count is not recorded, so it is still good afterwards
        nonce = "n-" + secrets.token_hex(8)
        held, fresh = await store.use_nonce(conn, [user], nonce, 1, time.time() + 300)
        assert held > 29 and not fresh
        assert await store.use_nonce(conn, [bystander], nonce, 1, time.time() + 300) == (0, True)
        # a further failure doubles the refusal
        assert 59 < await store.count_failure(conn, [user], RULE) <= 60


async def test_prune_drops_expired_nonces_only(db_pool: asyncpg.Pool) -> None:
    old, live = "n-" + secrets.token_hex(8), "n-" + secrets.token_hex(8)
    async with db_pool.acquire() as conn:
        await store.use_nonce(conn, [fresh_key()], old, 1, time.time() - 1)
        await store.use_nonce(conn, [fresh_key()], live, 1, time.time() + 300)
        await store.prune(conn, RULE.window_s)
        left = await conn.fetch(
            "SELECT nonce FROM cpe_digest_nonces WHERE nonce = ANY($1::text[])", [old, live]
        )
    assert [r["nonce"] for r in left] == [live]
