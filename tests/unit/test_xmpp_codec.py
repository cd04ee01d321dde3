"""XMPP connection requests (TR-069 Annex K): the IQ codec and the channel plan, pure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from acs.connreq import xmpp
from acs.core.reach import Reach, plan

NS = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
FRESH = timedelta(seconds=300)


def test_the_request_is_annex_k_s_element_and_reads_back() -> None:
    el = xmpp.connection_request("cr-user", "p<&>ss")
    text = ET.tostring(el, encoding="unicode")
    # the wire form: one element in the Annex K namespace, two children in it
    parsed = ET.fromstring(text)
    assert parsed.tag == f"{{{NS}}}connectionRequest"
    assert [c.tag for c in parsed] == [f"{{{NS}}}username", f"{{{NS}}}password"]
    assert "p&lt;&amp;&gt;ss" in text
    req = xmpp.parse_connection_request(parsed)
    assert (req.username, req.password) == ("cr-user", "p<&>ss")
    assert xmpp.credentials_match(req, "cr-user", "p<&>ss")
    assert not xmpp.credentials_match(req, "cr-user", "other")
    assert not xmpp.credentials_match(req, "someone", "p<&>ss")


def test_an_empty_password_is_an_empty_string() -> None:
    el = ET.fromstring(
        f'<connectionRequest xmlns="{NS}"><username>u</username><password/></connectionRequest>'
    )
    assert xmpp.parse_connection_request(el) == xmpp.ConnReq("u", "")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            '<connectionRequest xmlns="urn:other"><username>u</username></connectionRequest>',
            "not a",
        ),
        (f'<connectionRequest xmlns="{NS}"><username>u</username></connectionRequest>', "password"),
        (
            f'<connectionRequest xmlns="{NS}"><username>a</username><username>b</username>'
            "<password>p</password></connectionRequest>",
            "exactly one username",
        ),
        (
            f'<connectionRequest xmlns="{NS}"><username>{"u" * 257}</username>'
            "<password>p</password></connectionRequest>",
            "longer than 256",
        ),
        # children outside the namespace do not count
        (
            f'<connectionRequest xmlns="{NS}"><username xmlns="">u</username>'
            "<password>p</password></connectionRequest>",
            "exactly one username",
        ),
    ],
)
def test_a_malformed_request_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(xmpp.XmppRequestError, match=why):
        xmpp.parse_connection_request(ET.fromstring(text))
    with pytest.raises(xmpp.XmppRequestError):
        xmpp.parse_connection_request(None)


def _error(condition: str, text: str | None = None) -> ET.Element:
    st = "urn:ietf:params:xml:ns:xmpp-stanzas"
    inner = f"<text xmlns='{st}'>{text}</text>" if text else ""
    return ET.fromstring(
        f"<error xmlns='jabber:client' type='cancel'><{condition} xmlns='{st}'/>{inner}</error>"
    )


def test_answers_map_to_outcomes_with_reasons() -> None:
    ok = xmpp.answer("result")
    assert ok.ok and ok.outcome == "accepted"
    denied = xmpp.answer("error", _error("not-authorized", "bad password"))
    assert not denied.ok and denied.outcome == "auth_failed"
    assert (
        denied.reason.startswith("IQ error not-authorized:") and "(bad password)" in denied.reason
    )
    busy = xmpp.answer("error", _error("service-unavailable"))
    assert (busy.ok, busy.outcome) == (False, "refused") and "service-unavailable" in busy.reason
    gone = xmpp.answer("error", _error("item-not-found"))
    assert gone.outcome == "unreachable"
    odd = xmpp.answer("error", _error("conflict"))
    assert (odd.outcome, odd.reason.split(":")[0]) == ("refused", "IQ error conflict")
    unreadable = xmpp.answer("error", None)
    assert "undefined-condition" in unreadable.reason and not unreadable.ok
    assert xmpp.answer("set").outcome == "error"


def test_server_and_jid_forms() -> None:
    assert xmpp.split_server("xmpp.example.net") == ("xmpp.example.net", 5222)
    assert xmpp.split_server("127.0.0.1:15222") == ("127.0.0.1", 15222)
    assert xmpp.split_server("[::1]:5223") == ("::1", 5223)
    for bad in ("", ":5222", "host:0", "host:x", "host:70000"):
        with pytest.raises(ValueError):
            xmpp.split_server(bad)
    assert xmpp.is_full_jid("cpe1@xmpp.test/cwmp")
    assert not xmpp.is_full_jid("cpe1@xmpp.test")
    assert not xmpp.is_full_jid("cpe1@xmpp.test/")
    assert not xmpp.is_full_jid("@xmpp.test/r")


def _reach(**kw: object) -> Reach:
    base: dict[str, object] = {
        "connection_request_url": "http://10.0.0.2:7547/cr",
        "binding": None,
        "udp_address": None,
        "nat_detected": None,
        "jabber_id": None,
    }
    base.update(kw)
    return Reach(**base)  # type: ignore[arg-type]


def test_xmpp_comes_after_http_and_udp_or_says_why_not() -> None:
    jid = "cpe1@xmpp.test/cwmp"
    p = plan(_reach(jabber_id=jid), NOW, FRESH, xmpp=True)
    assert p.order == ("http", "xmpp") and "xmpp" not in p.unusable
    p = plan(
        _reach(jabber_id=jid, udp_address="1.2.3.4:5", nat_detected=True), NOW, FRESH, xmpp=True
    )
    assert p.order == ("udp", "http", "xmpp")
    p = plan(_reach(jabber_id=jid), NOW, FRESH, xmpp=False)
    assert p.order == ("http",) and p.unusable["xmpp"].startswith("XMPP not configured")
    p = plan(_reach(), NOW, FRESH, xmpp=True)
    assert p.order == ("http",) and p.unusable["xmpp"].startswith("no ConnReqJabberID")
    p = plan(_reach(connection_request_url=None, jabber_id=jid), NOW, FRESH, xmpp=True)
    assert p.order == ("xmpp",)
