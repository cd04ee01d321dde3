"""The one LISTEN connection of a process: its own connection, not one of the
pool's (a listening connection is held for the process's life and would
shrink the pool by one for every request)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from acs.core.live import CHANNEL
from acs.store.dsn import to_uri


@dataclass(slots=True)
class Listener:
    conn: asyncpg.Connection
    #: set when the connection is lost (PostgreSQL restarted or failed over,
    #: the network broke): the caller connects again
    lost: asyncio.Event

    async def alive(self) -> bool:
        """A cheap round trip: a peer that vanished without a FIN is only
        noticed when the connection is used."""
        if self.conn.is_closed():
            return False
        try:
            await self.conn.execute("SELECT 1", timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        if not self.conn.is_closed():
            try:
                await self.conn.close(timeout=5)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                self.conn.terminate()


async def listen(dsn: str, on_payload: Callable[[str], None]) -> Listener:
    """Connect and LISTEN on the live channel; ``on_payload`` gets each payload."""
    lost = asyncio.Event()
    # a libpq-style multi-host DSN too: the primary, where the writes NOTIFY
    conn = await asyncpg.connect(to_uri(dsn), timeout=10)

    def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        on_payload(payload)

    conn.add_termination_listener(lambda _conn: lost.set())
    await conn.add_listener(CHANNEL, heard)
    return Listener(conn, lost)
