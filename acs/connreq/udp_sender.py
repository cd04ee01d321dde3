"""Sending UDP connection requests (TR-111 Part 2) and waiting for their session.

UDP has no answer: the datagram is sent, then sent again with back-off (the
same bytes: one id, so the CPE acts once) until the device opens its session
with "6 CONNECTION REQUEST" or the caller's time is up. The back-off is RFC
5389 7.2.1's, which TR-111 borrows for its STUN side: 100 ms, doubling, at
most 1.6 s between sends, and a bounded number of sends.

Datagrams leave from the STUN server's socket when there is one: a NAT that
filters by remote endpoint forwards into the binding only what comes from the
address and port the binding was made towards, which is the STUN server's.

A knock holds one of the process's connection-request slots only while it
sends (finding its socket, following a moved binding, the datagram itself),
never while it waits for the session between sends: the wait is the caller's
``arrived`` (in the ACS one watcher per process checks every waiting knock in
one statement, acs.services.knock_watch), so 1,000 knocks at once all get
their datagrams out at once, whatever the slot count.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from acs.connreq import udp
from acs.connreq.http import ConnectionRequestResult
from acs.metrics import Metrics

FIRST_INTERVAL_S = 0.1
MAX_INTERVAL_S = 1.6
MAX_SENDS = 9  # RFC 5389 Rc-1 retransmissions after the first
POLL_S = 0.1  # how often ``polled`` asks its check

# waits up to the given seconds for the device's session: True as soon as it is
# seen, False when the time passes first (0: what is known now, no waiting)
Arrived = Callable[[float], Awaitable[bool]]
# where the device's binding points now (None: unchanged or unknown); asked
# before each retransmission, so a NAT that hands out a new port mid-knock is followed
Retarget = Callable[[], Awaitable[tuple[str, int] | None]]


def polled(check: Callable[[], Awaitable[bool]], every_s: float = POLL_S) -> Arrived:
    """An ``Arrived`` from a yes/no check asked every ``every_s`` (tests, and callers
    with a cheap in-memory check; the ACS batches its reads in acs.services.knock_watch)."""

    async def arrived(timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if await check():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(every_s, left))

    return arrived


class _Sink(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error of an earlier send; the knock times out on its own


def send_schedule(timeout_s: float) -> list[float]:
    """When (seconds from the start) each send goes, inside ``timeout_s``."""
    at, interval = 0.0, FIRST_INTERVAL_S
    out: list[float] = []
    while at < timeout_s and len(out) < MAX_SENDS:
        out.append(round(at, 3))
        at += interval
        interval = min(interval * 2, MAX_INTERVAL_S)
    return out


class UdpConnectionRequester:
    def __init__(
        self,
        *,
        transport: Callable[[], asyncio.DatagramTransport | None] = lambda: None,
        max_concurrent: int = 50,
        metrics: Metrics | None = None,
    ) -> None:
        self._shared = transport  # the STUN server's socket, when it runs
        self._own: asyncio.DatagramTransport | None = None
        self._gate = asyncio.Semaphore(max_concurrent)
        self.ids = udp.MessageIds()
        self.metrics = metrics or Metrics()
        self.sent = 0  # datagrams, retransmissions included

    async def _transport(self, family: int) -> asyncio.DatagramTransport:
        shared = self._shared()
        if shared is not None and not shared.is_closing():
            if shared.get_extra_info("socket").family == family:
                return shared
        if self._own is None or self._own.is_closing():
            loop = asyncio.get_running_loop()
            self._own, _ = await loop.create_datagram_endpoint(_Sink, family=family)
        return self._own

    async def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None

    async def send(
        self,
        target: tuple[str, int],
        username: str,
        password: str,
        arrived: Arrived,
        timeout_s: float,
        retarget: Retarget | None = None,
    ) -> ConnectionRequestResult:
        result = await self._send(target, username, password, arrived, timeout_s, retarget)
        self.metrics.connection_request(result.outcome)
        return result

    async def _send(
        self,
        target: tuple[str, int],
        username: str,
        password: str,
        arrived: Arrived,
        timeout_s: float,
        retarget: Retarget | None,
    ) -> ConnectionRequestResult:
        start = time.monotonic()
        host, port = target

        def result(ok: bool, reason: str, outcome: str) -> ConnectionRequestResult:
            return ConnectionRequestResult(
                ok, None, reason, round(time.monotonic() - start, 3), outcome
            )

        if not username:
            return result(
                False, "no ConnectionRequestUsername is known for the device (un)", "auth_failed"
            )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        ts, msg_id = self.ids.next(time.time())
        cnonce = secrets.token_hex(8)

        def datagram_to(host: str, port: int) -> bytes:
            # one request: the same ts, id and cnonce whatever address it goes to
            return udp.build(
                host,
                port,
                ts=ts,
                msg_id=msg_id,
                username=username,
                password=password,
                cnonce=cnonce,
            )

        datagram = datagram_to(host, port)
        schedule = send_schedule(timeout_s)
        sends = 0
        try:
            async with asyncio.timeout(timeout_s):
                for at in schedule:
                    # between sends the knock waits without a slot
                    if await arrived(start + at - time.monotonic()):
                        break
                    async with self._gate:
                        moved = await retarget() if retarget and sends else None
                        if moved is not None and moved != target:
                            target = moved
                            host, port = target
                            datagram = datagram_to(host, port)
                        transport = await self._transport(family)
                        transport.sendto(datagram, target)
                    sends += 1
                    self.sent += 1
                else:
                    # the last retransmission is out: wait out the rest of the time
                    if not await arrived(timeout_s - (time.monotonic() - start)):
                        raise TimeoutError
            return result(True, f"session opened after {sends} datagram(s)", "accepted")
        except TimeoutError:
            return result(
                False,
                f"timeout after {timeout_s:g} s: no session after {sends} datagram(s) "
                f"to {host}:{port}",
                "timeout",
            )
        except OSError as exc:
            return result(False, f"cannot send to {host}:{port}: {exc}", "unreachable")
