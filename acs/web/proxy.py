"""Who is on the other end of a request: the peer, or the client behind a trusted proxy.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are plain request headers that
anyone can send; believing them from any peer would let a CPE write any
address it likes into its device record (and into the logs). They are read
only when the TCP peer is one of ``ACS_TRUSTED_PROXIES``.

X-Forwarded-For is read from the right: each proxy appends the address it saw,
so the rightmost entries were written by our own proxies and everything left
of the first untrusted address was written by the client. X-Forwarded-Proto is
taken from the last value only, the one our nearest proxy set (nginx's
``proxy_set_header X-Forwarded-Proto $scheme`` replaces whatever came in).

Every handler asks ``client_address(request)`` and ``client_scheme(request)``
instead of ``request.remote`` and ``request.scheme``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Client:
    address: str | None
    scheme: str  # "http" or "https", as the client itself connected
    # came through a trusted proxy: the TCP connection is the proxy's, shared by
    # many clients, and says nothing about which client sent the request
    proxied: bool = False


CLIENT = web.RequestKey("client", Client)


def parse_networks(spec: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """``"10.0.0.1, 192.168.0.0/16, ::1"`` -> networks; ValueError naming a bad entry."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    networks: list[IPNetwork] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR network: {item!r}") from None
    return tuple(networks)


def _ip(text: str) -> IPAddress | None:
    """An address as proxies write it: bare, ``[v6]:port`` or ``v4:port``; None if not one."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4 with a port; a bare v6 has several colons
        text = text.partition(":")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    # ::ffff:10.0.0.1 is 10.0.0.1 arriving on a dual-stack socket
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedProxies:
    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks = tuple(networks)

    def trusts(self, addr: IPAddress | None) -> bool:
        return addr is not None and any(addr in net for net in self.networks)

    def client_of(self, request: web.BaseRequest) -> Client:
        peer = request.remote
        scheme = request.scheme  # "https" when the listener itself speaks TLS
        if not self.networks:  # no proxy trusted (the default): no address to parse
            return Client(peer, scheme)
        peer_ip = _ip(peer) if peer else None
        if not self.trusts(peer_ip):
            return Client(peer, scheme)
        address = str(peer_ip)
        hops = [h for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
        for hop in reversed(hops):
            hop_ip = _ip(hop)
            if hop_ip is None:
                break  # garbage: the last address we could read is as far as we go
            address = str(hop_ip)
            if not self.trusts(hop_ip):
                break  # the first address our proxies did not write is the client
        proto = request.headers.get("X-Forwarded-Proto", "").rpartition(",")[2].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
        return Client(address, scheme, proxied=True)

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def forwarded(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            request[CLIENT] = self.client_of(request)
            return await handler(request)

        return forwarded


def client_address(request: web.Request) -> str | None:
    """The client's IP address: the peer's, or the one a trusted proxy forwarded."""
    client = request.get(CLIENT)
    return client.address if client is not None else request.remote


def via_proxy(request: web.Request) -> bool:
    """True when a trusted proxy relayed the request (its connection is not the client's)."""
    client = request.get(CLIENT)
    return client is not None and client.proxied


def client_scheme(request: web.Request) -> str:
    """How the client connected: "https" on a TLS listener or behind a TLS-terminating
    trusted proxy, else "http"."""
    client = request.get(CLIENT)
    return client.scheme if client is not None else request.scheme
