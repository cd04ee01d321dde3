"""XMPP connection requests, TR-069 Annex K: the pure IQ codec.

The ACS, logged in to the operator's XMPP server, sends the CPE's
ConnReqJabberID (a full JID, resource included) an IQ of type "get":

    <iq type="get" to="cpe@example.net/cwmp" id="...">
      <connectionRequest xmlns="urn:broadband-forum-org:cwmp:xmppConnReq-1-0">
        <username>ConnectionRequestUsername</username>
        <password>ConnectionRequestPassword</password>
      </connectionRequest>
    </iq>

The CPE answers an empty IQ "result" (then opens a session with
"6 CONNECTION REQUEST"), or an IQ "error": "not-authorized" when the
credentials are wrong, "service-unavailable" when it will not serve the
request now (its rate limit, a sender not in ConnReqAllowedJabberIDs, K.2.2.2).
The XMPP server itself answers an error for a JID nobody is logged in as.

Both sides use this module (the ACS's client, acs.connreq.xmpp_client, and
the simulator); it builds and reads xml.etree elements, the tree type slixmpp
stanzas carry, and does no I/O.
"""

from __future__ import annotations

import hmac
import xml.etree.ElementTree as ET
from dataclasses import dataclass

NS = "urn:broadband-forum-org:cwmp:xmppConnReq-1-0"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
TAG = f"{{{NS}}}connectionRequest"
MAX_FIELD_CHARS = 256  # TR-181 ConnectionRequestUsername/Password: string(256)

# what an error condition means for the knock, in the words of acs.connreq.http's OUTCOMES
_OUTCOMES = {
    "not-authorized": "auth_failed",
    "forbidden": "auth_failed",
    "service-unavailable": "refused",
    "recipient-unavailable": "unreachable",
    "item-not-found": "unreachable",
    "remote-server-not-found": "unreachable",
    "remote-server-timeout": "unreachable",
}
_MEANING = {
    "not-authorized": "the CPE refused the ConnectionRequestUsername/Password",
    "forbidden": "the CPE refused the ConnectionRequestUsername/Password",
    "service-unavailable": "the CPE will not serve a connection request now (rate limit, the "
    "ACS's JID not in its ConnReqAllowedJabberIDs), or no such JID is logged in",
    "recipient-unavailable": "the CPE's JID is not logged in to the XMPP server",
    "item-not-found": "the XMPP server knows no such JID",
    "remote-server-not-found": "the XMPP server cannot reach the CPE's domain",
    "remote-server-timeout": "the XMPP server cannot reach the CPE's domain",
}


class XmppRequestError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ConnReq:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What the CPE's (or its server's) answer to the IQ means for the knock."""

    ok: bool
    outcome: str  # one of acs.connreq.http.OUTCOMES
    reason: str


def connection_request(username: str, password: str) -> ET.Element:
    """The IQ's payload: <connectionRequest> with the device's credentials."""
    el = ET.Element(TAG)
    ET.SubElement(el, f"{{{NS}}}username").text = username
    ET.SubElement(el, f"{{{NS}}}password").text = password
    return el


def parse_connection_request(el: ET.Element | None) -> ConnReq:
    """The credentials in an IQ payload, or XmppRequestError saying what is wrong."""
    if el is None or el.tag != TAG:
        raise XmppRequestError(f"not a connectionRequest in {NS}")
    fields: dict[str, str] = {}
    for name in ("username", "password"):
        found = el.findall(f"{{{NS}}}{name}")
        if len(found) != 1:
            raise XmppRequestError(f"the connectionRequest needs exactly one {name}")
        text = found[0].text or ""
        if len(text) > MAX_FIELD_CHARS:
            raise XmppRequestError(f"{name} longer than {MAX_FIELD_CHARS} characters")
        fields[name] = text
    return ConnReq(fields["username"], fields["password"])


def credentials_match(req: ConnReq, username: str, password: str) -> bool:
    """The CPE's check (K.2.2.2): both must equal its own, compared in constant time."""
    return hmac.compare_digest(req.username.encode(), username.encode()) & hmac.compare_digest(
        req.password.encode(), password.encode()
    )


def parse_error(el: ET.Element | None) -> tuple[str, str | None]:
    """(condition, text) of an IQ's <error> child; ("undefined-condition", None) if unreadable."""
    if el is None:
        return "undefined-condition", None
    condition, text = "undefined-condition", None
    for child in el:
        ns, _, local = child.tag[1:].partition("}") if child.tag.startswith("{") else ("", "", "")
        if ns != STANZAS_NS:
            continue
        if local == "text":
            text = (child.text or "").strip() or None
        else:
            condition = local
    return condition, text


def answer(iq_type: str, error_el: ET.Element | None = None) -> Answer:
    """The knock's outcome from the answering IQ's type and, for "error", its <error>."""
    if iq_type == "result":
        return Answer(True, "accepted", "the CPE accepted the connection request (IQ result)")
    if iq_type != "error":
        return Answer(False, "error", f"an IQ of type {iq_type!r} answered the request")
    condition, text = parse_error(error_el)
    meaning = _MEANING.get(condition, "the request was refused")
    reason = f"IQ error {condition}: {meaning}" + (f" ({text})" if text else "")
    return Answer(False, _OUTCOMES.get(condition, "refused"), reason)


def split_server(text: str, default_port: int = 5222) -> tuple[str, int]:
    """ "host[:port]" of ACS_XMPP_SERVER (also "[v6]:port"); ValueError if malformed."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or str(default_port)
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host[:port]")
    return host, int(port)


def is_full_jid(jid: str) -> bool:
    """Whether ``jid`` looks like localpart@domain/resource or domain/resource (RFC 7622);
    Annex K sends to the CPE's full JID."""
    bare, slash, resource = jid.partition("/")
    local, at, domain = bare.rpartition("@")
    return bool(slash and resource and domain and (local or not at) and " " not in jid)
