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
        held, fresh, _ = await store.use_nonce(conn, [user], nonce, 1, time.time() + 300)
        assert held > 29 and not fresh
        assert await store.use_nonce(conn, [bystander], nonce, 1, time.time() + 300) == (
            0,
            True,
            None,
        )
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


# --------------------------------------------------------------------------- held nonces


async def test_a_held_nonce_is_advanced_by_no_other_process(db_pool: asyncpg.Pool) -> None:
    nonce, keys, expires = "n-" + secrets.token_hex(8), [fresh_key()], time.time() + 300
    async with db_pool.acquire() as conn:
        assert await store.use_nonce(conn, keys, nonce, 1, expires, "0.aaa") == (0, True, None)
        # another worker, a restarted one, or one with no holder at all: refused,
        # told who holds it
        for holder in ("1.bbb", "0.ccc", None):
            assert await store.use_nonce(conn, keys, nonce, 5, expires, holder) == (
                0,
                False,
                "0.aaa",
            )
        # the holder itself never comes back here for a nonce it holds; if it did,
        # the row would not move either
        assert (await store.use_nonce(conn, keys, nonce, 6, expires, "0.aaa"))[:2] == (0, False)
        assert await conn.fetchval("SELECT nc FROM cpe_digest_nonces WHERE nonce = $1", nonce) == 1


async def test_a_nonce_no_process_holds_is_claimed_above_its_count(
    db_pool: asyncpg.Pool,
) -> None:
    """A row written without a holder (before migration 0028) has all its counts here."""
    nonce, keys, expires = "n-" + secrets.token_hex(8), [fresh_key()], time.time() + 300
    async with db_pool.acquire() as conn:
        assert (await store.use_nonce(conn, keys, nonce, 3, expires))[1]
        assert not (await store.use_nonce(conn, keys, nonce, 3, expires, "0.aaa"))[1]
        assert (await store.use_nonce(conn, keys, nonce, 4, expires, "0.aaa"))[1]
        assert await store.use_nonce(conn, keys, nonce, 9, expires, "1.bbb") == (0, False, "0.aaa")


async def _rows_of(db_pool: asyncpg.Pool, nonce: str) -> int:
    async with db_pool.acquire() as conn:
        nc: int = await conn.fetchval("SELECT nc FROM cpe_digest_nonces WHERE nonce = $1", nonce)
        return nc


async def test_the_holder_keeps_later_counts_and_answers_its_siblings(
    db_pool: asyncpg.Pool,
) -> None:
    from acs.web.cpe_auth_state import PgAuthState, new_holder

    worker0 = PgAuthState(db_pool, RULE, holder=new_holder(0))
    worker1 = PgAuthState(db_pool, RULE, holder=new_holder(1), ask_holder=worker0.count_held)
    nonce, keys, expires = "n-" + secrets.token_hex(8), [fresh_key()], time.time() + 300
    assert await worker0.use_nonce(keys, nonce, 1, expires) == (0, True)
    # the later counts: in worker 0's memory only
    assert await worker0.use_nonce(keys, nonce, 2, expires) == (0, True)
    assert await worker0.use_nonce(keys, nonce, 2, expires) == (0, False)  # replayed
    assert await _rows_of(db_pool, nonce) == 1
    # at worker 1: asked of worker 0, which knows 2 was used
    assert await worker1.use_nonce(keys, nonce, 2, expires) == (0, False)
    assert await worker1.use_nonce(keys, nonce, 3, expires) == (0, True)
    assert await worker0.use_nonce(keys, nonce, 3, expires) == (0, False)
    assert await worker1.use_nonce(keys, nonce, 3, expires) == (0, False)
    # worker 0 restarted: its counts died with it, nobody may accept the nonce
    restarted = PgAuthState(db_pool, RULE, holder=new_holder(0))
    worker1.ask_holder = restarted.count_held
    assert await restarted.use_nonce(keys, nonce, 9, expires) == (0, None)
    assert await worker1.use_nonce(keys, nonce, 9, expires) == (0, None)
    # with nobody to ask: a new nonce, too
    alone = PgAuthState(db_pool, RULE, holder=new_holder(1))
    assert await alone.use_nonce(keys, nonce, 10, expires) == (0, None)


async def test_concurrent_first_uses_at_the_holder_spend_each_count_once(
    db_pool: asyncpg.Pool,
) -> None:
    from acs.web.cpe_auth_state import PgAuthState, new_holder

    worker0 = PgAuthState(db_pool, RULE, holder=new_holder(0))
    nonce, keys, expires = "n-" + secrets.token_hex(8), [fresh_key()], time.time() + 300
    results = await asyncio.gather(
        *(worker0.use_nonce(keys, nonce, nc, expires) for nc in (1, 1, 1, 2, 2))
    )
    assert [r for r in results if r[1]] == [(0, True), (0, True)]


async def test_a_refused_key_is_refused_before_the_nonce_is_claimed(
    db_pool: asyncpg.Pool,
) -> None:
    from acs.web.cpe_auth_state import PgAuthState, new_holder

    worker0 = PgAuthState(db_pool, RULE, holder=new_holder(0))
    user = fresh_key()
    await worker0.count_failure([user])
    await worker0.count_failure([user])
    nonce = "n-" + secrets.token_hex(8)
    blocked, fresh = await worker0.use_nonce([user], nonce, 1, time.time() + 300)
    assert blocked > 29 and not fresh
    # not claimed: the next, unrefused use still claims it
    assert await worker0.use_nonce([fresh_key()], nonce, 1, time.time() + 300) == (0, True)


async def test_a_header_replayed_at_another_worker_is_refused(db_pool: asyncpg.Pool) -> None:
    """The whole check: a CPE's answer to worker 0's challenge, replayed at worker 1."""
    import hashlib

    from acs.web.cpe_auth import CpeAuthenticator, Credential, ha1_of
    from acs.web.cpe_auth_state import PgAuthState, new_holder

    secret, ha1 = secrets.token_bytes(32), ha1_of("cpe", "acs", "pw")

    async def lookup(username: str) -> Credential | None:
        return Credential("cpe", ha1) if username == "cpe" else None

    def worker(index: int, ask: PgAuthState | None = None) -> CpeAuthenticator:
        state = PgAuthState(db_pool, RULE, holder=new_holder(index))
        if ask is not None:
            state.ask_holder = ask.count_held
        return CpeAuthenticator("digest", "acs", lookup, secret=secret, state=state)

    w0 = worker(0)
    assert isinstance(w0.state, PgAuthState)
    w1, w1_alone = worker(1, ask=w0.state), worker(1)
    nonce = w0.make_nonce()

    def header(nc: int) -> str:
        ha2 = hashlib.md5(b"POST:/").hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{nc:08x}:c0ffee:auth:{ha2}".encode()).hexdigest()
        return (
            f'Digest username="cpe", realm="acs", nonce="{nonce}", uri="/", qop=auth, '
            f'nc={nc:08x}, cnonce="c0ffee", response="{response}", algorithm=MD5'
        )

    assert (await w0.check("POST", header(1), "/")).ok
    assert (await w0.check("POST", header(2), "/")).ok
    replayed = await w1.check("POST", header(2), "/")
    assert not replayed.ok and "used already" in replayed.reason
    assert (await w1.check("POST", header(3), "/")).ok  # the same CPE, on another worker
    # a worker that cannot ask the holder sends a new nonce, stale=true: no prompt
    lone = await w1_alone.check("POST", header(4), "/")
    assert not lone.ok and "stale=true" in lone.challenge[0]
    assert not (await w0.check("POST", header(3), "/")).ok
