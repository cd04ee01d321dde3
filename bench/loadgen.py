"""Periodic-Inform load: simulated CPEs stripped to the wire, for throughput.

The full simulator (cpe_simulator) answers every RPC and keeps each device's
tree; that costs more CPU per session than the ACS spends, so it cannot
measure an ACS worker's ceiling on a two-core machine. Here each session is
what a CPE in steady state does at its periodic interval, and nothing more:

    POST Inform ("2 PERIODIC", the simulator's forced-inform parameters)
         <- 200 InformResponse (+ session cookie)
    POST (empty)
         <- 204                 (or the ACS's first request: counted as "busy")

over keep-alive HTTP/1.1 connections with HTTP Digest (the nonce of the first
challenge is reused with an increasing nc, as well-behaved CPEs do). The
Inform bytes are rendered once per device from the simulator's data model,
so they are the ones the simulator itself would send.

The same client also measures the ceiling: `--bare` POSTs to a server that
answers 200 with no work at all (see bench.bare), so our figure can be given
as a ratio to what this machine's aiohttp does with nothing to do.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from acs.cwmp import messages as m
from acs.cwmp.soap import CWMP_NS_1_0, Envelope, serialize_envelope
from cpe_simulator.datamodel import Identity, load_template
from cpe_simulator.tree import ParameterTree

_NONCE = re.compile(r'nonce="([^"]+)"')
_REALM = re.compile(r'realm="([^"]+)"')


def inform_bodies(
    count: int, serial_prefix: str, acs_url: str, first_serial: int = 1
) -> list[bytes]:
    """The Inform each of ``count`` simulated devices sends at its periodic interval."""
    template = load_template("tr181-gateway")
    bodies = []
    for i in range(first_serial, first_serial + count):
        serial = f"{serial_prefix}{i:08d}"
        ident = Identity.from_serial(serial)
        tree = ParameterTree(
            template,
            ident,
            acs_url=acs_url,
            connection_request_url=f"http://127.0.0.1:7548/cr/{serial}",
        )
        inform = m.Inform(
            device_id=m.DeviceIdStruct(
                ident.manufacturer, ident.oui, ident.product_class, ident.serial_number
            ),
            events=[m.EventStruct("2 PERIODIC")],
            max_envelopes=1,
            current_time=None,
            retry_count=0,
            parameter_list=tree.inform_parameters(),
        )
        env = Envelope(body=inform, cwmp_id=f"{i}")
        env.cwmp_ns = CWMP_NS_1_0
        bodies.append(serialize_envelope(env))
    return bodies


@dataclass
class Tally:
    sessions: int = 0
    requests: int = 0
    durations: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0  # seconds the counted phase lasted

    def merge(self, other: Tally) -> None:
        self.sessions += other.sessions
        self.requests += other.requests
        self.durations.extend(other.durations)
        self.errors.update(other.errors)


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; just enough of the protocol for CWMP."""

    def __init__(self, host: str, port: int, path: str, username: str, password: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.username, self.password = username, password
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.nonce: str | None = None
        self.realm = ""
        self.nc = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    def _authorization(self) -> str:
        self.nc += 1
        nc = f"{self.nc:08x}"
        cnonce = os.urandom(6).hex()
        ha1 = hashlib.md5(f"{self.username}:{self.realm}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"POST:{self.path}".encode()).hexdigest()
        resp = hashlib.md5(f"{ha1}:{self.nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        return (
            f'Authorization: Digest username="{self.username}", realm="{self.realm}", '
            f'nonce="{self.nonce}", uri="{self.path}", qop=auth, nc={nc}, '
            f'cnonce="{cnonce}", response="{resp}", algorithm=MD5\r\n'
        )

    async def post(
        self, body: bytes, cookie: str | None = None, auth: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        if body:
            head += 'Content-Type: text/xml; charset="utf-8"\r\nSOAPAction: ""\r\n'
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        if auth and self.nonce is not None:
            head += self._authorization()
        self.writer.write(head.encode() + b"\r\n" + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                k = k.lower()
                # several Set-Cookie/WWW-Authenticate: the first one will do here
                headers.setdefault(k, v.strip())
        length = int(headers.get("content-length", "0"))
        payload = await self.reader.readexactly(length) if length else b""
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, payload

    async def inform(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        status, headers, payload = await self.post(body, auth=True)
        if status == 401:  # first contact on this connection, or the nonce went stale
            challenge = headers.get("www-authenticate", "")
            nonce, realm = _NONCE.search(challenge), _REALM.search(challenge)
            if nonce is None or realm is None:
                raise HttpError(f"401 without a Digest challenge: {challenge!r}")
            self.nonce, self.realm, self.nc = nonce.group(1), realm.group(1), 0
            status, headers, payload = await self.post(body, auth=True)
        return status, headers, payload


async def _cpe_loop(
    conn: Connection,
    bodies: list[bytes],
    stop_at: float,
    tally: Tally,
    rng: random.Random,
    once: bool = False,
) -> None:
    # ``bodies`` are this connection's own devices: a device never has two
    # sessions at once (the ACS would rightly answer 8005). ``once``: each
    # device one session, in order, whatever the time
    order = iter(bodies) if once else None
    while order is not None or time.monotonic() < stop_at:
        body = next(order, None) if order is not None else bodies[rng.randrange(len(bodies))]
        if body is None:
            break
        t0 = time.monotonic()
        try:
            status, headers, _ = await conn.inform(body)
            tally.requests += 1
            if status != 200:
                tally.errors[f"inform_{status}"] += 1
                if status == 503:
                    await asyncio.sleep(float(headers.get("retry-after", "1")))
                continue
            cookie = headers.get("set-cookie", "").split(";", 1)[0]
            status, _, _ = await conn.post(b"", cookie=cookie)
            tally.requests += 1
            if status != 204:
                # the ACS had work for the device; a periodic-only client cannot do it
                tally.errors[f"empty_post_{status}"] += 1
                conn.close()
                continue
        except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
            tally.errors[type(exc).__name__] += 1
            conn.close()
            await asyncio.sleep(0.05)
            continue
        tally.sessions += 1
        tally.durations.append(time.monotonic() - t0)
    conn.close()


async def _bare_loop(conn: Connection, body: bytes, stop_at: float, tally: Tally) -> None:
    while time.monotonic() < stop_at:
        t0 = time.monotonic()
        try:
            status, _, _ = await conn.post(body)
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally.errors[type(exc).__name__] += 1
            conn.close()
            continue
        tally.requests += 1
        if status != 200:
            tally.errors[f"bare_{status}"] += 1
            continue
        tally.sessions += 1  # one "session" = one POST here
        tally.durations.append(time.monotonic() - t0)
    conn.close()


async def run(
    host: str,
    port: int,
    *,
    bodies: list[bytes],
    connections: int,
    duration: float,
    warmup: float,
    username: str = "",
    password: str = "",
    bare: bool = False,
    on_counted_start: Callable[[], object] | None = None,
    once: bool = False,
) -> Tally:
    """Drive ``connections`` concurrent CPE connections; count only after the warm-up.

    Needs at least as many devices (``bodies``) as connections. ``once``: one
    session of every device and no more (no warm-up, no duration).
    """
    if not bare and len(bodies) < connections:
        raise ValueError("fewer devices than connections")

    async def phase(seconds: float) -> Tally:
        stop_at = time.monotonic() + seconds
        tallies = [Tally() for _ in range(connections)]
        jobs = []
        for i, tally in enumerate(tallies):
            conn = Connection(host, port, "/", username, password)
            if bare:
                jobs.append(_bare_loop(conn, bodies[i % len(bodies)], stop_at, tally))
            else:
                mine = bodies[i::connections]
                jobs.append(_cpe_loop(conn, mine, stop_at, tally, random.Random(i), once))
        await asyncio.gather(*jobs)
        total = Tally()
        for t in tallies:
            total.merge(t)
        return total

    if warmup > 0 and not once:
        await phase(warmup)
    if on_counted_start is not None:  # e.g. start CPU meters, after the warm-up
        on_counted_start()
    started = time.monotonic()
    tally = await phase(duration)
    tally.wall = time.monotonic() - started
    return tally
