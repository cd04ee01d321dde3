"""The CWMP port's lean HTTP server: CWMP POSTs parsed by httptools, the rest by aiohttp.

aiohttp's web server spends about 90-100 µs of CPU on each request (its
Request, StreamReader, router, middleware chain and StreamResponse), five
times what an asyncio Protocol over httptools (llhttp) spends on the same POST
(BENCHMARKS.md, Run 7). A periodic session is two POSTs and little else, so
that difference is a large share of its CPU.

``LeanProtocol`` serves the requests that make up a CWMP session and nothing
more: an HTTP/1.1 POST to a CWMP path with a Content-Length body (or none) of
at most ``max_body_bytes``, no Transfer-Encoding, Content-Encoding, Expect or
Upgrade. It frames each request itself (the head up to the blank line, then
Content-Length bytes), so it always knows where the current request begins in
its buffer; httptools parses the head. The request goes to the very handler
aiohttp would call (``CwmpEndpoint.handle``), as a ``LeanRequest`` carrying
what that handler reads, and the handler's ``web.Response`` is written out.

Anything else (another route on this port such as the FOTA check-ins, a
chunked or compressed body, a body over the limit, HTTP/1.0, malformed HTTP,
an upgrade) hands the connection to aiohttp's own protocol (the
GuardedHandler of acs/web/guard.py) for the rest of its life, with every byte
of that request and whatever followed it: aiohttp then answers exactly as it
always did, with its 413s, its 400 and one log line for malformed HTTP, its
decompression and chunk parsing.

The guard's rules hold on the lean connections too: the headers of a request
within ``header_timeout_s`` of the connection opening or of its first byte
(else 408 and close), no gap over ``body_timeout_s`` in a body (else close),
one request handled at a time (pipelined ones wait in the buffer, reading
paused past a limit), and an idle keep-alive connection closed after
aiohttp's keepalive_timeout.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

import httptools
from aiohttp import web
from aiohttp._cookie_helpers import parse_cookie_header
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from acs.web.deadline import Deadline, time_out
from acs.web.large import LargeRequests
from acs.web.proxy import CLIENT, TrustedProxies

logger = logging.getLogger("acs.http")

Handler = Callable[[Any], Awaitable[web.StreamResponse]]
# aiohttp's own limit on a request line and on a header line (max_line_size,
# max_field_size): a head longer than that goes to aiohttp, which decides
MAX_HEAD = 8190
# buffered bytes past which reading pauses while a request is handled
HIGH_WATER = 256 * 1024
_EMPTY_STATUS = (204, 304)
# request headers whose presence means aiohttp's full parser is needed
_NOT_LEAN = (b"transfer-encoding", b"content-encoding", b"expect", b"upgrade")


class LeanRequest:
    """What CwmpEndpoint.handle (and the relays, the authenticator and the
    trusted-proxy rules) read of an aiohttp ``web.Request``, and no more."""

    __slots__ = (
        "method",
        "raw_path",
        "headers",
        "transport",
        "remote",
        "scheme",
        "content_length",
        "_body",
        "_state",
        "_cookies",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        headers: CIMultiDictProxy[str],
        body: bytes,
        transport: asyncio.Transport,
        remote: str | None,
        scheme: str,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.headers = headers
        self.transport = transport
        self.remote = remote
        self.scheme = scheme
        self.content_length = len(body)
        self._body = body
        self._state: dict[Any, Any] = {}
        self._cookies: dict[str, str] | None = None

    async def read(self) -> bytes:
        return self._body

    @property
    def rel_url(self) -> URL:
        return URL(self.raw_path, encoded=True)

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            header = self.headers.get("Cookie", "")
            single = _ONE_COOKIE.fullmatch(header)
            if single is not None:  # what a CPE sends back: our one cookie, as we set it
                self._cookies = {single[1]: single[2]}
            else:  # aiohttp's own parser, so a cookie reads the same on both paths
                self._cookies = {n: morsel.value for n, morsel in parse_cookie_header(header)}
        return self._cookies

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.get(key, default)

    def __getitem__(self, key: Any) -> Any:
        return self._state[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state[key] = value


# one name=value of RFC 6265's token and cookie-octets: no quotes, spaces or
# separators, which parse_cookie_header reads as itself (4.7 us a header here)
_ONE_COOKIE = re.compile(
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)=([\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*)"
)


class _Date:
    """The Date header, formatted once a second rather than once a response."""

    def __init__(self) -> None:
        self._second = 0
        self._value = b""

    def __call__(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode("ascii")
        return self._value


_date = _Date()


def response_bytes(resp: web.StreamResponse, keep_alive: bool) -> bytes:
    """A handler's web.Response as the bytes aiohttp would have written for it."""
    if not isinstance(resp, web.Response):
        raise TypeError(f"the lean path writes whole responses, not {type(resp).__name__}")
    status = resp.status
    body = resp.body
    if body is None:
        data = b""
    elif isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
    else:  # a Payload: not what a CWMP answer is made of
        raise TypeError(f"the lean path writes bytes bodies, not {type(body).__name__}")
    lines = [b"HTTP/1.1 %d %s" % (status, resp.reason.encode("latin-1"))]
    headers = resp.headers
    for name, value in headers.items():
        if name.lower() in ("content-length", "transfer-encoding", "connection", "date"):
            continue  # ours to write
        lines.append(f"{name}: {value}".encode("latin-1"))
    if resp.cookies:
        for cookie in resp.cookies.values():
            lines.append(b"Set-Cookie: " + cookie.output(header="")[1:].encode("latin-1"))
    if status in _EMPTY_STATUS:
        data = b""
    else:
        if data and "Content-Type" not in headers:
            lines.append(b"Content-Type: application/octet-stream")
        lines.append(b"Content-Length: %d" % len(data))
    lines.append(b"Date: " + _date())
    if not keep_alive:
        lines.append(b"Connection: close")
    lines.append(b"\r\n")
    return b"\r\n".join(lines) + data


