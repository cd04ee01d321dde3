"""Slow and malformed HTTP on every listener, on real sockets: slow-loris clients are
closed after the header or body deadline while normal clients are served, and
malformed requests are one WARNING line with the peer and the reason, never a
traceback, never the request's bytes."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import aiohttp
import pytest

from acs.web.server import API_MAX_LINE, Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_survival import inform_envelope

pytestmark = pytest.mark.db

LISTENERS = ("cwmp", "api", "files")
TIMEOUT_S = 1.0
# the deadline, plus room for a loaded machine (two cores shared by many runs)
CLOSED_WITHIN_S = TIMEOUT_S + 2.0


async def start(start_acs: StartAcs) -> Running:
    return await start_acs(http_header_timeout_s=TIMEOUT_S, http_body_timeout_s=TIMEOUT_S)


async def refused(running: Running, listener: str, reason: str) -> float:
    text = (await running.metrics.render()).decode()
    found = re.search(
        rf'^acs_http_refused_total\{{listener="{listener}",reason="{reason}"\}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def connect(running: Running, listener: str):
    return await asyncio.open_connection("127.0.0.1", running.ports[listener])


async def closed_after(reader: asyncio.StreamReader, limit_s: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it said first."""
    started = time.monotonic()
    said = b""
    async with asyncio.timeout(limit_s):
        while chunk := await reader.read(4096):
            said += chunk
    return time.monotonic() - started, said


