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


@dataclass(frozen=True, slots=True)
class BindingRequest:
    transaction_id: bytes
    username: str | None
    connection_request_binding: bool  # TR-111: the binding to send UDP connection requests to
    binding_change: bool  # TR-111: the CPE saw its binding change
    has_integrity: bool
    _message: stun.Message

    def authentic(self, password: str) -> bool:
        """Whether MESSAGE-INTEGRITY was made with ``password`` (RFC 5389 15.4,
        short-term credential: the key is the password itself)."""
        return self._message.check_message_integrity(password.encode())


def parse_binding_request(data: bytes) -> BindingRequest:
    """The Binding Request in ``data``; StunError(outcome, why) for anything else."""
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
