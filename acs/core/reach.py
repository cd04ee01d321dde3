"""Which way to knock on a device (TR-069 3.2.2 HTTP, TR-111 Part 2 UDP, Annex K XMPP): pure rules.

A CPE behind a NAT publishes a ConnectionRequestURL on its private address,
which nobody outside can reach; what reaches it is a UDP datagram to the
public binding its STUN keep-alives hold open (or the UDPConnectionRequestAddress
it reports). This module decides, from what the ACS knows of a device, which
channels are worth trying and in which order; acs.services.knock does the I/O.
XMPP (Annex K) comes last: the device's ConnReqJabberID, through the operator's
XMPP server the ACS is logged in to, reaches a CPE whatever NAT it sits behind.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from yarl import URL

CHANNELS = ("http", "udp", "xmpp")


@dataclass(frozen=True, slots=True)
class Binding:
    """A device's public UDP binding as the STUN server last saw it."""

    address: str
    port: int
    nat_detected: bool
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class StunPeer:
    """Whom a STUN USERNAME names: the device, the key to check, its published URL."""

    device_id: str
    password: str
    connection_request_url: str | None


@dataclass(frozen=True, slots=True)
class Reach:
    """What the ACS knows of how to reach one device."""

    connection_request_url: str | None
    binding: Binding | None
    udp_address: str | None  # UDPConnectionRequestAddress as the CPE reported it
    nat_detected: bool | None  # NATDetected as the CPE reported it; None: unknown
    jabber_id: str | None = None  # ManagementServer.ConnReqJabberID (Annex K), a full JID


@dataclass(frozen=True, slots=True)
class Plan:
    """Channels to try, in order, with where to send; and those left out, with why."""

    order: tuple[str, ...]
    udp_target: tuple[str, int] | None
    unusable: dict[str, str]


def parse_host_port(text: str) -> tuple[str, int] | None:
    """ "host:port" or "[v6]:port" as UDPConnectionRequestAddress carries it."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    host = host.removeprefix("[").removesuffix("]")
    return (host, int(port)) if host else None


def behind_nat(source_ip: str, connection_request_url: str | None) -> bool:
    """Whether a STUN request from ``source_ip`` shows a NAT: the CPE's own URL names
    another address (the private one it sees on its side), or a private one."""
    host = None
    if connection_request_url:
        try:
            host = URL(connection_request_url).host
        except (ValueError, TypeError):
            host = None
    if host is None:
        return False
    if host == source_ip:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: we cannot tell without resolving it, so assume no NAT
    return ip != ipaddress.ip_address(source_ip)


def plan(reach: Reach, now: datetime, binding_fresh: timedelta, *, xmpp: bool = False) -> Plan:
    """HTTP first where it can work, UDP first where the device sits behind a NAT,
    XMPP after both (``xmpp``: the ACS has an XMPP server configured); each channel
    that cannot be tried at all is named with its reason."""
    unusable: dict[str, str] = {}
    if not reach.connection_request_url:
        unusable["http"] = "the device has sent no ConnectionRequestURL"
    target: tuple[str, int] | None = None
    b = reach.binding
    if b is not None and now - b.seen_at <= binding_fresh:
        target = (b.address, b.port)
    elif reach.udp_address:
        target = parse_host_port(reach.udp_address)
        if target is None:
            unusable["udp"] = f"UDPConnectionRequestAddress {reach.udp_address!r} is not host:port"
    elif b is not None:
        age = int((now - b.seen_at).total_seconds())
        unusable["udp"] = (
            f"the STUN binding is stale (last Binding Request {age} s ago) and the device "
            "reports no UDPConnectionRequestAddress"
        )
    else:
        unusable["udp"] = (
            "no STUN binding and no UDPConnectionRequestAddress (STUN not enabled on the device?)"
        )
    natted = bool(reach.nat_detected) or (b is not None and b.nat_detected)
    if not xmpp:
        unusable["xmpp"] = "XMPP not configured (ACS_XMPP_SERVER)"
    elif not reach.jabber_id:
        unusable["xmpp"] = "no ConnReqJabberID (the device reports none)"
    preferred = ("udp", "http", "xmpp") if natted else ("http", "udp", "xmpp")
    order = tuple(c for c in preferred if c not in unusable)
    return Plan(order, target, unusable)