class LeanListener:
    """What every LeanProtocol of one listener shares."""

    def __init__(
        self,
        *,
        handler: Handler,
        fallback: Callable[[], asyncio.Protocol],
        serves: Callable[[str], bool],
        proxies: TrustedProxies,
        listener: str,
        max_body_bytes: int,
        header_timeout_s: float,
        body_timeout_s: float,
        keepalive_timeout_s: float,
        count: Callable[[str], None],
        tls: bool,
        large: LargeRequests | None = None,
    ) -> None:
        self.handler = handler
        self.fallback = fallback  # aiohttp's protocol for this listener (a GuardedHandler)
        self.serves = serves  # the request paths (without the query) served here
        self.proxies = proxies
        self.listener = listener
        self.max_body_bytes = max_body_bytes
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.count = count
        self.scheme = "https" if tls else "http"
        self.connections: set[LeanProtocol] = set()
        self.serving: set[asyncio.Task[None]] = set()  # requests being handled
        self.large = large  # how many large requests are handled at once (None: no limit)
        self.closing = False
        self.handed_off = 0  # connections given to aiohttp, for tests and benchmarks

    def __call__(self) -> LeanProtocol:
        return LeanProtocol(self)

    async def shut_down(self, timeout_s: float) -> None:
        """Close idle connections now, and each busy one once its answer is written,
        waiting for those answers as aiohttp's shutdown waits for its handlers."""
        self.closing = True
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        # large requests waiting their turn start as the ones ahead finish: wait for them too
        deadline = time.monotonic() + timeout_s
        while self.serving and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(list(self.serving), timeout=left)
        for conn in list(self.connections):
            conn.close()


class _Head:
    """httptools' callbacks for one request head."""

    __slots__ = ("url", "headers", "lean", "done")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.lean = True
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.done = True


def _could_be_http(partial: bytes | bytearray) -> bool:
    """False when the start of a head is already malformed."""
    try:
        httptools.HttpRequestParser(_Head()).feed_data(bytes(partial))
    except httptools.HttpParserError:
        return False
    return True


