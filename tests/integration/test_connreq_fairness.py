"""Connection requests to targets that hang must not starve the others, and every
caller has its answer within the timeout, waiting for a slot included."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from acs.connreq.http import ConnectionRequester
from tests.integration.test_connreq import PASSWORD, USER, Cpe, serve


@pytest.fixture
def silent_listeners() -> Iterator[list[str]]:
    """Sockets that accept (the kernel's backlog does) and never answer."""
    listeners = []
    for _ in range(4):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        listeners.append(s)
    yield [f"http://127.0.0.1:{s.getsockname()[1]}/cr" for s in listeners]
    for s in listeners:
        s.close()


async def test_a_hung_host_holds_only_its_own_slots(silent_listeners: list[str]) -> None:
    healthy = Cpe()
    runner, base = await serve({"/cr": healthy.handle})
    requester = ConnectionRequester(timeout_s=0.5, max_concurrent=4, max_per_host=2)
    hung = silent_listeners[0]
    try:
        storm = [asyncio.ensure_future(requester.send(hung, USER, PASSWORD)) for _ in range(10)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        ok = await requester.send(f"{base}/cr", USER, PASSWORD)
        assert ok.ok and time.monotonic() - started < 0.3, ok
        results = await asyncio.gather(*storm)
    finally:
        await requester.close()
        await runner.cleanup()
    assert all(not r.ok and r.elapsed_s < 0.7 for r in results), results
    host = hung.removeprefix("http://").removesuffix("/cr")
    # two took the host's slots; the other eight waited for them (one may get a
    # slot as its own time runs out, and then says how much of it the wait took)
    assert sum(r.reason == "timeout after 0.5 s" for r in results) == 2
    per_host = (
        f"timeout after 0.5 s waiting for a free slot: 2 connection requests to {host}"
        " already in flight (the most allowed per host)"
    )
    waited = [r.reason for r in results if "waiting for a free slot" in r.reason]
    assert len(waited) == 8 and waited.count(per_host) >= 6, waited


async def test_many_dead_hosts_fill_the_process_limit_but_callers_still_get_answers(
    silent_listeners: list[str],
) -> None:
    requester = ConnectionRequester(timeout_s=0.4, max_concurrent=1, max_per_host=4)
    try:
        results = await asyncio.gather(
            *(requester.send(url, USER, PASSWORD) for url in silent_listeners)
        )
    finally:
        await requester.close()
    assert all(not r.ok and r.elapsed_s < 0.6 for r in results), results
    # one took the only slot; of the three that waited, one at most got it as their
    # time ran out: the others say what they waited for
    reasons = [r.reason for r in results]
    assert reasons.count("timeout after 0.4 s") == 1
    global_limit = (
        "timeout after 0.4 s waiting for a free slot: 1 connection requests already in"
        " flight (the most allowed)"
    )
    assert reasons.count(global_limit) >= 2, reasons
    assert sum("waiting for a free slot" in r for r in reasons) == 3, reasons


async def test_a_slot_freed_late_leaves_little_time_and_the_reason_says_so() -> None:
    slow = Cpe(delay=0.35)
    runner, base = await serve({"/cr": slow.handle})
    requester = ConnectionRequester(timeout_s=0.5, max_concurrent=1, max_per_host=1)
    try:
        first, second = await asyncio.gather(
            requester.send(f"{base}/cr", USER, PASSWORD),
            requester.send(f"{base}/cr", USER, PASSWORD),
        )
    finally:
        await requester.close()
        await runner.cleanup()
    assert first.ok
    assert not second.ok and second.reason.startswith("timeout after 0.5 s (0.")
    assert "s of it waiting for a free slot)" in second.reason
