"""TR-143 diagnostics run for real by a simulated CPE (TR-181 and TR-098 objects).

When the ACS sets DiagnosticsState=Requested, the test starts after the session
ends (TR-069 A.4.1.2), runs against the real network, writes its results into
the diagnostics object and raises 8 DIAGNOSTICS COMPLETE, which opens a new
session. The measurements are real timings, on loopback in the tests:

- ping: raw ICMP echo needs CAP_NET_RAW (or a ping_group_range the test host
  may not grant), so each repetition is a timed TCP connect to the host, the
  unprivileged stand-in tcping uses: the SYN out and the SYN-ACK (or the RST of a
  closed port, which proves the host answered just as well) back is one round
  trip through the host's IP stack. The port is the ACS's own when the host is
  the ACS's host, else 80.
- traceroute: the hops before the destination would need TTL-limited probes and
  the ICMP Time Exceeded they draw, again privileged; the destination itself is
  the last hop and is measured like a ping. On loopback it is the only hop.
- download / upload: HTTP GET / PUT over a plain socket, so that TCP open, ROM,
  BOM and EOM (TR-143 section 4) are taken at the bytes they name.
- udpEcho: UDP datagrams to Host:Port (a TR-143 UDP echo server) and their echoes.
- serverSelection: the ping above (or the UDP echo, at the echo port 7) per host
  of HostList; the fastest average wins.

Fault profiles: ``diagnostics-hang`` accepts a test and never finishes it;
``diagnostics-unresolvable`` resolves no host name (addresses still work).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from acs.cwmp.messages import ParameterValueStruct
from cpe_simulator.faults import CpeFault

if TYPE_CHECKING:
    from cpe_simulator.cpe import SimulatedCpe

COMPLETE_EVENT = "8 DIAGNOSTICS COMPLETE"
ECHO_PORT = 7  # RFC 862
HTTP_CHUNK = 65536

# the last path segment of each diagnostics object -> its test
_TESTS = {
    "IPPing": "ping",
    "IPPingDiagnostics": "ping",
    "TraceRoute": "traceroute",
    "TraceRouteDiagnostics": "traceroute",
    "DownloadDiagnostics": "download",
    "UploadDiagnostics": "upload",
    "UDPEchoDiagnostics": "udpEcho",
    "ServerSelectionDiagnostics": "serverSelection",
}


class Unresolvable(Exception):
    pass


@dataclass(slots=True)
class Outcome:
    """What a test leaves in its object: a state, result values, a table's rows."""

    state: str = "Complete"
    values: dict[str, str] = field(default_factory=dict)
    table: str = ""  # relative table path ("RouteHops.") rebuilt with ``rows``
    rows: list[dict[str, str]] = field(default_factory=list)


def requested(cpe: SimulatedCpe, params: list[ParameterValueStruct]) -> None:
    """After a SetParameterValues the CPE accepted: run each test it requested once
    the session is over."""
    for p in params:
        if p.name.endswith(".DiagnosticsState") and p.value == "Requested":
            obj = p.name[: -len("DiagnosticsState")]
            if obj.rstrip(".").rpartition(".")[2] in _TESTS:
                cpe.after_session.append(_starter(cpe, obj))


def _starter(cpe: SimulatedCpe, obj: str) -> Callable[[], Awaitable[None]]:
    async def start() -> None:
        # in the background: the fleet's after-session loop must not wait for a test
        cpe.fleet.later(0, run(cpe, obj))

    return start


