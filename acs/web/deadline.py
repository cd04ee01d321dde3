"""A connection's request deadlines, shared by both of the CWMP port's protocols.

The lean protocol (acs/web/lean.py) and aiohttp's guarded one (acs/web/guard.py)
hold a client to the same clocks: its request headers within a total, no gap
over a limit between two pieces of a body, and (lean only: aiohttp has its own)
an idle keep-alive connection closed. One timer runs per connection, for one
phase at a time; each protocol decides when a phase starts and what a timer
that fires means for it, and ``time_out`` is what both do to a late client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from acs.logs import log

logger = logging.getLogger("acs.http")

TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 36\r\nConnection: close\r\n\r\nrequest headers not received in time"
)


class Deadline:
    """One connection's timer: the phase it runs for ("headers", "body", "idle"), and
    the body's own deadline, which each piece moves on without moving the timer."""

    __slots__ = ("_loop", "_expired", "_timer", "phase", "body_due")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[str], None]) -> None:
        self._loop = loop
        self._expired = expired  # called with the phase whose timer fired
        self._timer: asyncio.TimerHandle | None = None
        self.phase = ""  # while a timer runs
        self.body_due = 0.0  # loop time by which the body's next piece is due

    def arm(self, phase: str, after_s: float) -> None:
        self.disarm()
        self.phase = phase
        self._timer = self._loop.call_later(after_s, self._fire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self.phase = ""

    def body_piece(self, after_s: float) -> None:
        """A piece of a body came (or a body is awaited): the next is due within
        ``after_s``. The timer itself is moved only when it fires, not for each of a
        large upload's thousands of pieces."""
        self.body_due = self._loop.time() + after_s
        if self.phase != "body":
            self.arm("body", after_s)

    def body_moved_on(self) -> bool:
        """For a body timer that fired: re-armed, True, when pieces came meanwhile."""
        left = self.body_due - self._loop.time()
        if left <= 0:
            return False
        self.arm("body", left)
        return True

    def _fire(self) -> None:
        phase, self._timer, self.phase = self.phase, None, ""
        self._expired(phase)


def time_out(
    transport: asyncio.Transport,
    phase: str,
    *,
    listener: str,
    after_s: float,
    count: Callable[[str], None],
) -> None:
    """A client late with its headers (408, then close) or its body (close): one
    WARNING line, one count."""
    log(
        logger,
        logging.WARNING,
        "http_timeout",
        listener=listener,
        peer=peer_of(transport),
        phase=phase,
        after_s=after_s,
    )
    count("header_timeout" if phase == "headers" else "body_timeout")
    if phase == "headers":
        transport.write(TIMEOUT_408)
    transport.close()


def peer_of(transport: asyncio.BaseTransport | None) -> str | None:
    """The peer's "host:port", for a log line."""
    if transport is None:
        return None
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else None
