"""TR-111 Part 2 pieces without I/O: STUN messages, UDP connection requests, channel choice.

The wire checks read bytes by hand (RFC 5389 header and TLVs, an HMAC built
from its definition) rather than through the codec under test.
"""

from __future__ import annotations

import binascii
import hashlib
import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acs.connreq import stun, udp
from acs.connreq.stun_server import RateLimit
from acs.connreq.udp_sender import send_schedule
from acs.core.reach import Binding, Reach, behind_nat, parse_host_port, plan

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FRESH = timedelta(seconds=300)


def attributes(data: bytes) -> dict[int, bytes]:
    """The TLVs of a STUN message, read by hand (RFC 5389 15)."""
    _type, length, cookie = struct.unpack_from("!HHI", data)
    assert cookie == 0x2112A442 and len(data) == 20 + length
    out, pos = {}, 20
    while pos < len(data):
        t, n = struct.unpack_from("!HH", data, pos)
        out[t] = data[pos + 4 : pos + 4 + n]
        pos += 4 + n + (-n % 4)
    return out


def hmac_sha1(key: bytes, text: bytes) -> bytes:
    """RFC 2104 from its definition, not through the hmac module."""
    key = key.ljust(64, b"\0")
    inner = hashlib.sha1(bytes(k ^ 0x36 for k in key) + text).digest()
    return hashlib.sha1(bytes(k ^ 0x5C for k in key) + inner).digest()


# ------------------------------------------------------------------ STUN


def test_a_cpe_binding_request_carries_tr111_attributes_on_the_wire() -> None:
    _tid, data = stun.binding_request("cpe-1", "pw", binding_change=True)
    attrs = attributes(data)
    assert struct.unpack_from("!H", data)[0] == 0x0001  # Binding Request
    assert attrs[0x0006] == b"cpe-1"  # USERNAME
    assert attrs[0xC001] == b"dslforum.org/TR-111 "  # CONNECTION-REQUEST-BINDING
    assert attrs[0xC002] == b""  # BINDING-CHANGE
    assert len(attrs[0x0008]) == 20  # MESSAGE-INTEGRITY, HMAC-SHA1


def test_the_server_reads_the_request_and_checks_its_integrity() -> None:
    _tid, data = stun.binding_request("cpe-1", "right")
    req = stun.parse_binding_request(data)
    assert (req.username, req.connection_request_binding, req.binding_change) == (
        "cpe-1",
        True,
        False,
    )
    assert req.has_integrity and req.authentic("right") and not req.authentic("wrong")
    _tid, unsigned = stun.binding_request("cpe-1", None, connection_request_binding=False)
    plain = stun.parse_binding_request(unsigned)
    assert not plain.has_integrity and not plain.authentic("right")
    assert not plain.connection_request_binding


def test_a_success_answer_gives_the_mapped_address_signed_and_an_error_gives_none() -> None:
    tid, data = stun.binding_request("cpe-1", "pw")
    req = stun.parse_binding_request(data)
    answer = stun.binding_success(req, ("198.51.100.7", 40001), "pw")
    attrs = attributes(answer)
    assert struct.unpack_from("!H", answer)[0] == 0x0101  # Binding Success Response
    assert answer[8:20] == tid
    # MAPPED-ADDRESS in clear for RFC 3489 stacks: family 1, port, address
    assert attrs[0x0001] == bytes([0, 1]) + struct.pack("!H", 40001) + bytes([198, 51, 100, 7])
    assert 0x0020 in attrs and 0x0008 in attrs  # XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY
    parsed = stun.parse_binding_answer(answer, "pw")
    assert parsed.mapped == ("198.51.100.7", 40001) and parsed.transaction_id == tid
    with pytest.raises(stun.StunError) as err:
        stun.parse_binding_answer(answer, "not-the-key")
    assert err.value.outcome == "bad_integrity"
    error = stun.binding_error(req, 401, "Unauthorized")
    e_attrs = attributes(error)
    assert struct.unpack_from("!H", error)[0] == 0x0111  # Binding Error Response
    assert e_attrs[0x0009][2:4] == bytes([4, 1])  # class 4, number 01: 401
    assert 0x0001 not in e_attrs and 0x0020 not in e_attrs
    assert stun.parse_binding_answer(error, None).error_code == 401


@pytest.mark.parametrize(
    ("data", "outcome"),
    [
        (b"", "malformed"),
        (b"\x00\x01\x00", "malformed"),
        (b"GET / HTTP/1.1\r\n\r\n", "malformed"),  # first bits not 00
        (b"\x00\x01\x00\x00" + b"\x00" * 16, "legacy"),  # RFC 3489: no magic cookie
        (b"\x00\x01\x00\x04\x21\x12\xa4\x42" + b"\x00" * 12, "malformed"),  # length lies
        (b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12 + b"x" * 600, "malformed"),
    ],
)
def test_bad_datagrams_are_refused_with_a_reason(data: bytes, outcome: str) -> None:
    with pytest.raises(stun.StunError) as err:
        stun.parse_binding_request(data)
    assert err.value.outcome == outcome