async def run(cpe: SimulatedCpe, obj: str) -> None:
    """Run the test of ``obj``, store its results, tell the ACS (8 DIAGNOSTICS COMPLETE)."""
    tree = cpe.tree
    if cpe.has("diagnostics-hang") or tree.value(obj + "DiagnosticsState") != "Requested":
        return  # hung, or canceled / replaced meanwhile
    test = _TESTS[obj.rstrip(".").rpartition(".")[2]]
    tr098 = tree.root == "InternetGatewayDevice."

    def param(name: str, default: str = "") -> str:
        try:
            return tree.value(obj + name)
        except CpeFault:  # a parameter this model lacks (TR-098 has no *Detailed)
            return default

    resolve = _resolver(unresolvable=cpe.has("diagnostics-unresolvable"))
    try:
        outcome = await TESTS[test](param, resolve, tree.acs_url, tr098)
    except Unresolvable:
        # TR-098's transfer tests have no such state: the connection could not start
        unresolved_state = "Error_CannotResolveHostName"
        if tr098 and test in ("download", "upload"):
            unresolved_state = "Error_InitConnectionFailed"
        outcome = Outcome(unresolved_state)
    except OSError:
        outcome = Outcome("Error_Other")
    if outcome.table:
        for path, row in zip(
            tree.rebuild_table_internal(obj + outcome.table, len(outcome.rows)),
            outcome.rows,
            strict=True,
        ):
            for name, value in row.items():
                tree.set_value_internal(path + name, value)
    for name, value in outcome.values.items():
        if param(name, "\0") != "\0":
            tree.set_value_internal(obj + name, value)
    tree.set_value_internal(obj + "DiagnosticsState", outcome.state)
    cpe.fleet.count("diagnostics", f"{test}:{outcome.state}")
    cpe.add_event(COMPLETE_EVENT)
    cpe.fleet.wake(cpe)


Param = Callable[[str, str], str]
Resolve = Callable[[str], Awaitable[str]]


