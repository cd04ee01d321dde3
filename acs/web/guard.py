"""Every listener's connections, guarded below the application.

aiohttp gives a connection no deadline for its request headers or body: a
client sending a header line a byte at a time (slow loris), or a body that
stops half-way, holds its socket and its handler for as long as it likes.
And a request aiohttp cannot parse is logged with a traceback holding an
excerpt of the raw request, and echoed back in the response.

The request handler here adds, per connection and at the transport level:

- a header deadline: request line and headers within ``header_timeout_s``
  of the connection opening or of the first byte of a later request (a total,
  like nginx's client_header_timeout), else 408 and the connection is closed;
- a body deadline: no gap longer than ``body_timeout_s`` between two pieces
  of a request body (like nginx's client_body_timeout), else the connection is
  closed; time the ACS itself stops reading (flow control while a handler is
  busy) never counts against the client;
- one WARNING line, with the peer and the parser's reason, for malformed
  HTTP and for each deadline; never the request's bytes, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, InvalidURLError
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from acs.logs import log
from acs.web.deadline import Deadline, peer_of, time_out

logger = logging.getLogger("acs.http")


# where an excerpt of the request begins: a colon, or a quote opening a quoted
# (or bytes) value; an apostrophe inside a word ("can't") is not one
_EXCERPT = re.compile(r"""[:]|\s(?:b|bytearray\()?['"]""")


def reason_of(exc: BaseException) -> str:
    """What went wrong, without what the client sent: aiohttp's message is a
    reason line, then an excerpt of the raw bytes (header values, a body)."""
    if isinstance(exc, InvalidURLError):
        return "InvalidURLError: the request target is not a URL"  # its message is the target
    text = getattr(exc, "message", None) or str(exc)
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    # the reason ends where the excerpt starts: "...: b'GET /secret'", "...: bytearray(",
    # "Bad status line 'secret'"
    phrase = _EXCERPT.split(first, maxsplit=1)[0].strip()[:120]
    return f"{type(exc).__name__}: {phrase}" if phrase else type(exc).__name__


class GuardedHandler(RequestHandler):
    def __init__(
        self,
        manager: web.Server,
        *,
        listener: str,
        header_timeout_s: float,
        body_timeout_s: float,
        count: Callable[[str], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._count = count
        self._listener = listener
        self._header_timeout_s = header_timeout_s
        self._body_timeout_s = body_timeout_s
        self._deadline = Deadline(self._loop, self._expired)  # "headers" or "body"
        self._body: StreamReader | None = None  # the last request's body
        self._requests_seen = 0

    # ---------------------------------------------------------------- deadlines

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # a client that connects and sends nothing is a slow loris too
        self._deadline.arm("headers", self._header_timeout_s)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        in_body = self._body is not None and not self._body.is_eof()
        super().data_received(data)
        deadline = self._deadline
        if self._force_close or self._close or self.transport is None:
            deadline.disarm()
            return
        headers_done = self._request_count != self._requests_seen
        if headers_done:
            self._requests_seen = self._request_count
            message, body = self._messages[-1] if self._messages else (None, None)
            parse_error = getattr(message, "exc", None)  # aiohttp's _ErrInfo
            if in_body and parse_error is not None and self._body is not None:
                # the body went bad half-way (a broken chunk): aiohttp queues a
                # 400 but leaves the handler waiting for the rest of the body
                self._body.set_exception(
                    RequestPayloadError(f"malformed body: {reason_of(parse_error)}")
                )
            self._body = body
        if self._body is not None and not self._body.is_eof():
            deadline.body_piece(self._body_timeout_s)  # each piece restarts the clock
        elif headers_done or in_body or not data:
            # a whole request, a body complete, or aiohttp re-feeding its own buffer;
            # an idle keep-alive connection is aiohttp's keepalive_timeout's business
            deadline.disarm()
        elif deadline.phase != "headers":
            # the first bytes of a request whose headers are still to come; the
            # deadline is not restarted by later bytes, or a byte a second would do
            deadline.arm("headers", self._header_timeout_s)

    def _expired(self, phase: str) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if phase == "body":
            if self._body is None or self._body.is_eof():
                return
            if self._reading_paused or self._buffer_paused:
                # we stopped reading (a busy handler): the client is not late
                self._deadline.arm("body", self._body_timeout_s)
                return
        elif self._current_request is not None or self._messages:
            # a pipelined request's headers while the previous one is handled:
            # its clock starts when the handler is done
            self._deadline.arm("headers", self._header_timeout_s)
            return
        after_s = self._body_timeout_s if phase == "body" else self._header_timeout_s
        time_out(transport, phase, listener=self._listener, after_s=after_s, count=self._count)

    # ---------------------------------------------------------------- errors

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, _CLIENT_SIDE):
            # the client went away or sent a broken body, and whoever read it has
            # answered (or cannot): a line for the record, no traceback
            log(
                logger,
                logging.INFO,
                "http_client_error",
                listener=self._listener,
                peer=peer_of(self.transport),
                reason=reason_of(exc),
            )
            return
        super().log_exception(*args, **kw)  # a bug of ours: the traceback is wanted

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, _CLIENT_SIDE):
            return super().handle_error(request, status, exc, message)  # a bug: keep it all
        assert exc is not None
        if isinstance(exc, HttpProcessingError):
            status = exc.code if 400 <= exc.code < 500 else 400
        else:
            status = 400
        reason = reason_of(exc)
        self._count("malformed")
        log(
            logger,
            logging.WARNING,
            "http_malformed" if isinstance(exc, HttpProcessingError) else "http_client_error",
            listener=self._listener,
            peer=peer_of(self.transport) or request.remote,
            status=status,
            reason=reason,
        )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; the connection is dropped")
        resp = web.Response(status=status, text=f"{status} {HTTPStatus(status).phrase}: {reason}\n")
        resp.force_close()
        return resp


_CLIENT_SIDE = (HttpProcessingError, RequestPayloadError, ConnectionError)


class _GuardedServer:
    """aiohttp's Server, making GuardedHandlers; everything else is the Server's."""

    def __init__(self, server: web.Server, **guard: Any) -> None:
        self._server = server
        self._guard = guard

    def __call__(self) -> GuardedHandler:
        server = self._server
        return GuardedHandler(server, loop=server._loop, **self._guard, **server._kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class GuardedRunner(web.AppRunner):
    def __init__(
        self,
        app: web.Application,
        *,
        listener: str,
        header_timeout_s: float,
        body_timeout_s: float,
        count: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._guard = {
            "listener": listener,
            "header_timeout_s": header_timeout_s,
            "body_timeout_s": body_timeout_s,
            "count": count or (lambda _reason: None),
        }

    async def _make_server(self) -> Any:
        return _GuardedServer(await super()._make_server(), **self._guard)
