"""UDP connection requests, TR-111 Part 2 (TR-069 Annex G): the pure codec.

An HTTP GET in one datagram, whose Request-URI carries

    ts   seconds since the epoch when the ACS made the request
    id   a number that differs for each request (ours rise, see MessageIds)
    un   the device's ConnectionRequestUsername
    cn   a random cnonce
    sig  HMAC-SHA1 over ts+id+un+cn (concatenated text), keyed with the
         ConnectionRequestPassword, in hex

The CPE checks the signature, that ``un`` is its own, and discards a message
whose id it has seen already or whose ts is older than the last one it
accepted (ReplayGuard), then opens a session with "6 CONNECTION REQUEST".
There is no answer: the ACS knows it worked when that session comes. Both sides
use this module: the ACS's sender (acs.connreq.udp_sender) and the simulator.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

MAX_DATAGRAM_BYTES = 1200  # an unfragmented datagram on any path; ours are ~250 bytes
_REQUEST_LINE = re.compile(rb"^GET (?P<uri>\S+) HTTP/1\.1\r?\n")
_HEX40 = re.compile(r"^[0-9A-Fa-f]{40}$")


class UdpRequestError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UdpConnectionRequest:
    ts: int
    id: int
    un: str
    cn: str
    sig: str


def signature(ts: int, msg_id: int, username: str, cnonce: str, password: str) -> str:
    text = f"{ts}{msg_id}{username}{cnonce}".encode()
    return hmac.new(password.encode(), text, hashlib.sha1).hexdigest().upper()


def build(
    host: str,
    port: int,
    *,
    ts: int,
    msg_id: int,
    username: str,
    password: str,
    cnonce: str | None = None,
) -> bytes:
    """The datagram for one request; retransmissions send the same bytes (same id)."""
    cn = cnonce or secrets.token_hex(8)
    sig = signature(ts, msg_id, username, cn, password)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    query = f"ts={ts}&id={msg_id}&un={quote(username, safe='')}&cn={quote(cn, safe='')}&sig={sig}"
    return f"GET http://{authority}?{query} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()


def parse(data: bytes) -> UdpConnectionRequest:
    """The request in a datagram, or UdpRequestError saying what is wrong."""
    if len(data) > MAX_DATAGRAM_BYTES:
        raise UdpRequestError(f"{len(data)} bytes: too large for a UDP connection request")
    m = _REQUEST_LINE.match(data)
    if m is None:
        raise UdpRequestError("not an HTTP/1.1 GET request line")
    try:
        uri = m["uri"].decode("ascii")
    except UnicodeDecodeError:
        raise UdpRequestError("the Request-URI is not ASCII") from None
    query = parse_qs(urlsplit(uri).query, keep_blank_values=True, max_num_fields=16)
    fields: dict[str, str] = {}
    for name in ("ts", "id", "un", "cn", "sig"):
        values = query.get(name)
        if not values or len(values) != 1:
            raise UdpRequestError(f"the Request-URI needs exactly one {name!r}")
        fields[name] = values[0]
    if not (fields["ts"].isdigit() and fields["id"].isdigit()):
        raise UdpRequestError("ts and id must be unsigned integers")
    if not _HEX40.match(fields["sig"]):
        raise UdpRequestError("sig must be 40 hex digits (HMAC-SHA1)")
    return UdpConnectionRequest(
        int(fields["ts"]), int(fields["id"]), fields["un"], fields["cn"], fields["sig"]
    )


def verify(msg: UdpConnectionRequest, username: str, password: str) -> bool:
    """Whether the request is signed with this username's password."""
    if not hmac.compare_digest(msg.un.encode(), username.encode()):
        return False
    expected = signature(msg.ts, msg.id, msg.un, msg.cn, password)
    return hmac.compare_digest(expected, msg.sig.upper())


class ReplayGuard:
    """The CPE's memory of the last accepted request (TR-069 G.2.1.3): a replayed
    id or an older ts is refused. One per CPE; pure, the caller verifies first."""

    __slots__ = ("last_id", "last_ts")

    def __init__(self) -> None:
        self.last_ts = -1
        self.last_id: int | None = None

    def refuse(self, msg: UdpConnectionRequest) -> str | None:
        """Why ``msg`` must be discarded, or None to accept it (and remember it)."""
        if msg.id == self.last_id:
            return "replayed id"  # also every retransmission of one accepted request
        if msg.ts < self.last_ts:
            return "stale ts"
        self.last_ts, self.last_id = msg.ts, msg.id
        return None


# ids count tenths of a second from here: they rise across restarts and across
# workers, and stay below 2**32 (CPE stacks parse an unsignedInt) until 2033
_ID_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z


class MessageIds:
    """Rising (ts, id) pairs: ts is the clock's second, id its tenth of a second
    since _ID_EPOCH, bumped to stay above the last one, so a CPE's ReplayGuard
    never mistakes a new request for an old one."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self, now: float) -> tuple[int, int]:
        self._last = max(self._last + 1, int((now - _ID_EPOCH) * 10)) % 2**32
        return int(now), self._last
