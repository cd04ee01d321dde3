"""Operator accounts: creating users, changing passwords, signing in.

Hashing runs in a worker thread: Argon2 is slow on purpose (tens of
milliseconds) and would otherwise stall every CWMP session on the event loop.
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


async def check_login(pool: asyncpg.Pool, username: str, password: str) -> users.User | None:
    """The user when the password is right, else None; as slow for an unknown
    username as for a wrong password."""
    async with pool.acquire() as conn:
        stored = await users.password_hash_of(conn, username)
    # the database connection goes back to the pool during the slow part
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

    def succeeded(self, username: str) -> None:
        self._failures.pop("u:" + username.lower(), None)
