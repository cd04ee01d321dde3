"""How long wrong CPE passwords shut a username or an address out (pure: no I/O).

Failures count per key (a username, a client address) while they keep coming
within ``window_s`` of each other; a quiet window starts the count again.
From the ``max_failures``-th on, every failure refuses the key for
``backoff_s``, doubled per further failure, up to ``backoff_max_s``. A
success does not reset the count: a guesser who also holds one valid
credential (a CPE of its own) must not launder its failures with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Throttle:
    max_failures: int  # 0: never refuse
    window_s: float
    backoff_s: float
    backoff_max_s: float

    def block_s(self, failures: int) -> float:
        """Seconds the key is refused after its ``failures``-th failure in a row."""
        if self.max_failures <= 0 or failures < self.max_failures:
            return 0.0
        # capped exponent: 2 ** 10_000 is a float overflow
        doublings = min(failures - self.max_failures, 60)
        return min(self.backoff_max_s, self.backoff_s * 2.0**doublings)


def user_key(username: str) -> str:
    # bounded: a megabyte-long username must not become a megabyte-long row
    return "user:" + username[:256]


def address_key(address: str) -> str:
    return "addr:" + address
