"""STUN server throughput: signed Binding Requests answered per second by one server,
against a bare asyncio UDP echo on the same loop.

The server is the ACS's own (acs.connreq.stun_server.StunServer): parse,
credential lookup (its cache; the lookup itself is in memory here, so the
figure is the server's and not PostgreSQL's), MESSAGE-INTEGRITY check, the
binding write throttle, and a signed answer. The ceiling is an asyncio
DatagramProtocol that sends every datagram back unchanged: what the event loop
and the kernel allow at all. The server reads the datagrams queued behind the
one asyncio hands over in the same loop turn, which the bare echo does not, so
a second echo that reads that way is measured too: the like-for-like ceiling,
whose ratio is the codec's and the server's own cost. A client process keeps
a window of requests in flight and counts answers; the servers are measured in
the same run, interleaved in rounds, and each rate is the fastest round (noise
only adds time).

    python -m bench.stun            # about 20 s
    python -m bench.stun --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from typing import Any

from acs.connreq import stun
from acs.connreq.stun_server import DRAIN_MAX, MAX_DATAGRAM, StunServer
from acs.core.reach import StunPeer
from acs.metrics import Metrics

GOAL_PER_S = 20_000  # issue 16: signed Binding Requests answered per second by one worker
# the ratio to a bare echo is reported beside it: what the loop and kernel allow on the machine
SCENARIO = "stun-binding"
USERNAME, PASSWORD = "SIM00000001", "stun-secret"


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class DrainingEcho(Echo):
    """The echo with the STUN server's read loop: after the datagram asyncio hands
    over, the ones queued behind it are read in the same turn (stun_server.DRAIN_MAX).
    The STUN server reads this way, so this is its like-for-like ceiling."""

    sock: socket.socket

    def datagram_received(self, data: bytes, addr: Any) -> None:
        send = self.transport.sendto  # type: ignore[attr-defined]
        send(data, addr)
        for _ in range(DRAIN_MAX):
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            send(data, addr)


def client(port: int, count: int, window: int) -> float:
    """Answers per second for ``count`` answers with ``window`` requests in flight."""
    _tid, request = stun.binding_request(USERNAME, PASSWORD)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.2)
    target = ("127.0.0.1", port)
    got = 0
    start = time.perf_counter()
    for _ in range(window):
        sock.sendto(request, target)
    while got < count:
        try:
            sock.recv(2048)
        except TimeoutError:  # lost in a full buffer: refill the window
            for _ in range(window):
                sock.sendto(request, target)
            continue
        got += 1
        sock.sendto(request, target)
    elapsed = time.perf_counter() - start
    sock.close()
    return count / elapsed


async def serve_both() -> tuple[int, int, int, StunServer]:
    peer = StunPeer("dev-1", PASSWORD, "http://127.0.0.1:7548/cr")

    async def lookup(username: str) -> StunPeer | None:
        return peer if username == USERNAME else None

    async def record(device_id: str, address: str, port: int, nat: bool) -> bool:
        return False

    server = StunServer(lookup, record, Metrics(), rate_per_source=1e9, refresh_s=3600)
    stun_port = await server.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    echo_port = transport.get_extra_info("sockname")[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    draining = DrainingEcho()
    draining.sock = sock
    await loop.create_datagram_endpoint(lambda: draining, sock=sock)
    return stun_port, echo_port, sock.getsockname()[1], server


async def run(count: int, window: int, rounds: int) -> dict[str, Any]:
    stun_port, echo_port, drain_port, server = await serve_both()
    rates: dict[str, list[float]] = {"echo": [], "drain": [], "stun": []}
    for _ in range(rounds):
        for name, port in (("echo", echo_port), ("drain", drain_port), ("stun", stun_port)):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.stun",
                "--client",
                str(port),
                "--count",
                str(count),
                "--window",
                str(window),
                stdout=subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            rates[name].append(float(out.decode().strip()))
    answered = server.metrics.registry.get_sample_value(
        "acs_stun_requests_total", {"outcome": "answered"}
    )
    await server.close()
    return {"rates": rates, "answered": answered}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--count", type=int, default=50_000, help="answers per round and server")
    ap.add_argument("--window", type=int, default=32, help="requests in flight")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--client", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.client is not None:
        print(f"{client(args.client, args.count, args.window):.1f}")
        return
    count, rounds = (3_000, 2) if args.quick else (args.count, args.rounds)
    r = asyncio.run(run(count, args.window, rounds))
    echo, stun_rate = max(r["rates"]["echo"]), max(r["rates"]["stun"])
    drain = max(r["rates"]["drain"])
    ratio = stun_rate / echo
    print(f"{rounds} rounds of {count} answers, {args.window} in flight, one client process")
    print("| server | best answers/s | all rounds |")
    print("|---|---|---|")
    for name, key, best in (
        ("bare asyncio UDP echo (ceiling)", "echo", echo),
        ("asyncio UDP echo draining its socket (the STUN server's read loop)", "drain", drain),
        ("STUN Binding", "stun", stun_rate),
    ):
        print(f"| {name} | {best:,.0f} | {', '.join(f'{x:,.0f}' for x in r['rates'][key])} |")
    met = stun_rate >= GOAL_PER_S
    print(f"{stun_rate:,.0f}/s, goal >= {GOAL_PER_S:,}/s: {'met' if met else 'NOT met'}")
    print(f"ratio to the bare echo {ratio:.1%}, to the draining echo {stun_rate / drain:.1%}")
    assert r["answered"] and r["answered"] >= count * rounds  # every answer was a real one
    result = {
        "scenario": SCENARIO,
        "rows": [
            {
                "target": "STUN: signed Binding Requests answered by one server",
                "goal": f">= {GOAL_PER_S:,}/s (ratio to a bare asyncio UDP echo beside it)",
                "measured": (
                    f"{stun_rate:,.0f} answers/s vs {echo:,.0f} echoes/s ({drain:,.0f}/s draining)"
                ),
                "value": round(stun_rate, 1),
                "met": met,
                "ratio": f"{ratio:.3f}",
                "notes": (
                    f"ratio to the draining echo {stun_rate / drain:.3f}; "
                    f"MESSAGE-INTEGRITY checked and signed answers; credential lookup in "
                    f"memory (cached), binding writes throttled; best of {rounds} rounds of "
                    f"{count}, window {args.window}"
                ),
            }
        ],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
