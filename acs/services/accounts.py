"""Operator accounts: creating users, changing passwords, signing in.

Hashing runs in a worker thread: Argon2 is slow on purpose (tens of
milliseconds) and would otherwise stall every CWMP session on the event loop.

A sign-in is counted against its username and address *before* its password
is checked (``SignIn.attempt``): counting after the check let a burst of
concurrent guesses all pass the gate while the first ones were still hashing.
At most ``concurrency`` checks run at once per process, so a burst queues
instead of taking every core and 64 MiB per check.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import asyncpg

from acs.core import passwords
from acs.store import users


async def create_user(
    conn: asyncpg.Connection, username: str, password: str, role: str
) -> users.User:
    """PasswordRejected or ValueError (name taken, unknown role) with a reason."""
    passwords.check_username(username)
    passwords.check_password(password, username)
    digest = await asyncio.to_thread(passwords.hash_password, password)
    return await users.create_user(conn, username, digest, role)


async def change_password(conn: asyncpg.Connection, username: str, password: str) -> bool:
    """False for an unknown user; every session of the user ends."""
    passwords.check_password(password, username)
    digest = await asyncio.to_thread(passwords.hash_password, password)
    return await users.set_password(conn, username, digest)


async def check_login(
    pool: asyncpg.Pool,
    username: str,
    password: str,
    gate: asyncio.Semaphore | None = None,
) -> users.User | None:
    """The user when the password is right, else None; as slow for an unknown
    username as for a wrong password. ``gate`` bounds the checks in flight."""
    async with pool.acquire() as conn:
        stored = await users.password_hash_of(conn, username)
    # the database connection goes back to the pool during the slow part
    if gate is None:
        ok = await asyncio.to_thread(passwords.verify_password, stored, password)
    else:
        async with gate:
            ok = await asyncio.to_thread(passwords.verify_password, stored, password)
    if not ok or stored is None:
        return None
    async with pool.acquire() as conn:
        if passwords.needs_rehash(stored):
            fresh = await asyncio.to_thread(passwords.hash_password, password)
            await users.rehash(conn, username, stored, fresh)
        return await users.get_user(conn, username)


@dataclass(slots=True)
class LoginThrottle:
    """Failed sign-ins allowed per username and per client address in a window.

    Kept in this process's memory: with several ACS processes an attacker gets
    the allowance once per process, which still turns an online guessing attack
    from millions of tries an hour into dozens. A success clears the
    username's count.
    """

    per_user: int = 5
    per_address: int = 20
    window_s: float = 300.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def retry_after(self, username: str, address: str, now: float | None = None) -> float:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        now = time.monotonic() if now is None else now
        waits = []
        for key, limit in (
            ("u:" + username.lower(), self.per_user),
            ("a:" + address, self.per_address),
        ):
            q = self._recent(key, now)
            if len(q) >= limit:
                waits.append(q[len(q) - limit] + self.window_s - now)
        return max(waits, default=0.0)

    def failed(self, username: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in ("u:" + username.lower(), "a:" + address):
            self._failures.setdefault(key, deque()).append(now)
        # bound memory when someone sprays random usernames
        if len(self._failures) > 100_000:
            for key in list(self._failures)[:50_000]:
                del self._failures[key]

    def admit(self, username: str, address: str, now: float | None = None) -> tuple[float, float]:
        """(seconds to wait, stamp): with no wait, the attempt is counted as
        failed before it is checked, at ``stamp``. Check and count run with no
        await between them, so concurrent attempts cannot all pass."""
        now = time.monotonic() if now is None else now
        wait = self.retry_after(username, address, now)
        if wait <= 0:
            self.failed(username, address, now)
        return wait, now

    def succeeded(
        self, username: str, address: str | None = None, stamp: float | None = None
    ) -> None:
        """Clear the username's count and give back the address the attempt
        ``admit`` took at ``stamp``: a right password is not a failure."""
        self._failures.pop("u:" + username.lower(), None)
        if address is None or stamp is None:
            return
        q = self._failures.get("a:" + address)
        if q is not None:
            try:
                q.remove(stamp)
            except ValueError:
                pass  # the window already dropped it


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one sign-in: the user, or None and why."""

    user: users.User | None
    retry_after: float = 0.0  # > 0: refused unchecked, throttled


class SignIn:
    """Password checks of one process: throttled per username and address,
    at most ``concurrency`` Argon2 checks at once."""

    def __init__(self, concurrency: int = 2, throttle: LoginThrottle | None = None) -> None:
        self.throttle = throttle or LoginThrottle()
        self.gate = asyncio.Semaphore(concurrency)

    async def attempt(
        self, pool: asyncpg.Pool, username: str, password: str, address: str
    ) -> Attempt:
        wait, stamp = self.throttle.admit(username, address)
        if wait > 0:
            return Attempt(None, wait)
        user = await check_login(pool, username, password, self.gate)
        if user is not None:
            self.throttle.succeeded(username, address, stamp)
        return Attempt(user)
