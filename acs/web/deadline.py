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
    """One connection's timer: the phase it runs for ("headers", "body", "idle") and
    when that phase is due.

    A request moves through several phases, and on the lean path most requests
    arrive whole in one read: a TimerHandle per phase (a heap push and a
    cancelled entry each) was the lean path's largest cost of its own. So one
    handle serves the connection: a phase that is due no earlier than the handle
    only moves ``due``, and the handle, when it fires early, sleeps again until
    ``due``. Only a phase due sooner replaces the handle; ``cancel`` (the
    connection is gone) drops it, so a closed connection is not held until then.
    """

    __slots__ = ("_loop", "_expired", "_timer", "_timer_at", "phase", "due")

    # a handle that fires this close to ``due`` counts as on time: the loop may run
    # a timer up to its clock resolution early, and sleeping again for less would spin
    SLACK_S = 0.005

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[str], None]) -> None:
        self._loop = loop
        self._expired = expired  # called with the phase that is due
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # loop time the handle fires at
        self.phase = ""  # while a deadline runs
        self.due = 0.0  # loop time the phase is due

    def arm(self, phase: str, after_s: float) -> None:
        due = self._loop.time() + after_s
        self.phase, self.due = phase, due
        if self._timer is not None:
            if self._timer_at <= due:
                return  # it fires first and sleeps again until ``due``
            self._timer.cancel()
        self._timer, self._timer_at = self._loop.call_at(due, self._fire), due

    def disarm(self) -> None:
        """No deadline runs; the handle, if any, finds nothing to do when it fires."""
        self.phase = ""

    def cancel(self) -> None:
        """The connection is gone: no handle keeps it."""
        self.phase = ""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def body_piece(self, after_s: float) -> None:
        """A piece of a body came (or a body is awaited): the next is due within ``after_s``."""
        self.arm("body", after_s)

    def _fire(self) -> None:
        self._timer = None
        if not self.phase:
            return
        if self.due - self._loop.time() > self.SLACK_S:
            self._timer, self._timer_at = self._loop.call_at(self.due, self._fire), self.due
            return
        phase, self.phase = self.phase, ""
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
