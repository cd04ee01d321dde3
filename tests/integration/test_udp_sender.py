"""The UDP connection-request sender against real sockets on 127.0.0.1 acting as CPEs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from acs.connreq import udp
from acs.connreq.udp_sender import UdpConnectionRequester, polled


class Cpe(asyncio.DatagramProtocol):
    """Records every datagram; "opens its session" once it accepted a valid one."""

    def __init__(self, *, answer: bool = True) -> None:
        self.got: list[udp.UdpConnectionRequest] = []
        self.guard = udp.ReplayGuard()
        self.accepted = 0
        self.answer = answer

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg = udp.parse(data)
        self.got.append(msg)
        if udp.verify(msg, "cr", "cr-secret") and self.guard.refuse(msg) is None and self.answer:
            self.accepted += 1


async def listen(cpe: Cpe) -> tuple[asyncio.DatagramTransport, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: cpe, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[:2]


async def test_the_cpe_gets_one_valid_request_and_the_knock_ends_when_it_comes() -> None:
    cpe = Cpe()
    transport, addr = await listen(cpe)
    sender = UdpConnectionRequester()

    async def arrived() -> bool:
        return cpe.accepted > 0

    try:
        r = await sender.send(addr, "cr", "cr-secret", polled(arrived), 3.0)
        assert r.ok and r.outcome == "accepted" and r.elapsed_s < 1.0, r
        r2 = await sender.send(addr, "cr", "cr-secret", polled(lambda: _after(cpe, 2)), 3.0)
        assert r2.ok
        assert cpe.accepted == 2
        first, second = cpe.got[0], cpe.got[-1]
        assert second.id > first.id and second.ts >= first.ts  # rising: not a replay
    finally:
        transport.close()
        await sender.close()


async def _after(cpe: Cpe, n: int) -> bool:
    return cpe.accepted >= n


async def test_retransmissions_repeat_one_request_and_stop_at_the_timeout() -> None:
    cpe = Cpe(answer=False)  # a CPE that never comes
    transport, addr = await listen(cpe)
    sender = UdpConnectionRequester()

    async def never() -> bool:
        return False

    try:
        started = time.monotonic()
        r = await sender.send(addr, "cr", "cr-secret", polled(never), 1.0)
        took = time.monotonic() - started
        assert not r.ok and r.outcome == "timeout"
        assert 0.9 <= took < 1.5, took
        # 0, 0.1, 0.3, 0.7 s: four sends inside one second, every one the same request
        assert len(cpe.got) == 4 and len({(m.id, m.cn, m.sig) for m in cpe.got}) == 1
        assert f"no session after 4 datagram(s) to {addr[0]}:{addr[1]}" in r.reason
        empty = await sender.send(addr, "", "x", polled(never), 1.0)
        assert not empty.ok and empty.outcome == "auth_failed"
        assert "ConnectionRequestUsername" in empty.reason
    finally:
        transport.close()
        await sender.close()


async def test_a_binding_that_moves_mid_knock_is_followed_with_the_same_request() -> None:
    old, new = Cpe(answer=False), Cpe()  # the NAT forgot the old port
    t_old, a_old = await listen(old)
    t_new, a_new = await listen(new)
    sender = UdpConnectionRequester()

    async def arrived() -> bool:
        return new.accepted > 0

    async def retarget() -> tuple[str, int]:
        return a_new

    try:
        r = await sender.send(a_old, "cr", "cr-secret", polled(arrived), 3.0, retarget)
        assert r.ok, r
        assert len(old.got) == 1 and new.accepted == 1
        assert (old.got[0].id, old.got[0].cn) == (new.got[0].id, new.got[0].cn)
    finally:
        t_old.close()
        t_new.close()
        await sender.close()
