"""Where the authenticator keeps nonce counts and failed-password counts.

The CWMP port keeps them in PostgreSQL: a CPE's next request, or a replayed
header, may reach any worker of ``acs serve --workers N``, and a password
guesser must meet one count, not one per worker. A listener of one process
whose nonces are signed with a key of that process alone (the file server,
a test's CPE) keeps them in memory: no other process can accept its nonces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import asyncpg

from acs.core.auth_throttle import Throttle
from acs.store import cpe_auth_state as store

PRUNE_EVERY_S = 60.0
# what every listener gets unless it is told otherwise
DEFAULT_THROTTLE = Throttle(max_failures=10, window_s=600.0, backoff_s=1.0, backoff_max_s=300.0)


class AuthState(Protocol):
    throttle: Throttle

    async def use_nonce(
        self, keys: Sequence[str], nonce: str, nc: int, expires_at: float
    ) -> tuple[float, bool]: ...

    async def blocked_s(self, keys: Sequence[str]) -> float: ...

    async def count_failure(self, keys: Sequence[str]) -> float: ...


class MemoryAuthState:
    def __init__(
        self, throttle: Throttle = DEFAULT_THROTTLE, clock: Callable[[], float] = time.time
    ) -> None:
        self.throttle = throttle
        self._clock = clock
        self._nonces: dict[str, tuple[int, float]] = {}  # nonce -> (highest nc, expiry)
        # key -> (failures, last failure, refused until)
        self._failures: dict[str, tuple[int, float, float]] = {}
        self._next_prune = 0.0

    def _prune(self, now: float) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        self._nonces = {n: v for n, v in self._nonces.items() if v[1] >= now}
        window = self.throttle.window_s
        self._failures = {
            k: v for k, v in self._failures.items() if v[1] >= now - window or v[2] > now
        }

    async def use_nonce(
        self, keys: Sequence[str], nonce: str, nc: int, expires_at: float
    ) -> tuple[float, bool]:
        now = self._clock()
        self._prune(now)
        blocked = await self.blocked_s(keys)
        if blocked > 0:
            return blocked, False
        seen = self._nonces.get(nonce)
        if seen is not None and seen[0] >= nc:
            return 0.0, False
        self._nonces[nonce] = (nc, expires_at)
        return 0.0, True

    async def blocked_s(self, keys: Sequence[str]) -> float:
        now = self._clock()
        return max([0.0] + [self._failures[k][2] - now for k in keys if k in self._failures])

    async def count_failure(self, keys: Sequence[str]) -> float:
        now = self._clock()
        for key in keys:
            failures, last, until = self._failures.get(key, (0, now, 0.0))
            failures = 1 if now - last > self.throttle.window_s else failures + 1
            block = self.throttle.block_s(failures)
            self._failures[key] = (failures, now, max(until, now + block) if block else until)
        return await self.blocked_s(keys)


class PgAuthState:
    def __init__(self, pool: asyncpg.Pool, throttle: Throttle = DEFAULT_THROTTLE) -> None:
        self.throttle = throttle
        self._pool = pool
        self._next_prune = 0.0

    async def _maybe_prune(self, conn: asyncpg.Connection) -> None:
        # each worker at most once a minute; the rows are few (one per nonce
        # used in the last five minutes) and indexed by expiry
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_S
            await store.prune(conn, self.throttle.window_s)

    async def use_nonce(
        self, keys: Sequence[str], nonce: str, nc: int, expires_at: float
    ) -> tuple[float, bool]:
        async with self._pool.acquire() as conn:
            await self._maybe_prune(conn)
            return await store.use_nonce(conn, keys, nonce, nc, expires_at)

    async def blocked_s(self, keys: Sequence[str]) -> float:
        async with self._pool.acquire() as conn:
            return await store.blocked_s(conn, keys)

    async def count_failure(self, keys: Sequence[str]) -> float:
        async with self._pool.acquire() as conn:
            return await store.count_failure(conn, keys, self.throttle)