async def served(running: Running, listener: str) -> int:
    """A normal client's request on a fresh connection."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        if listener == "cwmp":
            req = http.post(running.url("cwmp"), data=inform_envelope(f"GUARD{time.time_ns()}"))
        elif listener == "api":
            req = http.get(running.url("api", "/healthz"))
        else:
            req = http.get(running.url("files", "/no-such-file"))
        async with req as resp:
            await resp.read()
            return resp.status


async def test_slow_loris_headers_are_closed_while_others_are_served(
    start_acs: StartAcs,
) -> None:
    running = await start(start_acs)
    conns = []
    for listener in LISTENERS:
        for _ in range(20):
            reader, writer = await connect(running, listener)
            writer.write(b"POST / HTTP/1.1\r\nHost: acs\r\nX-Slow: ")
            conns.append((listener, reader, writer))

    async def trickle() -> None:
        # a byte every 0.2 s: an idle timeout would never fire, the deadline must
        while True:
            await asyncio.sleep(0.2)
            for _, _, writer in conns:
                if not writer.is_closing():
                    writer.write(b"a")

    feeding = asyncio.create_task(trickle())
    try:
        started = time.monotonic()
        # normal clients meanwhile, on every listener
        for listener in LISTENERS:
            assert await served(running, listener) in (200, 404), listener
        results = await asyncio.gather(
            *(closed_after(reader, CLOSED_WITHIN_S + 2) for _, reader, _ in conns)
        )
        elapsed = time.monotonic() - started
        for (listener, _, _), (_, said) in zip(conns, results, strict=True):
            assert said.startswith(b"HTTP/1.1 408 "), (listener, said[:100])
        assert elapsed < CLOSED_WITHIN_S, elapsed
        assert max(after for after, _ in results) < CLOSED_WITHIN_S
        # and all of them closed after the deadline, not before
        assert elapsed >= TIMEOUT_S * 0.9
        for listener in LISTENERS:
            assert await refused(running, listener, "header_timeout") == 20
    finally:
        feeding.cancel()
        for _, _, writer in conns:
            writer.close()


@pytest.mark.parametrize("listener", LISTENERS)
async def test_a_silent_connection_is_closed(start_acs: StartAcs, listener: str) -> None:
    running = await start(start_acs)
    reader, writer = await connect(running, listener)
    try:
        after_s, said = await closed_after(reader, CLOSED_WITHIN_S + 2)
        assert TIMEOUT_S * 0.9 <= after_s < CLOSED_WITHIN_S
        assert said.startswith(b"HTTP/1.1 408 ")
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("listener", "path"), [("cwmp", "/"), ("api", "/api/v1/devices"), ("files", "/x.bin")]
)
async def test_a_body_that_stops_half_way_is_closed(
    start_acs: StartAcs, listener: str, path: str
) -> None:
    running = await start(start_acs)
    readers = []
    for _ in range(10):
        reader, writer = await connect(running, listener)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: acs\r\nContent-Type: text/xml\r\n"
            "Content-Length: 100000\r\n\r\n<soap".encode()
        )
        readers.append((reader, writer))
    try:
        started = time.monotonic()
        assert await served(running, listener) in (200, 404)
        await asyncio.gather(*(closed_after(r, CLOSED_WITHIN_S + 2) for r, _ in readers))
        assert time.monotonic() - started < CLOSED_WITHIN_S
        assert await refused(running, listener, "body_timeout") == 10
        assert await refused(running, listener, "header_timeout") == 0
    finally:
        for _, writer in readers:
            writer.close()


async def test_a_slow_but_steady_body_is_served(start_acs: StartAcs, unique_serial) -> None:
    """The body deadline is the longest silence, not the whole upload: a CPE on a
    slow link that keeps sending is not cut off."""
    running = await start(start_acs)
    body = inform_envelope(unique_serial("GUARD"))
    pieces = [body[i : i + len(body) // 4 + 1] for i in range(0, len(body), len(body) // 4 + 1)]
    reader, writer = await connect(running, "cwmp")
    try:
        writer.write(
            f"POST / HTTP/1.1\r\nHost: acs\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        started = time.monotonic()
        for piece in pieces:
            await asyncio.sleep(TIMEOUT_S * 0.5)
            writer.write(piece)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert time.monotonic() - started > TIMEOUT_S  # longer than the deadline in all
        assert head.startswith(b"HTTP/1.1 200 "), head
    finally:
        writer.close()


async def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_deadline(
    start_acs: StartAcs,
) -> None:
    """CPEs that ignore cookies are found by their connection, and think between two
    messages: only a request that has begun has a header deadline."""
    running = await start(start_acs)
    reader, writer = await connect(running, "api")
    request = b"GET /healthz HTTP/1.1\r\nHost: acs\r\n\r\n"
    try:
        for _ in range(2):
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 "), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            await asyncio.sleep(TIMEOUT_S * 2)  # idle, longer than the header deadline
        assert not reader.at_eof()
    finally:
        writer.close()


GARBAGE = [
    (b"GARBAGE\r\n\r\n", "Invalid method"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nBad Header secret-in-header\r\n\r\n", "Invalid header"),
    (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: secret-length\r\n\r\nsecret-body",
        "Content-Length",
    ),
    (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ZZ\r\n<Value>secret-password</Value>\r\n",
        "chunk size",
    ),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03secret", "HTTPS"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nX: secret\x00\x01\r\n\r\n", "header value"),
    # past every listener's limit: the API's is API_MAX_LINE, the others' aiohttp's 8190
    (b"POST /" + b"s" * (API_MAX_LINE + 1000) + b" HTTP/1.1\r\n\r\n", "LineTooLong"),
    (b"POST secret-target HTTP/1.1\r\nHost: x\r\n\r\n", "InvalidURLError"),
]


@pytest.mark.parametrize("listener", LISTENERS)
async def test_malformed_http_is_one_warning_line(
    start_acs: StartAcs, caplog: pytest.LogCaptureFixture, listener: str
) -> None:
    running = await start(start_acs)
    caplog.set_level(logging.DEBUG)
    for raw, reason in GARBAGE:
        caplog.clear()
        reader, writer = await connect(running, listener)
        writer.write(raw)
        try:
            _, said = await closed_after(reader, 5)
        finally:
            writer.close()
        assert said.startswith(b"HTTP/1.1 400 ") or said.startswith(b"HTTP/1.0 400 "), said[:200]
        assert b"secret" not in said  # the client's bytes are not echoed either
        port = writer.get_extra_info("sockname")[1]
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        line = lines[0].getMessage()
        assert lines[0].name == "acs.http" and "event=http_malformed" in line
        assert f"peer=127.0.0.1:{port}" in line and f"listener={listener}" in line
        assert reason in line, line
        assert "\n" not in line and "secret" not in line and "sss" not in line
        # nothing anywhere, at any level, carries a traceback or the raw request
        for record in caplog.records:
            assert record.exc_info is None, record.getMessage()
            assert "secret" not in record.getMessage()
    assert await refused(running, listener, "malformed") == len(GARBAGE)
    # and the listener goes on serving
    assert await served(running, listener) in (200, 404)


async def test_a_chunked_body_that_turns_to_garbage_gets_400_not_500(
    start_acs: StartAcs, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start(start_acs)
    reader, writer = await connect(running, "cwmp")
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<soap\r\n"
        )
        await asyncio.sleep(0.2)  # the handler is reading the body by now
        writer.write(b"QQ\r\nsecret-value\r\n")
        _, said = await closed_after(reader, 5)
    finally:
        writer.close()
    assert said.startswith(b"HTTP/1.1 400 "), said[:200]
    assert b"secret" not in said
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "secret" not in record.getMessage()


async def test_time_the_server_stops_reading_is_not_held_against_the_client() -> None:
    """A handler busy before it reads a large body makes aiohttp stop reading the
    socket (flow control): the client, blocked by us, is not late."""
    from aiohttp import web

    from acs.web.guard import GuardedRunner

    async def slow_reader(request: web.Request) -> web.Response:
        await asyncio.sleep(TIMEOUT_S * 2.5)  # busy: the socket buffers fill, reading pauses
        return web.Response(text=str(len(await request.read())))

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/", slow_reader)
    runner = GuardedRunner(
        app, listener="test", header_timeout_s=TIMEOUT_S, body_timeout_s=TIMEOUT_S
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    body = b"x" * (32 * 1024 * 1024)  # far more than the socket buffers hold
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/", data=body) as resp:
                assert resp.status == 200
                assert await resp.text() == str(len(body))
    finally:
        await runner.cleanup()
