"""The CWMP port's lean HTTP path (acs/web/lean.py) on real sockets: it serves a
session's POSTs itself, and a request it does not serve hands the connection to
aiohttp, which answers it (and every later request of that connection) as it
always did."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import asyncpg
import pytest

from acs.store import devices
from acs.web.lean import LeanListener, lean_listener
from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_simulator_fleet import dev_id, fleet_of
from tests.e2e.test_survival import inform_envelope

pytestmark = pytest.mark.db

TIMEOUT_S = 1.0


def lean_of(running: Running) -> LeanListener:
    found = lean_listener(running.runners[0])  # the CWMP runner is the first
    assert found is not None, "the CWMP port is not on the lean path"
    return found


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: acs", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """One response off the connection: its status, head and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = int(head.split(b" ", 2)[1])
    found = re.search(rb"(?im)^content-length: *(\d+)", head)
    body = await reader.readexactly(int(found.group(1))) if found else b""
    return status, head, body


async def connect(running: Running):
    return await asyncio.open_connection("127.0.0.1", running.ports["cwmp"])


async def test_cwmp_then_another_route_on_one_keep_alive_connection(start_acs: StartAcs) -> None:
    running = await start_acs(cwmp_http="lean")
    lean = lean_of(running)
    before = lean.handed_off
    reader, writer = await connect(running)
    try:
        writer.write(post("/", inform_envelope(f"LEAN{time.time_ns()}")))
        status, head, body = await response(reader)
        assert status == 200 and b"InformResponse" in body, (head, body[:200])
        assert b"acs_session=" in head  # the session cookie, as aiohttp set it
        assert lean.handed_off == before  # served on the lean path
        cookie = re.search(rb"acs_session=([^;\r]+)", head).group(1).decode()
        # a FOTA check-in on the same connection: aiohttp's route, so aiohttp's protocol
        writer.write(post("/fota/v1/check", b"{}", "Content-Type: application/json"))
        status, head, body = await response(reader)
        assert lean.handed_off == before + 1
        assert 400 <= status < 500, (head, body[:200])  # an unknown device, a reason
        # the connection lives on under aiohttp, and the session's last POST ends it
        writer.write(post("/", b"", f"Cookie: acs_session={cookie}"))
        status, head, body = await response(reader)
        # a device new to the ACS: its discovery starts (else the empty answer ends it)
        assert status == 204 or b"GetParameterNames" in body, (head, body[:200])
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order(start_acs: StartAcs) -> None:
    running = await start_acs(cwmp_http="lean")
    lean = lean_of(running)
    before = lean.handed_off
    reader, writer = await connect(running)
    try:
        # an Inform and the empty POST that ends the session, in one write
        writer.write(post("/", inform_envelope(f"PIPE{time.time_ns()}")) + post("/", b""))
        first, _, body = await response(reader)
        second, head, then = await response(reader)
        assert first == 200 and b"InformResponse" in body
        # the connection names the session, no cookie needed: the ACS's first request
        assert second == 200 and b"GetParameterNames" in then, head
        assert lean.handed_off == before
    finally:
        writer.close()


