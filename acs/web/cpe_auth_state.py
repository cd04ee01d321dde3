"""Where the authenticator keeps nonce counts and failed-password counts.

The CWMP port keeps them in PostgreSQL: a CPE's next request, or a replayed
header, may reach any worker of ``acs serve --workers N``, and a password
guesser must meet one count, not one per worker. A listener of one process
whose nonces are signed with a key of that process alone (the file server,
a test's CPE) keeps them in memory: no other process can accept its nonces.

Nonce counts after the first are kept by the process that saw the first
(``PgAuthState.holder``, one ``acs serve`` host's workers): a CPE reuses its
nonce with nc 2, 3..., and each of those requests costs no statement and no
synchronous commit. The first use records the nonce in PostgreSQL with this
process's id, after the refusal check. A later count that reaches another
worker (a new connection, a keep-alive pool many CPEs share) is found held
there and asked of the holder over the worker relay (acs/web/relay.py), which
answers from its memory; a holder that is gone (restarted: another id) cannot
answer, and the nonce is then refused as stale, so the CPE answers a new
challenge without prompting. A replayed header is refused wherever it goes.
What the later counts skip is the refusal check of failed passwords: they need
the password, proven with this nonce before (a guesser never gets one), and a
wrong password is still counted in PostgreSQL and refused there. Hosts of a
cluster (ACS_RELAY_LISTEN) keep every count in PostgreSQL: the host relay does
not carry these questions.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
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
    ) -> tuple[float, bool | None]:
        """(seconds refused, verdict): True a new count, False a used one, None a
        nonce whose counts another process keeps (the caller asks for a new one)."""
        ...

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


# (holder, nonce, nc) -> the holder's verdict on that count; None when that
# holder is gone (acs.web.relay.Relay.ask_nonce)
AskHolder = Callable[[str, str, int], Awaitable[bool | None]]


def new_holder(worker_index: int = 0) -> str:
    """This process's holder id: its worker index (the relay's prefix), then a
    random part, new at every start, so that a restarted worker does not pass
    for the one whose counts died with it."""
    return f"{worker_index}.{secrets.token_hex(8)}"


class PgAuthState:
    """The CWMP port's state, in PostgreSQL; with ``holder``, the counts of the
    nonces this process used first are kept here (see the module's text), and
    ``ask_holder`` asks a sibling worker about the nonces it holds."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        throttle: Throttle = DEFAULT_THROTTLE,
        *,
        holder: str | None = None,
        ask_holder: AskHolder | None = None,
    ) -> None:
        self.throttle = throttle
        self._pool = pool
        self._next_prune = 0.0
        self.holder = holder
        self.ask_holder = ask_holder
        self._held: dict[str, tuple[int, float]] = {}  # nonce -> (highest nc, expiry)
        # a nonce's first use in flight: the same nonce's next request waits for it
        self._claiming: dict[str, asyncio.Future[None]] = {}
        self._next_forget = 0.0

    async def _maybe_prune(self, conn: asyncpg.Connection) -> None:
        # each worker at most once a minute; the rows are few (one per nonce
        # used in the last five minutes) and indexed by expiry
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY_S
            await store.prune(conn, self.throttle.window_s)

    def _forget_expired(self) -> None:
        now = time.time()
        if now >= self._next_forget:
            self._next_forget = now + PRUNE_EVERY_S
            self._held = {n: v for n, v in self._held.items() if v[1] >= now}

    async def _settled(self, nonce: str) -> None:
        while (pending := self._claiming.get(nonce)) is not None:
            await asyncio.shield(pending)

    def _count(self, nonce: str, nc: int) -> bool | None:
        """The verdict of a nonce this process holds; None when it holds no such nonce."""
        held = self._held.get(nonce)
        if held is None:
            return None
        if nc <= held[0]:
            return False
        self._held[nonce] = (nc, held[1])
        return True

    async def use_nonce(
        self, keys: Sequence[str], nonce: str, nc: int, expires_at: float
    ) -> tuple[float, bool | None]:
        if self.holder is None:  # every count in PostgreSQL
            async with self._pool.acquire() as conn:
                await self._maybe_prune(conn)
                blocked, fresh, held_by = await store.use_nonce(conn, keys, nonce, nc, expires_at)
            return blocked, (None if held_by is not None and not blocked else fresh)
        await self._settled(nonce)
        mine = self._count(nonce, nc)
        if mine is not None:  # ours: its counts are here, and only here
            return 0.0, mine
        self._forget_expired()
        claim: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._claiming[nonce] = claim
        try:
            async with self._pool.acquire() as conn:
                await self._maybe_prune(conn)
                blocked, fresh, held_by = await store.use_nonce(
                    conn, keys, nonce, nc, expires_at, self.holder
                )
            if fresh:
                self._held[nonce] = (nc, expires_at)
        finally:
            del self._claiming[nonce]
            claim.set_result(None)
        if blocked > 0 or held_by is None:
            return blocked, fresh
        # another process holds it: a sibling worker answers for its own counts;
        # one that is gone (restarted: another id) cannot: a new nonce, then
        if self.ask_holder is None:
            return 0.0, None
        return 0.0, await self.ask_holder(held_by, nonce, nc)

    async def count_held(self, holder: str, nonce: str, nc: int) -> bool | None:
        """A sibling's question about a nonce it found held by ``holder``: this
        process's verdict when it is that holder and holds the nonce, else None."""
        if holder != self.holder:
            return None
        await self._settled(nonce)
        return self._count(nonce, nc)

    async def blocked_s(self, keys: Sequence[str]) -> float:
        async with self._pool.acquire() as conn:
            return await store.blocked_s(conn, keys)

    async def count_failure(self, keys: Sequence[str]) -> float:
        async with self._pool.acquire() as conn:
            return await store.count_failure(conn, keys, self.throttle)