def test_a_response_or_another_method_is_not_a_binding_request() -> None:
    tid, data = stun.binding_request("cpe-1", "pw")
    answer = stun.binding_success(stun.parse_binding_request(data), ("192.0.2.1", 1), "pw")
    with pytest.raises(stun.StunError) as err:
        stun.parse_binding_request(answer)
    assert err.value.outcome == "not_binding"
    allocate = bytearray(data)
    allocate[1] = 0x03  # TURN Allocate
    with pytest.raises(stun.StunError) as err:
        stun.parse_binding_request(bytes(allocate))
    assert err.value.outcome in ("not_binding", "malformed")  # FINGERPRINT no longer matches


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_a_stun_error(data: bytes) -> None:
    try:
        stun.parse_binding_request(b"\x00\x01" + data[:2] + b"\x21\x12\xa4\x42" + data[2:])
    except stun.StunError:
        pass


# ------------------------------------------------------------------ UDP connection requests


def test_the_signature_is_hmac_sha1_over_ts_id_un_cn_keyed_with_the_password() -> None:
    data = udp.build(
        "198.51.100.7",
        40001,
        ts=1120673700,
        msg_id=1234,
        username="CPE57689",
        password="cr-secret",
        cnonce="XTGRWIPC6D3IPXS3",
    )
    expected = hmac_sha1(b"cr-secret", b"11206737001234CPE57689XTGRWIPC6D3IPXS3")
    assert data == (
        b"GET http://198.51.100.7:40001?ts=1120673700&id=1234&un=CPE57689"
        b"&cn=XTGRWIPC6D3IPXS3&sig=" + expected.hex().upper().encode() + b" HTTP/1.1\r\n"
        b"Host: 198.51.100.7:40001\r\n\r\n"
    )
    msg = udp.parse(data)
    assert (msg.ts, msg.id, msg.un, msg.cn) == (1120673700, 1234, "CPE57689", "XTGRWIPC6D3IPXS3")
    assert udp.verify(msg, "CPE57689", "cr-secret")
    assert not udp.verify(msg, "CPE57689", "other")
    assert not udp.verify(msg, "someone-else", "cr-secret")