def _resolver(*, unresolvable: bool) -> Resolve:
    async def resolve(host: str) -> str:
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            if unresolvable:
                raise Unresolvable(host) from None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, family=socket.AF_INET, type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError):
            raise Unresolvable(host) from None
        return str(infos[0][4][0])

    return resolve


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _stamp(at: datetime) -> str:
    """dateTime with microseconds: TR-143 asks for that precision for ROM/BOM/EOM."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ ping


async def _port_for(address: str, acs_url: str, resolve: Resolve) -> int:
    acs = urlsplit(acs_url)
    if acs.hostname:
        try:
            if await resolve(acs.hostname) == address:
                return acs.port or (443 if acs.scheme == "https" else 80)
        except Unresolvable:
            pass
    return 80


async def _tcp_rtt(address: str, port: int, timeout_s: float) -> float | None:
    """One round trip in seconds (connect, or its refusal); None when nothing came back."""
    start = time.perf_counter()
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout_s)
    except ConnectionRefusedError:
        return time.perf_counter() - start  # the host's RST: it answered
    except (TimeoutError, OSError):
        return None
    rtt = time.perf_counter() - start
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return rtt


async def _pings(address: str, port: int, count: int, timeout_s: float) -> list[float | None]:
    return [await _tcp_rtt(address, port, timeout_s) for _ in range(count)]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


async def _ping(param: Param, resolve: Resolve, acs_url: str, tr098: bool) -> Outcome:
    address = await resolve(param("Host", ""))
    count = max(1, _int(param("NumberOfRepetitions", "1"), 1))
    timeout_s = max(1, _int(param("Timeout", "1000"), 1000)) / 1000
    rtts = await _pings(address, await _port_for(address, acs_url, resolve), count, timeout_s)
    ok = [r for r in rtts if r is not None]
    values = {
        "SuccessCount": str(len(ok)),
        "FailureCount": str(count - len(ok)),
        "AverageResponseTime": str(_ms(sum(ok) / len(ok)) if ok else 0),
        "MinimumResponseTime": str(_ms(min(ok)) if ok else 0),
        "MaximumResponseTime": str(_ms(max(ok)) if ok else 0),
        "AverageResponseTimeDetailed": str(_us(sum(ok) / len(ok)) if ok else 0),
        "MinimumResponseTimeDetailed": str(_us(min(ok)) if ok else 0),
        "MaximumResponseTimeDetailed": str(_us(max(ok)) if ok else 0),
    }
    return Outcome(values=values)


async def _traceroute(param: Param, resolve: Resolve, acs_url: str, tr098: bool) -> Outcome:
    host = param("Host", "")
    address = await resolve(host)
    tries = max(1, _int(param("NumberOfTries", "1"), 1))
    timeout_s = max(1, _int(param("Timeout", "5000"), 5000)) / 1000
    rtts = await _pings(address, await _port_for(address, acs_url, resolve), tries, timeout_s)
    answered = [r for r in rtts if r is not None]
    if not answered:
        return Outcome("Error_MaxHopCountExceeded", {"RouteHopsNumberOfEntries": "0"})
    prefix = "Hop" if tr098 else ""  # TR-098 names them HopHost, HopHostAddress...
    row = {
        f"{prefix}Host": host,
        f"{prefix}HostAddress": address,
        f"{prefix}ErrorCode": "0",
        f"{prefix}RTTimes": ",".join(str(_ms(r)) if r is not None else "0" for r in rtts),
    }
    values = {"ResponseTime": str(_ms(answered[-1]))}
    return Outcome(values=values, table="RouteHops.", rows=[row])


# ------------------------------------------------------------------ HTTP throughput


def _target(url: str) -> tuple[str, int, str] | None:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


def _status_of(head: bytes) -> int:
    try:
        return int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def _dechunked_length(body: bytes) -> int:
    """Payload bytes of a chunked body."""
    total, at = 0, 0
    while True:
        end = body.find(b"\r\n", at)
        if end < 0:
            return total
        size = int(body[at:end].split(b";")[0] or b"0", 16)
        if size == 0:
            return total
        total += size
        at = end + 2 + size + 2


async def _download(param: Param, resolve: Resolve, acs_url: str, tr098: bool) -> Outcome:
    target = _target(param("DownloadURL", ""))
    if target is None:
        return Outcome("Error_InitConnectionFailed")
    host, port, path = target
    address = await resolve(host)
    tcp_request = _now()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 30)
    except (TimeoutError, OSError):
        return Outcome("Error_InitConnectionFailed")
    tcp_response = _now()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    rom = _now()
    writer.write(request)
    await writer.drain()
    received = bytearray()
    bom: datetime | None = None
    try:
        while chunk := await asyncio.wait_for(reader.read(HTTP_CHUNK), 30):
            if bom is None:
                bom = _now()
            received += chunk
    except TimeoutError:
        return Outcome("Error_Timeout")
    finally:
        writer.close()
    eom = _now()
    head, sep, body = bytes(received).partition(b"\r\n\r\n")
    if bom is None or not sep:
        return Outcome("Error_NoResponse")
    if _status_of(head) != 200:
        return Outcome("Error_TransferFailed")
    chunked = b"transfer-encoding: chunked" in head.lower()
    test_bytes = _dechunked_length(body) if chunked else len(body)
    values = {
        "ROMTime": _stamp(rom),
        "BOMTime": _stamp(bom),
        "EOMTime": _stamp(eom),
        "TCPOpenRequestTime": _stamp(tcp_request),
        "TCPOpenResponseTime": _stamp(tcp_response),
        "TestBytesReceived": str(test_bytes),
        "TotalBytesReceived": str(len(received)),
        "TotalBytesSent": str(len(request)),
    }
    return Outcome("Completed" if tr098 else "Complete", values)


async def _upload(param: Param, resolve: Resolve, acs_url: str, tr098: bool) -> Outcome:
    target = _target(param("UploadURL", ""))
    if target is None:
        return Outcome("Error_InitConnectionFailed")
    host, port, path = target
    length = max(0, _int(param("TestFileLength", "0"), 0))
    address = await resolve(host)
    tcp_request = _now()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 30)
    except (TimeoutError, OSError):
        return Outcome("Error_InitConnectionFailed")
    tcp_response = _now()
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {length}\r\n"
        "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    ).encode()
    rom = _now()
    received = bytearray()
    try:
        writer.write(head)
        await writer.drain()
        bom = _now()
        block = bytes(HTTP_CHUNK)
        left = length
        while left:
            writer.write(block[: min(left, HTTP_CHUNK)])
            left -= min(left, HTTP_CHUNK)
            await writer.drain()
        while chunk := await asyncio.wait_for(reader.read(HTTP_CHUNK), 30):
            received += chunk
    except TimeoutError:
        return Outcome("Error_Timeout" if not tr098 else "Error_NoResponse")
    finally:
        writer.close()
    eom = _now()
    if not received:
        return Outcome("Error_NoResponse")
    if not 200 <= _status_of(bytes(received)) < 300:
        return Outcome("Error_NoTransferComplete")
    values = {
        "ROMTime": _stamp(rom),
        "BOMTime": _stamp(bom),
        "EOMTime": _stamp(eom),
        "TCPOpenRequestTime": _stamp(tcp_request),
        "TCPOpenResponseTime": _stamp(tcp_response),
        "TestBytesSent": str(length),
        "TotalBytesSent": str(len(head) + length),
        "TotalBytesReceived": str(len(received)),
    }
    return Outcome("Completed" if tr098 else "Complete", values)


# ------------------------------------------------------------------ UDP echo


class _Echoes(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.replies.put_nowait(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable
        pass


async def _udp_rtts(
    address: str, port: int, count: int, timeout_s: float, size: int, gap_s: float
) -> list[float | None]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Echoes, remote_addr=(address, port))
    rtts: list[float | None] = []
    try:
        for n in range(count):
            payload = n.to_bytes(4, "big") + bytes(max(0, size - 4))
            start = time.perf_counter()
            transport.sendto(payload)
            rtt: float | None = None
            deadline = start + timeout_s
            while rtt is None and time.perf_counter() < deadline:
                try:
                    got = await asyncio.wait_for(
                        proto.replies.get(), deadline - time.perf_counter()
                    )
                except TimeoutError:
                    break
                if got[:4] == payload[:4]:  # a late echo of an earlier packet is not this one
                    rtt = time.perf_counter() - start
            rtts.append(rtt)
            if n + 1 < count:
                await asyncio.sleep(gap_s)
    finally:
        transport.close()
    return rtts


async def _udp_echo(param: Param, resolve: Resolve, acs_url: str, tr098: bool) -> Outcome:
    address = await resolve(param("Host", ""))
    count = max(1, _int(param("NumberOfRepetitions", "1"), 1))
    rtts = await _udp_rtts(
        address,
        _int(param("Port", "0"), 0) or ECHO_PORT,
        count,
        max(1, _int(param("Timeout", "5000"), 5000)) / 1000,
        max(4, _int(param("DataBlockSize", "24"), 24)),
        max(0, _int(param("InterTransmissionTime", "1000"), 1000)) / 1000,
    )
    ok = [r for r in rtts if r is not None]
    values = {
        "SuccessCount": str(len(ok)),
        "FailureCount": str(count - len(ok)),
        "AverageResponseTime": str(_ms(sum(ok) / len(ok)) if ok else 0),
        "MinimumResponseTime": str(_ms(min(ok)) if ok else 0),
        "MaximumResponseTime": str(_ms(max(ok)) if ok else 0),
    }
    return Outcome(values=values)


async def _server_selection(param: Param, resolve: Resolve, acs_url: str, tr098: bool) -> Outcome:
    hosts = [h.strip() for h in param("HostList", "").split(",") if h.strip()]
    count = max(1, _int(param("NumberOfRepetitions", "1"), 1))
    timeout_s = max(1, _int(param("Timeout", "1000"), 1000)) / 1000
    udp = param("Protocol", "ICMP") == "UDP Echo"
    best: tuple[float, str, list[float]] | None = None
    for host in hosts:
        address = await resolve(host)
        if udp:
            rtts = await _udp_rtts(address, ECHO_PORT, count, timeout_s, 24, 0)
        else:
            rtts = await _pings(
                address, await _port_for(address, acs_url, resolve), count, timeout_s
            )
        ok = [r for r in rtts if r is not None]
        if ok and (best is None or sum(ok) / len(ok) < best[0]):
            best = (sum(ok) / len(ok), host, ok)
    if best is None:
        return Outcome(values={"FastestHost": ""})
    average, host, ok = best
    values = {
        "FastestHost": host,
        # microseconds, as TR-181 ServerSelectionDiagnostics reports them
        "AverageResponseTime": str(_us(average)),
        "MinimumResponseTime": str(_us(min(ok))),
        "MaximumResponseTime": str(_us(max(ok))),
    }
    return Outcome(values=values)


TESTS: dict[str, Callable[[Param, Resolve, str, bool], Awaitable[Outcome]]] = {
    "ping": _ping,
    "traceroute": _traceroute,
    "download": _download,
    "upload": _upload,
    "udpEcho": _udp_echo,
    "serverSelection": _server_selection,
}
