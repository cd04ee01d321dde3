"""The ceiling: a server that reads a POST and answers 200, nothing else.

Run as its own process (`python -m bench.bare --port N`) so that it gets a
core to itself exactly as an ACS worker does; bench.loadgen drives it with the
same client and the same Inform bytes as the ACS.

    --server aiohttp     aiohttp's web server, as the ACS's listeners (the ceiling)
    --server httptools   an asyncio Protocol over httptools (llhttp), no framework:
                         what a lean CWMP path could cost at the least (bench.http_layer)
    --server lean        the ACS's lean CWMP path (acs/web/lean.py) around the aiohttp
                         handler above: its own framing, request and response writing
    --event-loop         uvloop or asyncio, as ACS_EVENT_LOOP
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from aiohttp import web

from acs import loops

_ANSWER = b'<?xml version="1.0"?><ok/>'
_RAW_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(_ANSWER)
    + _ANSWER
)


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_ANSWER, content_type="text/xml")


class _HttptoolsBare(asyncio.Protocol):
    """Keep-alive HTTP/1.1: parse with llhttp, answer each whole request once."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:  # noqa: BLE001 - a bare server: any bad request closes
            if self.transport is not None:
                self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.body.clear()
        if self.transport is not None:
            self.transport.write(_RAW_ANSWER)


async def _serve_aiohttp(host: str, port: int) -> None:
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    await _until_stopped()
    await runner.cleanup()


async def _serve_httptools(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_HttptoolsBare, host, port)
    await _until_stopped()
    server.close()


async def _serve_lean(host: str, port: int) -> None:
    """The ACS's lean CWMP path (acs/web/lean.py) in front of the same handler: what
    its framing, LeanRequest and response writing cost per POST."""
    from acs.web.guard import GuardedRunner
    from acs.web.lean import LeanListener, LeanSite, routed_to
    from acs.web.proxy import TrustedProxies

    app = _app()
    runner = GuardedRunner(
        app, listener="bare", header_timeout_s=20.0, body_timeout_s=30.0, access_log=None
    )
    await runner.setup()
    assert runner.server is not None
    lean = LeanListener(
        handler=handle,
        fallback=runner.server,
        serves=routed_to(app, handle),
        proxies=TrustedProxies(),
        listener="bare",
        max_body_bytes=1 << 20,
        header_timeout_s=20.0,
        body_timeout_s=30.0,
        keepalive_timeout_s=3630.0,
        count=lambda _reason: None,
        tls=False,
    )
    await LeanSite(runner, lean, host, port).start()
    await _until_stopped()
    await runner.cleanup()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()


def _app() -> web.Application:
    app = web.Application()
    app.router.add_post("/", handle)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server", choices=("aiohttp", "httptools", "lean"), default="aiohttp")
    ap.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="asyncio")
    args = ap.parse_args()
    serve = {"aiohttp": _serve_aiohttp, "httptools": _serve_httptools, "lean": _serve_lean}[
        args.server
    ]
    loops.run(serve(args.host, args.port), args.event_loop)


if __name__ == "__main__":
    main()
