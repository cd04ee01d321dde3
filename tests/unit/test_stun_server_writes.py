"""What the STUN server writes to PostgreSQL, and when: a new or moved binding at
once (before the answer), an unchanged one only as a batched last-seen time."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from acs.connreq import stun
from acs.connreq.stun_server import StunServer
from acs.core.reach import StunPeer
from acs.metrics import Metrics

PEER = StunPeer("dev-1", "pw", "http://192.168.1.2:7547/cr")


class Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def test_only_changes_are_written_at_once_and_keepalives_are_batched() -> None:
    recorded: list[tuple[str, str, int]] = []
    touched: list[list[tuple[str, datetime]]] = []

    async def lookup(username: str) -> StunPeer | None:
        return PEER if username == "dev" else None

    async def record(device_id: str, address: str, port: int, nat: bool) -> bool:
        recorded.append((device_id, address, port))
        return len(recorded) > 1

    async def touch(seen: list[tuple[str, datetime]]) -> None:
        touched.append(seen)

    # refresh due at every keep-alive: each would be a write without the batch
    server = StunServer(lookup, record, Metrics(), rate_per_source=1e6, refresh_s=0, touch=touch)
    wire = Wire()
    server.transport = wire  # type: ignore[assignment]

    def keepalive(port: int) -> None:
        _tid, data = stun.binding_request("dev", "pw")
        server.datagram_received(data, ("198.51.100.7", port))

    keepalive(40000)  # new: looked up and written before the answer
    await asyncio.sleep(0.05)
    assert recorded == [("dev-1", "198.51.100.7", 40000)] and len(wire.sent) == 1
    for _ in range(5):  # unchanged: answered at once, nothing written yet
        keepalive(40000)
    assert len(wire.sent) == 6 and len(recorded) == 1 and touched == []
    await server.flush()
    (batch,) = touched
    assert [d for d, _ in batch] == ["dev-1"]  # one row however many keep-alives
    await server.flush()
    assert len(touched) == 1  # nothing new seen: no statement
    keepalive(40001)  # moved: written at once again
    await asyncio.sleep(0.05)
    assert recorded[-1] == ("dev-1", "198.51.100.7", 40001) and len(wire.sent) == 7
    answer = stun.parse_binding_answer(wire.sent[-1][0], "pw")
    assert answer.mapped == ("198.51.100.7", 40001)
    keepalive(40001)
    await server.close()  # the last keep-alive's time is written at shutdown
    assert [d for d, _ in touched[-1]] == ["dev-1"] and len(touched) == 2
    m = server.metrics.registry.get_sample_value
    assert m("acs_stun_requests_total", {"outcome": "answered"}) == 8
