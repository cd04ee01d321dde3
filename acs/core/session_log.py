"""Session logs: what a CWMP session said, kept for operators, secrets masked.

A ``Transcript`` buffers one session's messages in memory and is written once
when the session ends. Every body is masked *before* it is buffered and cut
to the session's byte budget, so no secret is held longer than the exchange
that carried it, and a truncation never leaves half a password behind.

What is masked: the value of any parameter that acs.core.secrets calls a
secret (the one rule every output uses), the ``Password`` element of
Download/Upload/ScheduleDownload/ChangeDUState, and user:password@ in URLs.
Masking is structural (lxml, with the codec's hardened parser); a body that is
not well-formed XML is masked by patterns, which covers the usual layouts of
a truncated or mangled CWMP body but cannot be complete for arbitrary garbage.
HTTP headers are never recorded, so Authorization never reaches the store.
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from acs.core import secrets
from acs.core.secrets import MASK, is_secret_name
from acs.core.times import rfc3339
from acs.cwmp import messages as m
from acs.cwmp.soap import CwmpParseError, parse_xml

__all__ = ["MASK", "Transcript", "elided", "is_quiet", "is_secret_name", "mask_body", "mask_text"]

#: entries kept per session; beyond it messages are only counted (a CPE that
#: loops on its own requests must not grow the buffer without end)
MAX_ENTRIES = 2000
#: bodies longer than this are held zlib-compressed until the session is written:
#: a discovery's answers are 300 KB of XML that compress tenfold, and a storm
#: holds hundreds of sessions at once (level 1: about a millisecond per 150 KB)
COMPRESS_FROM = 4096

# Cheap tests before any parsing: most messages carry nothing to mask and are
# stored as they came. A secret needs a secret word *and* an element that can
# hold a value (Value, Password); names alone (GetParameterNames and
# GetParameterAttributes answers, the biggest messages of a discovery) hide nothing.
# (Substring tests on a lowered copy: a case-insensitive regex alternation is
# ten times slower on a discovery's 150 KB answers.)
# (Two patterns, not one alternation: each then starts with a literal, which the
# re module finds with a fast substring search; the alternation stepped through
# a discovery's 170 KB GetParameterNamesResponse byte by byte, 1 ms of it.)
_VALUE_ELEMENT_BYTES = (re.compile(rb"Value[\s>/]"), re.compile(rb"Password[\s>/]"))
_USERINFO_BYTES = re.compile(rb"://[^/\s<>@]*@")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s<>@]+@")

_TEXT = r"(?:<!\[CDATA\[.*?\]\]>|[^<])+"
_EL = r"(?:[\w.-]+:)?"


@functools.lru_cache(maxsize=8)
def _rules(endings: tuple[str, ...]) -> tuple[tuple[bytes, ...], tuple[re.Pattern[str], ...]]:
    """The byte words and text patterns for these secret name endings (the
    operator's endings are set at start, after import)."""
    word = "(?:" + "|".join(re.escape(e) for e in endings) + ")"
    patterns = (
        # <Password>secret</Password>
        re.compile(rf"(<{_EL}Password\b[^>]*>)({_TEXT})", re.S),
        # <Name>...KeyPassphrase</Name><Value>secret</Value>
        re.compile(
            rf"(<{_EL}Name\b[^>]*>[^<]*{word}\s*</{_EL}Name\s*>\s*<{_EL}Value\b[^>]*>)({_TEXT})",
            re.S | re.I,
        ),
        # the same pair in the other order, which lenient CPEs also send
        re.compile(
            rf"(<{_EL}Value\b[^>]*>)({_TEXT})(?=</{_EL}Value\s*>\s*<{_EL}Name\b[^>]*>[^<]*{word}\s*<)",
            re.S | re.I,
        ),
    )
    return tuple(e.encode() for e in endings), patterns


def as_text(body: bytes) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; a CPE's broken bytes must not
    # break the write of the whole session
    return body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def mask_body(body: bytes, message: m.Message | None = None) -> str:
    """The body as text with every secret value replaced by ``MASK``.

    ``message``, when given, is what the codec parsed from ``body``: when it
    shows there is nothing to mask, the body is not parsed a second time (a
    discovery's GetParameterValuesResponse lists every password parameter,
    each read back empty, and re-parsing its 150 KB cost more than the codec)."""
    if b"@" not in body or _USERINFO_BYTES.search(body) is None:
        # no URL with a user:password@: the parsed message may prove there is
        # nothing to mask (cheaper than the word search on an Inform), else the
        # words a secret's name ends with, searched in the bytes
        if _nothing_to_mask(body, message) or not _may_name_secret(body):
            return as_text(body)
    try:
        root = parse_xml(body)
    except CwmpParseError:
        return mask_text(as_text(body))
    _mask_tree(root)
    return etree.tostring(root, encoding="unicode")


def pretty(body: str) -> str:
    """A stored (already masked) body indented for reading; as it is when it is
    not well-formed XML, which is how the CPE sent it."""
    if not body.strip():
        return body
    try:
        root = parse_xml(body.encode("utf-8"))
    except CwmpParseError:
        return body
    etree.indent(root, space="  ")
    return etree.tostring(root, encoding="unicode")


def _may_name_secret(body: bytes) -> bool:
    lowered = body.lower()
    words, _ = _rules(secrets.endings())
    if not any(word in lowered for word in words):
        return False
    return any(pattern.search(body) is not None for pattern in _VALUE_ELEMENT_BYTES)


_PASSWORD_ELEMENT_BYTES = re.compile(rb"<(?:[\w.-]+:)?Password[\s>/]")
# what every match of it contains, found by fast substring search (the pattern
# itself starts with "<" and tries every tag of the body): only a body that has
# it is searched the long way
_PASSWORD_WORD_BYTES = re.compile(rb"Password[\s>/]")


def _has_password_element(body: bytes) -> bool:
    return (
        _PASSWORD_WORD_BYTES.search(body) is not None
        and _PASSWORD_ELEMENT_BYTES.search(body) is not None
    )


def _nothing_to_mask(body: bytes, message: m.Message | None) -> bool:
    """True when the parsed ``message`` proves ``body`` holds no secret: every
    ParameterValueStruct of the body is in its parameter list (counted by its
    tags: one the codec did not take, or a comment naming one, sends us the
    long way), none with a
    secret's name has a value, and there is no Password element. URLs with a
    user:password@ never get here (mask_body sends them to the parser)."""
    params = getattr(message, "parameter_list", None)
    if not isinstance(params, list) or _has_password_element(body):
        return False
    # an open and a close tag per struct; the array's type names it once more
    tags = body.count(b"ParameterValueStruct") - body.count(b"ParameterValueStruct[")
    if tags != 2 * len(params):
        return False
    for p in params:
        if not isinstance(p, m.ParameterValueStruct) or (p.value and is_secret_name(p.name)):
            return False
    return True


def mask_text(text: str) -> str:
    """Pattern masking, for bodies that are not well-formed XML."""
    for pattern in _rules(secrets.endings())[1]:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return _USERINFO.sub(r"\1" + MASK + "@", text)


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _set_masked(el: etree._Element) -> None:
    if (el.text or "") == "" and len(el) == 0:
        return  # an empty value hides nothing, and says the CPE reported none
    for child in list(el):
        el.remove(child)
    el.text = MASK


def _mask_tree(root: etree._Element) -> None:
    for el in root.iter():
        local = _local(el.tag)
        if local == "Password":
            _set_masked(el)
        elif local == "ParameterValueStruct":
            name = value = None
            for child in el:
                child_local = _local(child.tag)
                if child_local == "Name":
                    name = child
                elif child_local == "Value":
                    value = child
            if name is not None and value is not None and is_secret_name(name.text or ""):
                _set_masked(value)
        elif local == "URL" and el.text:
            el.text = _USERINFO.sub(r"\1" + MASK + "@", el.text)


# A quiet session: the CPE's periodic Inform answered, its empty POST, the 204.
# Its bodies repeat what the summary says (events, RPC names, sizes) and what
# the device's tree holds, at about 4 KB a session: most of a fleet's session
# log and most of the bytes a periodic session writes. Anything else (another
# event, a CPE request, an ACS request, a fault, any HTTP status but 200 and
# 204) makes a session eventful, and eventful sessions keep their bodies.
QUIET_EVENTS = frozenset({"2 PERIODIC"})
_QUIET_RPCS = frozenset({"Inform", "InformResponse", None})
_QUIET_STATUS = frozenset({None, 200, 204})
ELIDED_NOTE = "body not stored: a quiet periodic session (ACS_SESSION_LOG_BODIES)"


def is_quiet(events: list[str], messages: list[dict[str, Any]]) -> bool:
    """Whether a session said nothing its summary does not (see QUIET_EVENTS)."""
    return (
        bool(events)
        and QUIET_EVENTS.issuperset(events)
        and all(
            m.get("rpc") in _QUIET_RPCS
            and m.get("status") in _QUIET_STATUS
            and not m.get("note")
            and not m.get("truncated")
            for m in messages
        )
    )


def elided(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages without their bodies, each saying why it has none."""
    return [{**m, "body": "", "note": ELIDED_NOTE} for m in messages]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Transcript:
    """One session's messages, masked and bounded by ``max_bytes`` of stored bodies."""

    max_bytes: int
    events: list[str] = field(default_factory=list)
    started_at: datetime = field(default_factory=_now)
    # the entries as held: a long body as zlib bytes (see ``messages``)
    entries: list[dict[str, Any]] = field(default_factory=list)
    message_count: int = 0
    stored_bytes: int = 0
    truncated: bool = False

    def add(
        self,
        direction: str,
        body: bytes,
        *,
        status: int | None = None,
        rpc: str | None = None,
        at: datetime | None = None,
        note: str | None = None,
        message: m.Message | None = None,
    ) -> None:
        """Record one message: ``in`` from the CPE, ``out`` the ACS's HTTP answer;
        ``note`` says why a message has no body (e.g. it was refused unread);
        ``message`` is the body as the codec parsed it, when it did (it can
        spare the masking a second parse)."""
        self.message_count += 1
        if len(self.entries) >= MAX_ENTRIES:
            self.truncated = True
            return
        entry: dict[str, Any] = {
            "direction": direction,
            "at": rfc3339(at or _now()),
            "status": status,
            "rpc": rpc,
            "size": len(body),
            "body": "",
        }
        if note:
            entry["note"] = note
        self.entries.append(entry)
        if not body:
            return
        room = self.max_bytes - self.stored_bytes
        if room <= 0:
            # not even masked: a body that will not be stored needs no work
            entry["body"] = self._marker(len(body))
            entry["truncated"] = self.truncated = True
            return
        text = mask_body(body, message)
        encoded = text.encode()
        if len(encoded) <= room:
            entry["body"] = zlib.compress(encoded, 1) if len(encoded) > COMPRESS_FROM else text
            self.stored_bytes += len(encoded)
            return
        kept = encoded[:room].decode("utf-8", errors="ignore")
        entry["body"] = kept + "\n" + self._marker(len(encoded) - room)
        entry["truncated"] = self.truncated = True
        self.stored_bytes += room

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The entries as they are stored: every body as text."""
        return [
            entry | {"body": zlib.decompress(entry["body"]).decode()}
            if isinstance(entry["body"], bytes)
            else entry
            for entry in self.entries
        ]

    def _marker(self, omitted: int) -> str:
        return (
            f"[truncated: {omitted} more bytes not stored; this session's log is"
            f" limited to {self.max_bytes} bytes (ACS_SESSION_LOG_MAX_BYTES)]"
        )