async def test_a_malformed_request_line_after_a_session_is_aiohttps_400(
    start_acs: StartAcs, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_acs(cwmp_http="lean")
    lean = lean_of(running)
    before = lean.handed_off
    reader, writer = await connect(running)
    try:
        writer.write(post("/", inform_envelope(f"BAD{time.time_ns()}")))
        status, _, _ = await response(reader)
        assert status == 200
        caplog.clear()
        caplog.set_level(logging.WARNING, logger="acs.http")
        writer.write(b"POST secret-target HTTP/1.1\r\nHost: x\r\n\r\n")
        status, head, body = await response(reader)
        assert status == 400, head
        assert b"secret" not in head + body
        assert lean.handed_off == before + 1
        lines = [r for r in caplog.records if r.name == "acs.http"]
        assert len(lines) == 1 and "http_malformed" in lines[0].getMessage(), lines
    finally:
        writer.close()


async def test_an_oversized_body_is_413(start_acs: StartAcs) -> None:
    running = await start_acs(cwmp_http="lean", max_body_bytes=4096)
    reader, writer = await connect(running)
    try:
        writer.write(post("/", b"<" * 5000))
        status, head, body = await response(reader)
        assert status == 413, head
        assert b"body exceeds the limit" in body
    finally:
        writer.close()


async def test_a_slow_header_on_the_lean_path_is_closed_with_408(start_acs: StartAcs) -> None:
    running = await start_acs(
        cwmp_http="lean", http_header_timeout_s=TIMEOUT_S, http_body_timeout_s=TIMEOUT_S
    )
    lean = lean_of(running)
    before = lean.handed_off
    reader, writer = await connect(running)
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: acs\r\nX-Slow: ")
        said = b""
        async with asyncio.timeout(TIMEOUT_S + 10):
            while chunk := await reader.read(4096):
                said += chunk
        assert said.startswith(b"HTTP/1.1 408 "), said
        assert lean.handed_off == before  # the lean path's own deadline closed it
    finally:
        writer.close()
    text = (await running.metrics.render()).decode()
    assert 'acs_http_refused_total{listener="cwmp",reason="header_timeout"} 1.0' in text


async def test_a_stalled_body_on_the_lean_path_is_closed(start_acs: StartAcs) -> None:
    running = await start_acs(
        cwmp_http="lean", http_header_timeout_s=TIMEOUT_S, http_body_timeout_s=TIMEOUT_S
    )
    reader, writer = await connect(running)
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: acs\r\nContent-Length: 100\r\n\r\n<half")
        said = b""
        async with asyncio.timeout(TIMEOUT_S + 10):
            while chunk := await reader.read(4096):
                said += chunk
        assert said == b""  # closed without an answer, as aiohttp's guard does
    finally:
        writer.close()
    text = (await running.metrics.render()).decode()
    assert 'acs_http_refused_total{listener="cwmp",reason="body_timeout"} 1.0' in text


async def test_aiohttp_alone_when_the_lean_path_is_off(start_acs: StartAcs) -> None:
    running = await start_acs(cwmp_http="aiohttp")
    assert lean_listener(running.runners[0]) is None
    reader, writer = await connect(running)
    try:
        writer.write(post("/", inform_envelope(f"OFF{time.time_ns()}")) + post("/", b""))
        first, _, body = await response(reader)
        second, _, then = await response(reader)
        assert first == 200 and b"InformResponse" in body
        assert second == 200 and b"GetParameterNames" in then
    finally:
        writer.close()


async def test_large_answers_wait_their_turn_and_every_discovery_completes(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    # one large request at a time: eight CPEs discovering at once must queue their answers
    running = await start_acs(
        cwmp_http="lean",
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        large_request_bytes=16 * 1024,
        large_requests_at_once=1,
    )
    large = lean_of(running).large
    assert large is not None and large.at_once == 1
    fleet = await fleet_of(running, unique_serial("LG"), 8)
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok >= 1 for c in fleet.devices.values()), 60)
        assert large.waited > 0  # answers did wait
        assert large.running == 0 and not large.waiting  # and every one was handled
        assert all(c.sessions_failed == 0 for c in fleet.devices.values())
        async with db_pool.acquire() as conn:
            for serial, cpe in fleet.devices.items():
                # the whole tree, names and values, as the CPE has it
                stored = await devices.get_parameters(conn, dev_id(fleet, serial))
                params = {p: r for p, r in stored.items() if not p.endswith(".")}
                names = cpe.tree.get_parameter_names("", False)
                assert set(params) == {n.name for n in names if not n.name.endswith(".")}
                assert params["Device.DeviceInfo.SerialNumber"].value == serial
    finally:
        await fleet.stop()
