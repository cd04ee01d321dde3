"""STUN Binding messages as TR-111 Part 2 uses them (pure: bytes in, bytes out).

The packet format (RFC 5389 header, attributes, MESSAGE-INTEGRITY, FINGERPRINT)
is aioice's, from the aiortc project: a maintained, fuzzed implementation, so we
do not keep our own TLV arithmetic. What TR-111 adds lives here: the two
attributes a CPE puts in its Binding Requests (CONNECTION-REQUEST-BINDING says
"this binding is the one to send UDP connection requests to", BINDING-CHANGE
says "and it changed since the last one"), and the rules of which request the
ACS answers at all.

Both sides use this module: the ACS's server (acs.connreq.stun_server) and the
simulator's CPE client (cpe_simulator.stun).
"""

from __future__ import annotations

import binascii
import functools
import hmac
import struct
from dataclasses import dataclass

from aioice import stun

# TR-111 Part 2, 2.2.1: attribute types in the "comprehension-optional" range,
# so a plain STUN server ignores them
CONNECTION_REQUEST_BINDING = 0xC001
BINDING_CHANGE = 0xC002
# the value of CONNECTION-REQUEST-BINDING, trailing space included (20 bytes)
CONNECTION_REQUEST_BINDING_VALUE = b"dslforum.org/TR-111 "

# aioice looks attributes up in these tables; registering ours once lets it
# parse and serialise them like its own (the names are not used by aioice)
for _code, _name in (
    (CONNECTION_REQUEST_BINDING, "CONNECTION-REQUEST-BINDING"),
    (BINDING_CHANGE, "BINDING-CHANGE"),
):
    _entry = (_code, _name, stun.pack_bytes, stun.unpack_bytes)
    stun.ATTRIBUTES_BY_TYPE.setdefault(_code, _entry)
    stun.ATTRIBUTES_BY_NAME.setdefault(_name, _entry)

MAGIC_COOKIE = stun.COOKIE
MAX_MESSAGE_BYTES = 548  # RFC 5389 7.1: a Binding Request fits an unfragmented IPv4 packet
MAX_USERNAME_BYTES = 513  # RFC 5389 15.3


class StunError(ValueError):
    """A datagram that is no Binding Request we can use, and why (a metrics label)."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome


@dataclass(slots=True)  # not frozen: its __init__ is on the per-packet path (plain stores)
class BindingRequest:
    transaction_id: bytes
    username: str | None
    connection_request_binding: bool  # TR-111: the binding to send UDP connection requests to
    binding_change: bool  # TR-111: the CPE saw its binding change
    has_integrity: bool
    _message: stun.Message | None  # None: read by the known-shape path (``learn``)
    # the bytes MESSAGE-INTEGRITY covers, length field as RFC 5389 15.4 sets it, and
    # the HMAC the CPE sent; both None unless MESSAGE-INTEGRITY then FINGERPRINT end it
    _signed: bytes | None = None
    _mac: bytes | None = None
    # the attributes before MESSAGE-INTEGRITY: what ``learn`` remembers
    _shape: bytes | None = None

    def authentic(self, password: str) -> bool:
        """Whether MESSAGE-INTEGRITY was made with ``password`` (RFC 5389 15.4,
        short-term credential: the key is the password itself)."""
        if self._signed is not None and self._mac is not None:
            # the one-shot C HMAC: aioice's check builds an hmac object each time
            return hmac.compare_digest(
                self._mac, hmac.digest(password.encode(), self._signed, "sha1")
            )
        if self._message is None:
            return False
        return self._message.check_message_integrity(password.encode())


# Known shapes (the keep-alive hot path). A CPE's keep-alives differ only in their
# transaction id, MESSAGE-INTEGRITY and FINGERPRINT: the attributes before
# MESSAGE-INTEGRITY (USERNAME, CONNECTION-REQUEST-BINDING, BINDING-CHANGE) are the
# same bytes each time. Once aioice has parsed such a request and the server found it
# authentic, ``learn`` keeps those bytes with what they said; a later datagram with
# the same bytes, then exactly MESSAGE-INTEGRITY and FINGERPRINT at the end, walks
# aioice's TLV loop to the same positions and says the same, so it is read by one
# dict lookup (FINGERPRINT still checked; MESSAGE-INTEGRITY checked by ``authentic``).
# Only authentic requests are learnt, so a flood of made-up usernames cannot evict
# the fleet's shapes; the table is bounded all the same.
_SHAPES: dict[bytes, tuple[str | None, bool, bool]] = {}
MAX_SHAPES = 100_000


def learn(request: BindingRequest) -> None:
    """Remember an authentic request's shape, so its next keep-alives take the fast path."""
    if request._shape is None or request._shape in _SHAPES:
        return
    if len(_SHAPES) >= MAX_SHAPES:
        _SHAPES.clear()
    _SHAPES[request._shape] = (
        request.username,
        request.connection_request_binding,
        request.binding_change,
    )


