"""Live updates, the rules (pure): which page topics a database notification
touches, which topics a browser may ask for, and the per-topic throttle that
keeps a storm of writes from becoming a storm of page refreshes.

A notification is "kind:id" (acs/store/migrations/0025_live_updates.sql). A
topic is what a page listens to: a list ("devices", "jobs"), or one object
("device:<id>", "campaign:<n>", "bulk:<n>"). The browser re-fetches the page
part of a topic when it hears it, so an event carries no data of its own and
nothing a viewer may not see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CHANNEL = "acs_live"
#: a topic heard at most once per this many seconds (the first at once, the
#: rest folded into one at the end of the window)
COALESCE_S = 1.0
#: a comment line this often keeps proxies from closing an idle stream and
#: lets the server notice a browser that went away
HEARTBEAT_S = 15.0
#: the browser waits this long before it reconnects (the SSE "retry" field)
RETRY_MS = 3000
MAX_TOPICS = 20

LISTS = frozenset({"overview", "devices", "jobs", "faults", "campaigns", "bulk-jobs"})
OBJECTS = frozenset({"device", "campaign", "bulk"})
#: sent to every client when the listener (re)connected: what changed while it
#: was away is unknown, so every page part re-fetches
RESYNC = "resync"
#: put on every stream's queue when the process shuts down: the stream ends
CLOSED = "closed"

_NUMBER = re.compile(r"[1-9][0-9]{0,18}")


def topics_of(payload: str) -> list[str]:
    """The topics a notification touches; [] for a payload of no known kind."""
    kind, sep, ident = payload.partition(":")
    if not sep or not ident:
        return []
    if kind == "device":  # a session ended, or a device registered
        return ["overview", "devices", f"device:{ident}"]
    if kind == "task":  # ident is the device: its page lists its jobs
        return ["overview", "jobs", "faults", "bulk-jobs", f"device:{ident}"]
    if kind == "campaign":
        return ["overview", "campaigns", f"campaign:{ident}"]
    if kind == "bulk":
        return ["bulk-jobs", f"bulk:{ident}"]
    return []


def topic_problem(topic: str) -> str | None:
    """Why a browser may not listen to ``topic``, or None when it may."""
    if topic in LISTS:
        return None
    kind, sep, ident = topic.partition(":")
    if not sep or kind not in OBJECTS:
        return (
            f"unknown topic {topic[:80]!r}: use one of {', '.join(sorted(LISTS))},"
            f" or {', '.join(k + ':<id>' for k in sorted(OBJECTS))}"
        )
    if kind == "device":
        if not ident or len(ident) > 256 or not ident.isprintable():
            return "a device topic names the device id: device:<id>"
    elif not _NUMBER.fullmatch(ident):
        return f"a {kind} topic names its number: {kind}:<n>"
    return None


@dataclass(slots=True)
class Throttle:
    """Leading and trailing edge, per topic: a topic heard now goes out now
    when it has been quiet for COALESCE_S; else it goes out once when its
    window closes, however many times it was heard meanwhile."""

    window_s: float = COALESCE_S
    _last: dict[str, float] = field(default_factory=dict)
    _pending: set[str] = field(default_factory=set)

    def hear(self, topic: str, now: float) -> bool:
        """True: send ``topic`` now. False: it waits for ``due``."""
        last = self._last.get(topic)
        if last is None or now - last >= self.window_s:
            self._last[topic] = now
            return True
        self._pending.add(topic)
        return False

    def due(self, now: float) -> list[str]:
        """The waiting topics whose window has closed (they are sent now)."""
        ready = [t for t in self._pending if now - self._last[t] >= self.window_s]
        for t in ready:
            self._pending.discard(t)
            self._last[t] = now
        # topics quiet for a while are forgotten: the table holds only live ones
        for t in [t for t, at in self._last.items() if now - at > 60 * self.window_s]:
            if t not in self._pending:
                del self._last[t]
        return sorted(ready)

    def next_due(self) -> float | None:
        """When the earliest waiting topic's window closes (monotonic seconds)."""
        if not self._pending:
            return None
        return min(self._last[t] for t in self._pending) + self.window_s