class LeanProtocol(asyncio.Protocol):
    def __init__(self, listener: LeanListener) -> None:
        self.l = listener
        self.loop = asyncio.get_running_loop()
        # uvloop's transports are not asyncio.Transport subclasses; the methods are the same
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a request is being handled
        self.paused = False
        self.gone = False  # the connection closed or was handed to aiohttp
        self.remote: str | None = None
        # the request whose body is being received: its head's length, its total
        self.pending: tuple[LeanRequest, int, int, bool] | None = None
        self.deadline = Deadline(self.loop, self._expired)  # "headers", "body" or "idle"

    # ------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's: not asyncio.Transport
        peer = transport.get_extra_info("peername")
        # what aiohttp's request.remote is: the peer's address (a Unix socket: none)
        self.remote = peer[0] if isinstance(peer, tuple) and peer else None
        self.l.connections.add(self)
        # a client that connects and sends nothing is a slow loris too
        self.deadline.arm("headers", self.l.header_timeout_s)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.gone = True
        self.deadline.cancel()
        self.l.connections.discard(self)
        self.transport = None

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.gone:
            return
        started = not self.buffer
        self.buffer += data
        if self.busy:
            if len(self.buffer) > HIGH_WATER and not self.paused:
                assert self.transport is not None
                self.transport.pause_reading()
                self.paused = True
            return
        if self.pending is None and started:
            # the first bytes of a request: the header clock starts, later bytes do not move it
            self.deadline.arm("headers", self.l.header_timeout_s)
        self._process()

    # ------------------------------------------------------------ framing

    def _process(self) -> None:
        while not self.gone and not self.busy:
            if self.pending is None:
                if not self._head():
                    return
                continue
            request, head_len, total, keep_alive = self.pending
            if len(self.buffer) < total:
                # awaited, or a piece came: each restarts the body's clock
                self.deadline.body_piece(self.l.body_timeout_s)
                return
            body = bytes(self.buffer[head_len:total])
            del self.buffer[:total]
            self.pending = None
            self.deadline.disarm()
            self.busy = True
            large = self.l.large
            if large is not None and large.is_large(body):
                # may wait its turn (acs/web/large.py); this connection stays busy meanwhile
                large.admit(body, functools.partial(self._start, request, keep_alive=keep_alive))
            else:
                self._start(request, body, keep_alive=keep_alive, large=False)

    def _start(
        self, request: LeanRequest, body: bytes, *, keep_alive: bool, large: bool = True
    ) -> bool:
        """Handle ``request`` now; False if its client went away while it waited."""
        if self.gone:
            return False
        request._body = body
        task = self.loop.create_task(self._serve(request, keep_alive))
        self.l.serving.add(task)
        task.add_done_callback(self.l.serving.discard)
        if large:
            assert self.l.large is not None
            task.add_done_callback(self.l.large.finished)
        return True

    def _head(self) -> bool:
        """Parse the next request's head; False to wait for more bytes (or after a handoff)."""
        buffer = self.buffer
        if not buffer:
            if self.deadline.phase != "idle":
                self.deadline.arm("idle", self.l.keepalive_timeout_s)
            return False
        end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
        if end < 0:
            if len(buffer) > MAX_HEAD or not _could_be_http(buffer):
                # too long for us, or not HTTP at all (a TLS hello on a plain
                # port): aiohttp's limits, answer and log line, without waiting
                self._hand_off()
            elif self.deadline.phase != "headers":
                self.deadline.arm("headers", self.l.header_timeout_s)
            return False
        head_len = end + 4
        head = _Head()
        parser = httptools.HttpRequestParser(head)
        try:
            parser.feed_data(bytes(buffer[:head_len]))
        except httptools.HttpParserError:
            self._hand_off()  # malformed (or an upgrade): aiohttp's 400 and log line
            return False
        if not head.done or parser.get_method() != b"POST" or parser.get_http_version() != "1.1":
            self._hand_off()
            return False
        length = 0
        lengths = 0
        headers: CIMultiDict[str] = CIMultiDict()
        for raw_name, raw_value in head.headers:
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            lower = raw_name.lower()
            if lower in _NOT_LEAN:
                self._hand_off()
                return False
            if lower == b"content-length":
                lengths += 1
                if not raw_value.isdigit():
                    self._hand_off()
                    return False
                length = int(raw_value)
            headers.add(name, value)
        url = head.url.decode("latin-1")
        path = url.partition("?")[0]
        if lengths > 1 or length > self.l.max_body_bytes or not self.l.serves(path):
            self._hand_off()
            return False
        assert self.transport is not None
        request = LeanRequest(
            "POST",
            url,
            CIMultiDictProxy(headers),
            b"",
            self.transport,
            self.remote,
            self.l.scheme,
        )
        self.pending = (request, head_len, head_len + length, parser.should_keep_alive())
        return True

    def _hand_off(self) -> None:
        """aiohttp's protocol takes the connection, from this request's first byte on."""
        transport = self.transport
        assert transport is not None
        self.gone = True
        self.deadline.cancel()
        self.l.connections.discard(self)
        self.l.handed_off += 1
        proto = self.l.fallback()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        data, self.buffer = bytes(self.buffer), bytearray()
        if data:
            proto.data_received(data)
        if self.paused:
            self.paused = False
            transport.resume_reading()
        self.transport = None

    # ------------------------------------------------------------ handling

    async def _serve(self, request: LeanRequest, keep_alive: bool) -> None:
        try:
            # outermost, as the middleware is on aiohttp's path: the real client
            request[CLIENT] = self.l.proxies.client_of(request)  # type: ignore[arg-type]
            resp = await self.l.handler(request)
            keep_alive = keep_alive and resp.keep_alive is not False and not self.l.closing
            data = response_bytes(resp, keep_alive)
        except Exception:  # a bug of ours: the traceback is wanted, the client gets a 500
            logger.exception("lean handler failed")
            keep_alive = False
            text = b"500 Internal Server Error\n\nServer got itself in trouble"
            data = (
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8"
                b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(text), text)
            )
        transport = self.transport
        self.busy = False
        if self.gone or transport is None or transport.is_closing():
            return  # the client went away meanwhile
        transport.write(data)
        if not keep_alive:
            transport.close()
            return
        if self.paused:
            self.paused = False
            transport.resume_reading()
        if self.buffer:
            # a pipelined request: its header clock starts now that ours is done
            self.deadline.arm("headers", self.l.header_timeout_s)
        self._process()

    # ------------------------------------------------------------ deadlines

    def _expired(self, phase: str) -> None:
        transport = self.transport
        if self.gone or transport is None or transport.is_closing():
            return
        if self.busy:
            # a pipelined request's bytes while the previous one is handled:
            # its clock starts when the handler is done
            return
        if phase == "idle":
            transport.close()  # an idle keep-alive connection, as aiohttp closes one
            return
        after_s = self.l.body_timeout_s if phase == "body" else self.l.header_timeout_s
        time_out(transport, phase, listener=self.l.listener, after_s=after_s, count=self.l.count)