def _known(data: bytes) -> BindingRequest | None:
    """The request in ``data`` when its shape is known and it ends MI + FINGERPRINT."""
    n = len(data)
    if n < 52 or n > MAX_MESSAGE_BYTES or data[n - 8 : n - 4] != _FP_HEAD:
        return None
    # the key holds the type, the length and the magic cookie too (``_shape_of``):
    # equal keys mean a Binding Request of the learnt length with MI at n-32
    shape = _SHAPES.get(data[:8] + data[20 : n - 28])
    if shape is None:
        return None
    if binascii.crc32(data[: n - 8]) ^ stun.FINGERPRINT_XOR != int.from_bytes(data[n - 4 :]):
        raise StunError("malformed", "not a STUN message: STUN message fingerprint does not match")
    username, crb, change = shape
    return BindingRequest(
        data[8:20],
        username,
        crb,
        change,
        True,
        None,
        # the length MESSAGE-INTEGRITY is computed with counts itself, not FINGERPRINT
        data[:2] + (n - 28).to_bytes(2) + data[4 : n - 32],
        data[n - 28 : n - 8],
    )


def _shape_of(data: bytes, message: stun.Message) -> bytes | None:
    """The known-shape key of a parsed Binding Request: its header without the
    transaction id, and the attributes up to MESSAGE-INTEGRITY's own header; None
    unless MESSAGE-INTEGRITY and then FINGERPRINT are its last two attributes."""
    n = len(data)
    if (
        message._integrity_data is None
        or len(message._integrity_data) != n - 32
        or data[n - 32 : n - 28] != _MI_HEAD
        or data[n - 8 : n - 4] != _FP_HEAD
    ):
        return None
    return data[:8] + data[20 : n - 28]


def parse_binding_request(data: bytes) -> BindingRequest:
    """The Binding Request in ``data``; StunError(outcome, why) for anything else."""
    known = _known(data)
    return known if known is not None else _parse(data)


def _parse(data: bytes) -> BindingRequest:
    """The full read, by aioice."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise StunError("malformed", f"{len(data)} bytes: larger than a Binding Request")
    if len(data) >= 1 and data[0] & 0xC0:
        raise StunError("malformed", "the first two bits are not zero: not STUN")
    if len(data) >= 8 and struct.unpack_from("!I", data, 4)[0] != MAGIC_COOKIE:
        # RFC 3489 clients: their 16-byte transaction id cannot be echoed by the codec
        raise StunError("legacy", "no RFC 5389 magic cookie (an RFC 3489 client)")
    try:
        msg = stun.parse_message(data)
    except (ValueError, struct.error, IndexError, KeyError) as exc:
        raise StunError("malformed", f"not a STUN message: {exc}") from None
    if msg.message_method != stun.Method.BINDING or msg.message_class != stun.Class.REQUEST:
        raise StunError("not_binding", f"{msg.message_method.name} {msg.message_class.name}")
    username = msg.attributes.get("USERNAME")
    if username is not None and (
        not isinstance(username, str) or len(username.encode()) > MAX_USERNAME_BYTES
    ):
        raise StunError("malformed", "USERNAME too long")
    crb = msg.attributes.get("CONNECTION-REQUEST-BINDING")
    return BindingRequest(
        transaction_id=msg.transaction_id,
        username=username or None,
        connection_request_binding=crb is not None,
        binding_change="BINDING-CHANGE" in msg.attributes,
        has_integrity="MESSAGE-INTEGRITY" in msg.attributes,
        _message=msg,
        _shape=_shape_of(data, msg),
    )


def binding_success(request: BindingRequest, address: tuple[str, int], password: str) -> bytes:
    """The Binding Success Response telling the CPE its public address and port.

    MAPPED-ADDRESS as well as XOR-MAPPED-ADDRESS: TR-111 CPE stacks written
    against RFC 3489 read the former. Signed with the same key, so the CPE can
    trust the address it will report as UDPConnectionRequestAddress.

    The keep-alive hot path: aioice encodes the two address attributes, once
    per address (an IPv4 XOR-MAPPED-ADDRESS is XORed with the magic cookie
    only, so it does not depend on the transaction); what is per request is
    the header, MESSAGE-INTEGRITY and FINGERPRINT, done here as aioice's
    Message.add_message_integrity/add_fingerprint do, in one pass.
    """
    ip, port = address
    attrs = _mapped_v4(ip, port) if ":" not in ip else _mapped(ip, port, request.transaction_id)
    tid = request.transaction_id
    # the length counts MESSAGE-INTEGRITY while it is computed (RFC 5389 15.4) ...
    data = _HEADER.pack(_SUCCESS, len(attrs) + 24, MAGIC_COOKIE, tid) + attrs
    data += _MI_HEAD + hmac.digest(password.encode(), data, "sha1")
    # ... and FINGERPRINT too while that is (15.5)
    data = _HEADER.pack(_SUCCESS, len(attrs) + 32, MAGIC_COOKIE, tid) + data[20:]
    return data + _FP_HEAD + struct.pack("!I", binascii.crc32(data) ^ stun.FINGERPRINT_XOR)


_HEADER = struct.Struct("!HHI12s")
_SUCCESS = 0x0101  # Binding Success Response
_MI_HEAD = struct.pack("!HH", 0x0008, 20)
_FP_HEAD = struct.pack("!HH", 0x8028, 4)


def _mapped(ip: str, port: int, transaction_id: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS and MAPPED-ADDRESS, encoded by aioice."""
    msg = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=transaction_id)
    msg.attributes["XOR-MAPPED-ADDRESS"] = (ip, port)
    msg.attributes["MAPPED-ADDRESS"] = (ip, port)
    return bytes(msg)[stun.HEADER_LENGTH :]


