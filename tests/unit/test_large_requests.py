"""The line of large CWMP requests (acs/web/large.py): at most ``at_once`` are
handled, the rest wait compressed in arrival order, a gone client's place passes on."""

from __future__ import annotations

from acs.web.large import LargeRequests

BODY = b"<ParameterValueStruct><Name>Device.X</Name><Value>1</Value></ParameterValueStruct>" * 2000


def test_at_most_at_once_run_and_the_rest_start_in_arrival_order() -> None:
    line = LargeRequests(min_bytes=1024, at_once=2)
    started: list[tuple[int, bytes]] = []

    def starter(n: int):
        return lambda body: started.append((n, body)) is None

    for n in range(5):
        line.admit(BODY, starter(n))
    assert [n for n, _ in started] == [0, 1]
    assert line.running == 2 and len(line.waiting) == 3 and len(line) == 5 and line.waited == 3
    # each waits as its body compressed, and gets it back whole
    assert all(len(packed) < len(BODY) // 10 for packed, _ in line.waiting)
    line.finished()
    assert [n for n, _ in started] == [0, 1, 2] and started[-1][1] == BODY
    line.finished()
    line.finished()
    assert [n for n, _ in started] == [0, 1, 2, 3, 4] and line.running == 2
    line.finished()
    line.finished()
    assert line.running == 0 and len(line) == 0


def test_a_client_gone_while_waiting_gives_its_place_to_the_next() -> None:
    line = LargeRequests(min_bytes=1024, at_once=1)
    started: list[str] = []
    line.admit(BODY, lambda b: started.append("first") is None)
    line.admit(BODY, lambda b: False)  # its connection closed while it waited
    line.admit(BODY, lambda b: started.append("third") is None)
    line.finished()
    assert started == ["first", "third"] and line.running == 1 and not line.waiting
    # gone before it could even start: the place is not kept
    line.finished()
    line.admit(BODY, lambda b: False)
    assert line.running == 0


def test_only_bodies_from_the_threshold_are_large() -> None:
    line = LargeRequests(min_bytes=65536, at_once=1)
    assert not line.is_large(b"x" * 65535)
    assert line.is_large(b"x" * 65536)
