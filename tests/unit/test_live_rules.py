"""Live updates' rules: notifications to page topics, allowed topics, and the
per-topic throttle that turns a storm into one refresh a second."""

from __future__ import annotations

from acs.core import live


def test_each_kind_of_write_reaches_its_pages() -> None:
    assert live.topics_of("device:ACDE48-HGW-1") == ["overview", "devices", "device:ACDE48-HGW-1"]
    assert "device:ACDE48-HGW-1" in live.topics_of("task:ACDE48-HGW-1")
    assert "faults" in live.topics_of("task:ACDE48-HGW-1")
    assert live.topics_of("campaign:7") == ["overview", "campaigns", "campaign:7"]
    assert live.topics_of("bulk:3") == ["bulk-jobs", "bulk:3"]
    # a device id may hold a colon: only the first one separates the kind
    assert "device:a:b" in live.topics_of("device:a:b")
    assert live.topics_of("nonsense") == []
    assert live.topics_of("other:1") == []
    assert live.topics_of("device:") == []


def test_only_known_topics_may_be_asked_for() -> None:
    for ok in ("overview", "jobs", "bulk-jobs", "device:ACDE48-HGW-1", "campaign:12", "bulk:1"):
        assert live.topic_problem(ok) is None, ok
    assert "unknown topic" in (live.topic_problem("everything") or "")
    assert "names its number" in (live.topic_problem("campaign:x") or "")
    assert "names its number" in (live.topic_problem("bulk:0") or "")
    assert "device id" in (live.topic_problem("device:") or "")
    assert "device id" in (live.topic_problem("device:a\nb") or "")


def test_a_storm_becomes_one_event_at_once_and_one_at_the_window_end() -> None:
    t = live.Throttle(window_s=1.0)
    assert t.hear("devices", 100.0) is True  # quiet until now: at once
    for i in range(1, 50):  # 49 more in the same second
        assert t.hear("devices", 100.0 + i / 100) is False
    assert t.next_due() == 101.0
    assert t.due(100.9) == []
    assert t.due(101.0) == ["devices"]  # the 49 folded into one
    assert t.next_due() is None
    assert t.due(102.5) == []  # nothing heard since: nothing sent
    # other topics have windows of their own
    assert t.hear("jobs", 101.2) is True
    assert t.hear("devices", 102.6) is True  # a second past its last send


def test_forgotten_topics_do_not_pile_up() -> None:
    t = live.Throttle(window_s=1.0)
    for i in range(100):
        t.hear(f"device:{i}", 0.0)
    t.due(1000.0)
    assert t.hear("device:1", 1000.5) is True
    assert len(t._last) == 1