@functools.lru_cache(maxsize=65536)
def _mapped_v4(ip: str, port: int) -> bytes:
    return _mapped(ip, port, bytes(12))


def binding_error(request: BindingRequest, code: int, reason: str) -> bytes:
    """A Binding Error Response: a code and a phrase, never an address."""
    msg = stun.Message(stun.Method.BINDING, stun.Class.ERROR, transaction_id=request.transaction_id)
    msg.attributes["ERROR-CODE"] = (code, reason)
    msg.add_fingerprint()
    return bytes(msg)


# ------------------------------------------------------------------ the CPE's side


def binding_request(
    username: str | None,
    password: str | None,
    *,
    connection_request_binding: bool = True,
    binding_change: bool = False,
    transaction_id: bytes | None = None,
) -> tuple[bytes, bytes]:
    """(transaction id, datagram) of a CPE's Binding Request; signed when a password is given."""
    msg = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, transaction_id=transaction_id)
    if username:
        msg.attributes["USERNAME"] = username
    if connection_request_binding:
        msg.attributes["CONNECTION-REQUEST-BINDING"] = CONNECTION_REQUEST_BINDING_VALUE
    if binding_change:
        msg.attributes["BINDING-CHANGE"] = b""
    if password:
        msg.add_message_integrity(password.encode())
    else:
        msg.add_fingerprint()
    return msg.transaction_id, bytes(msg)


@dataclass(frozen=True, slots=True)
class BindingAnswer:
    transaction_id: bytes
    mapped: tuple[str, int] | None  # set on success
    error_code: int | None  # set on an error response


def parse_binding_answer(data: bytes, password: str | None) -> BindingAnswer:
    """A Binding Response or Error; StunError when malformed or (success) unsigned/forged."""
    try:
        msg = stun.parse_message(data)
    except (ValueError, struct.error, IndexError, KeyError) as exc:
        raise StunError("malformed", f"not a STUN message: {exc}") from None
    if msg.message_method != stun.Method.BINDING:
        raise StunError("not_binding", msg.message_method.name)
    if msg.message_class == stun.Class.ERROR:
        return BindingAnswer(msg.transaction_id, None, msg.error_code)
    if msg.message_class != stun.Class.RESPONSE:
        raise StunError("not_binding", msg.message_class.name)
    if password and not msg.check_message_integrity(password.encode()):
        raise StunError("bad_integrity", "the response's MESSAGE-INTEGRITY does not match")
    mapped = msg.attributes.get("XOR-MAPPED-ADDRESS") or msg.attributes.get("MAPPED-ADDRESS")
    if mapped is None:
        raise StunError("malformed", "a Binding Response without a mapped address")
    return BindingAnswer(msg.transaction_id, (mapped[0], mapped[1]), None)