class LeanSite(web.TCPSite):
    """A TCPSite whose connections start on a LeanProtocol; stopping it closes them too."""

    def __init__(self, runner: web.BaseRunner, lean: LeanListener, *args: Any, **kw: Any) -> None:
        super().__init__(runner, *args, **kw)
        self.lean = lean

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registered with the runner, which stops it
        self._server = await asyncio.get_running_loop().create_server(
            self.lean,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await super().stop()  # no new connections
        await self.lean.shut_down(self._runner._shutdown_timeout)


def routed_to(app: web.Application, handler: Handler) -> Callable[[str], bool]:
    """Whether the app's router sends a POST to this path to ``handler``: what the
    lean path serves, everything else registered on the port staying aiohttp's."""
    seen: dict[str, bool] = {}

    def serves(path: str) -> bool:
        known = seen.get(path)
        if known is not None:
            return known
        answer = False
        for resource in app.router.resources():
            match = getattr(resource, "_match", None)
            if match is None or match(path) is None:
                continue
            posts = [r for r in resource if r.method in ("POST", "*")]
            if posts:
                answer = posts[0].handler == handler
                break
        if len(seen) < 1024:  # a bounded memo: the paths CPEs use are few
            seen[path] = answer
        return answer

    return serves


def lean_listener(runner: web.BaseRunner) -> LeanListener | None:
    """The runner's lean listener; None when its port is aiohttp's alone."""
    for site in runner.sites:
        if isinstance(site, LeanSite):
            return site.lean
    return None
