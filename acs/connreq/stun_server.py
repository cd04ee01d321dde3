"""The ACS's STUN server (TR-111 Part 2): where CPEs behind a NAT keep a binding open.

A CPE with STUNEnable sends Binding Requests to us every keep-alive period;
those carrying CONNECTION-REQUEST-BINDING tell us the public address:port at
which its NAT forwards datagrams to it, which we store for every worker to
knock on (acs.connreq.udp_sender sends from this same socket, because a NAT
that filters by remote endpoint only lets in datagrams from the address the
binding was made towards).

Only a request with a USERNAME we know and a MESSAGE-INTEGRITY made with its
password gets the mapped address back; one with a known USERNAME and no
integrity gets a 401 Binding Error (no address: the CPE is to retry signed, as
RFC 5389 10.1.2 asks); everything else is dropped and counted. A token bucket
per source address bounds what one sender can make us do (lookups, writes,
answers), and a cap on lookups in flight bounds the whole.

PostgreSQL sees only what changed at once: a new or moved binding is written
before the answer (a knock may follow right away). A keep-alive from an
unchanged binding only moves its last-seen time, and those are batched: kept
in memory and written together about once a second (``touch``), so the hot
path answers without a task or an await even when the binding's refresh is due.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from acs.connreq import stun
from acs.core.reach import StunPeer as Peer
from acs.core.reach import behind_nat
from acs.logs import log
from acs.metrics import Metrics

logger = logging.getLogger("acs.stun")

PEER_CACHE_S = 10.0  # a changed STUN password is used within this
MAX_CACHE = 100_000
MAX_PENDING = 256  # lookups in flight; past it requests are dropped as overload


Lookup = Callable[[str], Awaitable[Peer | None]]
# (device_id, address, port, nat_detected) -> whether address:port changed
Record = Callable[[str, str, int, bool], Awaitable[bool]]
# [(device_id, seen at)] of unchanged bindings: their last-seen time, in one batch
Touch = Callable[[list[tuple[str, datetime]]], Awaitable[None]]
TOUCH_EVERY_S = 1.0
DRAIN_MAX = 64  # datagrams read per loop turn beyond the one asyncio delivers
MAX_DATAGRAM = 2048  # larger than any Binding Request (stun.MAX_MESSAGE_BYTES): cut, refused


class RateLimit:
    """A token bucket per source address: ``rate`` per second, up to ``burst`` at once."""

    def __init__(self, rate: float, burst: float, max_sources: int = MAX_CACHE) -> None:
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self._buckets: dict[str, tuple[float, float]] = {}
        self._pruned_at = float("-inf")

    def allow(self, source: str, now: float) -> bool:
        tokens, last = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if len(self._buckets) >= self.max_sources and source not in self._buckets:
            # a spoofed-source flood must not grow the table without end: forget the
            # full buckets (sources at rest), which lose nothing by starting full again;
            # at most once a second, or the scan itself would be the flood's weapon
            if now - self._pruned_at >= 1.0:
                self._pruned_at = now
                self._buckets = {
                    s: (t, at)
                    for s, (t, at) in self._buckets.items()
                    if t + (now - at) * self.rate < self.burst
                }
            if len(self._buckets) >= self.max_sources:
                return False
        if tokens < 1:
            self._buckets[source] = (tokens, now)
            return False
        self._buckets[source] = (tokens - 1, now)
        return True


class StunServer(asyncio.DatagramProtocol):
    def __init__(
        self,
        lookup: Lookup,
        record: Record,
        metrics: Metrics,
        *,
        rate_per_source: float,
        refresh_s: float,
        touch: Touch | None = None,
    ) -> None:
        self._lookup, self._record, self.metrics = lookup, record, metrics
        self._answered = metrics.stun_requests.labels("answered")  # once per answer
        self._touch = touch
        self._seen: dict[str, datetime] = {}  # unchanged bindings to touch, newest time
        self._flusher: asyncio.Task[None] | None = None
        self.limit = RateLimit(rate_per_source, max(1.0, 2 * rate_per_source))
        self.refresh_s = refresh_s  # an unchanged binding is written at most this often
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self._peers: dict[str, tuple[Peer | None, float]] = {}
        self._written: dict[str, tuple[str, int, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sock: socket.socket | None = None  # ours, to drain (``datagram_received``)

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        loop = asyncio.get_running_loop()
        # the socket is made here and handed to asyncio, so that we keep the object
        # and may read the datagrams queued behind the one asyncio delivers
        family, kind, proto, _name, where = (
            await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(where)
            sock.setblocking(False)
            await loop.create_datagram_endpoint(lambda: self, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        assert self.transport is not None
        self.port = self.transport.get_extra_info("sockname")[1]
        if self._touch is not None:
            self._flusher = asyncio.create_task(self._flush_every())
        return self.port

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()  # what was seen last is not lost at shutdown
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(TOUCH_EVERY_S)
            await self.flush()

    async def flush(self) -> None:
        """Write the batched last-seen times of unchanged bindings."""
        if not self._seen or self._touch is None:
            return
        batch, self._seen = list(self._seen.items()), {}
        try:
            await self._touch(batch)
        except Exception as exc:  # the database away: a later keep-alive touches again
            log(logger, logging.WARNING, "stun_touch_failed", bindings=len(batch), error=repr(exc))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def error_received(self, exc: Exception) -> None:
        # ICMP errors of earlier sends (a CPE gone): nothing to answer, nothing broken
        self.metrics.stun("icmp_error")

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        self._handle(data, addr)
        sock = self._sock
        if sock is None or self.transport is None or self.transport.is_closing():
            return
        # asyncio hands over one datagram per wake-up of its loop; under load more
        # are queued behind it, and reading them now saves a loop turn (a select
        # and its bookkeeping) for each, the largest per-packet cost left. Bounded,
        # so that the rest of the loop (sessions, knocks) keeps its turns.
        for _ in range(DRAIN_MAX):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # as asyncio's own reader reports it
                self.error_received(exc)
                return
            self._handle(data, addr)

    def _handle(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        # one clock read and one (address, port) tuple per datagram: this is the
        # per-packet path (BENCHMARKS.md, STUN), every step of it counted
        now = time.monotonic()
        where = (str(addr[0]), int(addr[1]))  # an IPv6 address comes with flow and scope
        if not self.limit.allow(where[0], now):
            self.metrics.stun("rate_limited")
            return
        try:
            request = stun.parse_binding_request(data)
        except stun.StunError as err:
            self.metrics.stun(err.outcome)
            return
        if request.username is None:
            self.metrics.stun("unauthenticated")
            return
        cached = self._peers.get(request.username)
        if cached is not None and cached[1] > now:
            # the common keep-alive: known peer, unchanged binding; answered right
            # here, without a task or an await
            peer = cached[0]
            if not self._verdict(request, where, peer):
                return
            assert peer is not None
            if not (
                request.connection_request_binding and self._due(peer, where, request, now)
            ) or self._touched(peer, where, request, now):
                self._success(request, where, peer)
                return
        if len(self._tasks) >= MAX_PENDING:
            self.metrics.stun("overload")
            return
        task = asyncio.create_task(self._answer(request, where))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _peer(self, username: str) -> Peer | None:
        now = time.monotonic()
        cached = self._peers.get(username)
        if cached is not None and cached[1] > now:
            return cached[0]
        peer = await self._lookup(username)
        if len(self._peers) >= MAX_CACHE:
            self._peers.clear()
        self._peers[username] = (peer, now + PEER_CACHE_S)
        return peer

    def _verdict(
        self, request: stun.BindingRequest, addr: tuple[str, int], peer: Peer | None
    ) -> bool:
        """Whether the request is authentic; counts (and challenges) it when not."""
        if peer is None:
            self.metrics.stun("unknown_user")
            return False
        if not request.has_integrity:
            self._send(stun.binding_error(request, 401, "Unauthorized"), addr)
            self.metrics.stun("challenged")
            return False
        if not request.authentic(peer.password):
            self.metrics.stun("bad_integrity")
            return False
        stun.learn(request)  # its next keep-alives are read by the known-shape path
        return True

    def _success(self, request: stun.BindingRequest, addr: tuple[str, int], peer: Peer) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(stun.binding_success(request, addr, peer.password), addr)
        self._answered.inc()  # the counter's child, looked up once

    async def _answer(self, request: stun.BindingRequest, addr: tuple[str, int]) -> None:
        assert request.username is not None
        try:
            peer = await self._peer(request.username)
            if not self._verdict(request, addr, peer):
                return
            assert peer is not None
            if (
                request.connection_request_binding
                and self._due(peer, addr, request)
                and not self._touched(peer, addr, request)
            ):
                await self._keep(peer, addr, request.binding_change)
            self._success(request, addr, peer)
        except Exception as exc:  # the database away, say: this keep-alive is lost, not the server
            self.metrics.stun("error")
            log(logger, logging.WARNING, "stun_failed", source=addr[0], error=repr(exc))

    def _due(
        self,
        peer: Peer,
        addr: tuple[str, int],
        request: stun.BindingRequest,
        now: float | None = None,
    ) -> bool:
        """Whether the binding must be written: new, moved, changed, or not for a while."""
        last = self._written.get(peer.device_id)
        return (
            request.binding_change
            or last is None
            or last[0] != addr[0]
            or last[1] != addr[1]
            or (time.monotonic() if now is None else now) - last[2] >= self.refresh_s
        )

    def _touched(
        self,
        peer: Peer,
        addr: tuple[str, int],
        request: stun.BindingRequest,
        now: float | None = None,
    ) -> bool:
        """A due refresh of a binding as written last: batched (``touch``), no write now."""
        last = self._written.get(peer.device_id)
        if self._touch is None or last is None or last[:2] != addr or request.binding_change:
            return False
        self._seen[peer.device_id] = datetime.now(UTC)
        self._written[peer.device_id] = (
            addr[0],
            addr[1],
            time.monotonic() if now is None else now,
        )
        return True

    async def _keep(self, peer: Peer, addr: tuple[str, int], binding_change: bool) -> None:
        now = time.monotonic()
        nat = behind_nat(addr[0], peer.connection_request_url)
        changed = await self._record(peer.device_id, addr[0], addr[1], nat)
        if len(self._written) >= MAX_CACHE:
            self._written.clear()
        self._written[peer.device_id] = (addr[0], addr[1], now)
        if changed or binding_change:
            self.metrics.stun("binding_changed")
            log(
                logger,
                logging.INFO,
                "stun_binding",
                device=peer.device_id,
                address=f"{addr[0]}:{addr[1]}",
                nat=nat,
                binding_change=binding_change,
            )

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)