def test_odd_usernames_survive_the_uri() -> None:
    data = udp.build("::1", 7, ts=1, msg_id=2, username="a&b=c d/é", password="p")
    assert data.startswith(b"GET http://[::1]:7?")
    msg = udp.parse(data)
    assert msg.un == "a&b=c d/é" and udp.verify(msg, "a&b=c d/é", "p")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"POST http://x:1?ts=1&id=1&un=a&cn=b&sig=" + b"0" * 40 + b" HTTP/1.1\r\n\r\n",
        b"GET http://x:1?ts=1&id=1&un=a&cn=b HTTP/1.1\r\n\r\n",  # no sig
        b"GET http://x:1?ts=1&id=1&id=2&un=a&cn=b&sig=" + b"0" * 40 + b" HTTP/1.1\r\n\r\n",
        b"GET http://x:1?ts=-1&id=1&un=a&cn=b&sig=" + b"0" * 40 + b" HTTP/1.1\r\n\r\n",
        b"GET http://x:1?ts=1&id=1&un=a&cn=b&sig=xyz HTTP/1.1\r\n\r\n",
        b"GET http://x:1?" + b"a=1&" * 400 + b" HTTP/1.1\r\n\r\n",  # too large
        b"GET http://\xff:1?ts=1 HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_udp_requests_are_refused(data: bytes) -> None:
    with pytest.raises(udp.UdpRequestError):
        udp.parse(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_datagrams_never_raise_anything_but_a_udp_error(data: bytes) -> None:
    try:
        udp.parse(b"GET " + data)
    except udp.UdpRequestError:
        pass


def test_the_cpe_refuses_replayed_ids_and_stale_timestamps() -> None:
    guard = udp.ReplayGuard()

    def msg(ts: int, msg_id: int) -> udp.UdpConnectionRequest:
        return udp.UdpConnectionRequest(ts, msg_id, "u", "c", "0" * 40)

    assert guard.refuse(msg(100, 5)) is None
    assert guard.refuse(msg(100, 5)) == "replayed id"  # a retransmission: acted on once
    assert guard.refuse(msg(99, 6)) == "stale ts"
    assert guard.refuse(msg(100, 6)) is None  # same second, new request
    assert guard.refuse(msg(101, 7)) is None


def test_message_ids_rise_and_fit_an_unsigned_int() -> None:
    ids = udp.MessageIds()
    now = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    pairs = [ids.next(now) for _ in range(3)] + [ids.next(now + 1.0)]
    assert [p[1] for p in pairs] == sorted({p[1] for p in pairs})
    assert all(0 < i < 2**32 for _, i in pairs)
    assert pairs[-1][0] == int(now) + 1
    # a restarted ACS (a fresh counter) a second later is still above the old ids
    assert udp.MessageIds().next(now + 1.0)[1] > pairs[2][1]


def test_retransmissions_back_off_and_stop_inside_the_timeout() -> None:
    assert send_schedule(5.0) == [0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 4.7]
    assert send_schedule(0.25) == [0.0, 0.1]
    assert len(send_schedule(60.0)) == 9


# ------------------------------------------------------------------ channel choice


def reach(**kw: object) -> Reach:
    base: dict[str, object] = {
        "connection_request_url": "http://192.168.1.2:7547/cr",
        "binding": None,
        "udp_address": None,
        "nat_detected": None,
    }
    base.update(kw)
    return Reach(**base)  # type: ignore[arg-type]


def test_http_alone_when_nothing_else_is_known() -> None:
    p = plan(reach(), NOW, FRESH)
    assert p.order == ("http",) and p.udp_target is None
    assert "no STUN binding" in p.unusable["udp"]


def test_a_fresh_natted_binding_puts_udp_first_and_a_stale_one_is_named() -> None:
    fresh = Binding("203.0.113.9", 40001, True, NOW - timedelta(seconds=10))
    p = plan(reach(binding=fresh), NOW, FRESH)
    assert p.order == ("udp", "http") and p.udp_target == ("203.0.113.9", 40001)
    stale = Binding("203.0.113.9", 40001, True, NOW - timedelta(seconds=900))
    p = plan(reach(binding=stale), NOW, FRESH)
    assert p.order == ("http",) and "stale (last Binding Request 900 s ago)" in p.unusable["udp"]
    # the address the CPE reports stands in for a stale binding
    p = plan(reach(binding=stale, udp_address="203.0.113.9:40777"), NOW, FRESH)
    assert p.udp_target == ("203.0.113.9", 40777) and p.order == ("udp", "http")


def test_no_url_and_no_udp_leaves_nothing_with_every_reason() -> None:
    p = plan(reach(connection_request_url=None, udp_address="nonsense"), NOW, FRESH)
    assert p.order == ()
    assert p.unusable == {
        "http": "the device has sent no ConnectionRequestURL",
        "udp": "UDPConnectionRequestAddress 'nonsense' is not host:port",
        "xmpp": "XMPP not configured (ACS_XMPP_SERVER)",
    }


def test_nat_detected_as_reported_or_as_seen() -> None:
    p = plan(reach(udp_address="[2001:db8::1]:4000", nat_detected=True), NOW, FRESH)
    assert p.order == ("udp", "http") and p.udp_target == ("2001:db8::1", 4000)
    assert behind_nat("203.0.113.9", "http://192.168.1.2:7547/cr")
    assert not behind_nat("192.168.1.2", "http://192.168.1.2:7547/cr")
    assert not behind_nat("203.0.113.9", "http://cpe.example/cr")  # a name: cannot tell
    assert not behind_nat("203.0.113.9", None)
    assert parse_host_port("host:0") is None and parse_host_port(":80") is None


def test_the_rate_limit_is_per_source_and_refills() -> None:
    limit = RateLimit(rate=10, burst=20, max_sources=3)
    assert sum(limit.allow("a", 0.0) for _ in range(30)) == 20
    assert limit.allow("b", 0.0)  # another source has its own bucket
    assert not limit.allow("a", 0.05) and limit.allow("a", 0.2)
    # the table stays bounded under spoofed sources; sources at rest are forgotten
    for i in range(10):
        limit.allow(f"spoof{i}", 100.0)
    assert len(limit._buckets) <= 3
    # a table full of busy sources refuses newcomers, and scans again only a second later
    busy = RateLimit(rate=1, burst=2, max_sources=2)
    assert busy.allow("x", 0.0) and busy.allow("y", 0.0)
    assert not busy.allow("z", 0.1)
    assert busy.allow("y", 0.1)  # a known source keeps its bucket
    busy._buckets["y"] = (2.0, 0.1)  # y at rest again
    assert not busy.allow("z", 0.5)  # inside the second: no scan, no room
    assert busy.allow("z", 1.2)  # the next scan forgets y


def test_the_fast_success_answer_is_byte_for_byte_aioices_own() -> None:
    from aioice import stun as aioice

    _tid, data = stun.binding_request("cpe-1", "pw")
    req = stun.parse_binding_request(data)
    for address in (("198.51.100.7", 40001), ("2001:db8::7", 1)):
        ref = aioice.Message(
            aioice.Method.BINDING, aioice.Class.RESPONSE, transaction_id=req.transaction_id
        )
        ref.attributes["XOR-MAPPED-ADDRESS"] = address
        ref.attributes["MAPPED-ADDRESS"] = address
        ref.add_message_integrity(b"pw")
        assert stun.binding_success(req, address, "pw") == bytes(ref)


@pytest.mark.parametrize(
    "address", [("203.0.113.7", 40000), ("10.0.0.1", 1), ("2001:db8::7", 65535)]
)
def test_the_fast_binding_success_is_byte_for_byte_what_aioice_builds(
    address: tuple[str, int],
) -> None:
    """binding_success builds the header, MESSAGE-INTEGRITY and FINGERPRINT itself (the
    keep-alive hot path): it must be exactly aioice's Message with the same attributes."""
    from aioice import stun as aioice_stun

    for _ in range(3):  # the per-address attribute cache must not leak transaction ids
        tid, data = stun.binding_request("dev", "pw")
        request = stun.parse_binding_request(data)
        expected = aioice_stun.Message(
            aioice_stun.Method.BINDING, aioice_stun.Class.RESPONSE, transaction_id=tid
        )
        expected.attributes["XOR-MAPPED-ADDRESS"] = address
        expected.attributes["MAPPED-ADDRESS"] = address
        expected.add_message_integrity(b"pw")
        assert stun.binding_success(request, address, "pw") == bytes(expected)
        answer = stun.parse_binding_answer(stun.binding_success(request, address, "pw"), "pw")
        assert answer.mapped == address and answer.transaction_id == tid


def _fields(r: stun.BindingRequest) -> tuple[object, ...]:
    return (
        r.transaction_id,
        r.username,
        r.connection_request_binding,
        r.binding_change,
        r.has_integrity,
    )


def test_a_learnt_keep_alive_shape_is_read_without_aioice_and_says_the_same() -> None:
    _tid, first = stun.binding_request("shape-cpe", "pw")
    slow = stun.parse_binding_request(first)
    assert slow._message is not None  # an unknown shape: aioice reads it
    assert stun._known(first) is None  # nothing is learnt by parsing alone
    stun.learn(slow)  # the server learns it once the request proved authentic
    tid, again = stun.binding_request("shape-cpe", "pw")  # the next keep-alive: a new id
    fast = stun.parse_binding_request(again)
    assert fast._message is None  # the known-shape path
    assert _fields(fast) == _fields(stun._parse(again)) and fast.transaction_id == tid
    assert fast.authentic("pw") and not fast.authentic("other")
    # BINDING-CHANGE is another shape: read in full, and says so
    _tid, changed = stun.binding_request("shape-cpe", "pw", binding_change=True)
    assert stun.parse_binding_request(changed)._message is not None
    assert stun.parse_binding_request(changed).binding_change
    # a forged MESSAGE-INTEGRITY on a known shape fails the check
    forged = again[:-28] + bytes(20) + again[-8:]
    forged = forged[:-4] + struct.pack("!I", binascii.crc32(forged[:-8]) ^ 0x5354554E)
    assert stun._known(forged) is not None and not stun.parse_binding_request(forged).authentic(
        "pw"
    )
    # a broken FINGERPRINT on a known shape is malformed, as aioice says
    with pytest.raises(stun.StunError) as err:
        stun.parse_binding_request(again[:-1] + bytes([again[-1] ^ 1]))
    assert err.value.outcome == "malformed"


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255))
def test_the_known_shape_path_agrees_with_aioice_on_every_altered_byte(
    position: int, flip: int
) -> None:
    """Whatever byte of a learnt keep-alive is altered, the fast path either steps
    aside or reads exactly what aioice reads, with the same integrity verdict."""
    _tid, base = stun.binding_request("flip-cpe", "pw")
    stun.learn(stun._parse(base))
    _tid, data = stun.binding_request("flip-cpe", "pw")
    i = position % len(data)
    altered = data[:i] + bytes([data[i] ^ flip]) + data[i + 1 :]
    for candidate in (data, altered):
        try:
            fast = stun._known(candidate)
        except stun.StunError as exc:
            with pytest.raises(stun.StunError) as slow_err:
                stun._parse(candidate)
            assert slow_err.value.outcome == exc.outcome
            continue
        if fast is None:
            continue
        slow = stun._parse(candidate)
        assert _fields(fast) == _fields(slow)
        assert fast.authentic("pw") == slow.authentic("pw")
