"""Fair admission of CWMP sessions: no one client may take every session slot.

The worker-wide limit (ACS_MAX_SESSIONS_PER_WORKER) keeps a process from
drowning; these limits keep one source address or one credential from taking
all of it, so a single misbehaving (or hostile) client holding the shared CPE
credential cannot push real CPEs into 503s until their sessions time out.

A session holds an address slot from the moment its Inform passes the
checks, before anything else happens, and a credential slot once the
credential is verified: a burst of Informs cannot all slip past the limit
before the first of them is registered. Pure counting, no I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

Limit = Literal["address", "credential"]


@dataclass(slots=True)
class Ticket:
    """The slots one session (or an Inform being admitted) holds."""

    address: str | None
    username: str | None = None
    kept: bool = False  # a session was opened and holds the slots until it ends
    released: bool = False


class Admission:
    def __init__(self, per_address: int, per_credential: int) -> None:
        self.per_address = per_address
        self.per_credential = per_credential
        self._addresses: Counter[str] = Counter()
        self._usernames: Counter[str] = Counter()

    def refusal(self, address: str | None, username: str | None) -> Limit | None:
        """Which limit a new session from here would pass, if any.

        ``username`` may be the one a request claims before it is verified:
        only verified sessions are counted, so claiming someone else's name
        never uses up their slots, it only meets the count they already have.
        """
        if address is not None and self._addresses[address] >= self.per_address:
            return "address"
        if username is not None and self._usernames[username] >= self.per_credential:
            return "credential"
        return None

    def enter(self, address: str | None) -> Ticket:
        if address is not None:
            self._addresses[address] += 1
        return Ticket(address)

    def authenticate(self, ticket: Ticket, username: str | None) -> bool:
        """Take a credential slot for the verified username; False past its limit."""
        if username is None or ticket.username is not None:
            return True
        if self._usernames[username] >= self.per_credential:
            return False
        self._usernames[username] += 1
        ticket.username = username
        return True

    def leave(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        for counts, key in ((self._addresses, ticket.address), (self._usernames, ticket.username)):
            if key is not None:
                counts[key] -= 1
                if counts[key] <= 0:
                    del counts[key]  # addresses come and go: keep only those in use

    def sessions_at(self, address: str) -> int:
        return self._addresses[address]

    def sessions_of(self, username: str) -> int:
        return self._usernames[username]
