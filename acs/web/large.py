"""How many large CWMP requests one process handles at once; the rest wait compressed.

In a bootstrap storm every CPE sends its discovery answers (a ~170 KB
GetParameterNamesResponse, a ~180 KB GetParameterValuesResponse) within a few
seconds of each other. Each one handled costs its body, the ~1,400 objects the
codec decodes from it and lxml's tree of it, and ends in a write of the
device's tree: the writes queue for the database pool, so hundreds of answers
end up in progress at once, each holding all of that while it waits its turn
(bench/reboot.py measured 341 at once among 400 discovering CPEs, and ~420 KB
of RSS per session). Handling more answers at once than the pool has
connections finishes none of them sooner.

So a request whose body is at least ``min_bytes`` starts only while fewer than
``at_once`` are being handled; the next ones wait in arrival order, each as
its body compressed (zlib level 1: a tenth of a CWMP answer's size, well under
a millisecond), and start as the earlier ones finish. Informs and the other
small messages never wait here, so periodic sessions are not held up behind a
storm of discoveries. A connection that goes away while its request waits is
dropped from the line.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable


class LargeRequests:
    """The large requests being handled and the line of those waiting."""

    def __init__(self, *, min_bytes: int, at_once: int) -> None:
        self.min_bytes = min_bytes
        self.at_once = at_once
        self.running = 0
        self.waiting: deque[tuple[bytes, Callable[[bytes], bool]]] = deque()
        self.waited = 0  # requests that had to wait, since the start (for tests and benches)

    def is_large(self, body: bytes) -> bool:
        return len(body) >= self.min_bytes

    def admit(self, body: bytes, start: Callable[[bytes], bool]) -> None:
        """Start the large request now if there is room, else once there is.

        ``start(body)`` begins handling it and returns False when its
        connection has gone meanwhile (the place passes to the next one)."""
        if self.running < self.at_once:
            self.running += 1
            if not start(body):
                self.finished()
            return
        self.waited += 1
        self.waiting.append((zlib.compress(body, 1), start))

    def finished(self, _task: object = None) -> None:
        """One large request finished (a task's done callback): the next waiting
        one whose client is still there starts."""
        self.running -= 1
        while self.waiting and self.running < self.at_once:
            packed, start = self.waiting.popleft()
            self.running += 1
            if start(zlib.decompress(packed)):
                return
            self.running -= 1

    def __len__(self) -> int:
        """Requests in progress or waiting."""
        return self.running + len(self.waiting)
