"""Pieces of the web UI and of operator accounts that need no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from acs.core import passwords
from acs.services.accounts import LoginThrottle
from acs.web.ui import render
from acs.web.ui.app import _csv_cell, crumbs, safe_next, tree_view


def test_passwords_hash_verify_and_refuse_weak_ones() -> None:
    digest = passwords.hash_password("a long enough secret")
    assert digest.startswith("$argon2id$")
    assert passwords.verify_password(digest, "a long enough secret")
    assert not passwords.verify_password(digest, "a long enough secreT")
    assert not passwords.verify_password(None, "a long enough secret")  # unknown user
    assert not passwords.verify_password("not a hash", "x")
    with pytest.raises(passwords.PasswordRejected, match="at least 10"):
        passwords.check_password("short", "bob")
    with pytest.raises(passwords.PasswordRejected, match="may not be the username"):
        passwords.check_password("Operator-01", "operator-01")
    with pytest.raises(passwords.PasswordRejected, match="letters, digits"):
        passwords.check_username("bob smith")


def test_the_throttle_pauses_a_username_and_an_address() -> None:
    t = LoginThrottle(per_user=3, per_address=5, window_s=60)
    for i in range(3):
        assert t.retry_after("bob", "10.0.0.1", now=100 + i) == 0
        t.failed("bob", "10.0.0.1", now=100 + i)
    assert t.retry_after("bob", "10.0.0.9", now=103) == pytest.approx(57)
    assert t.retry_after("BOB", "10.0.0.9", now=103) > 0  # names are not case-sensitive here
    assert t.retry_after("alice", "10.0.0.1", now=103) == 0  # the address has 2 left
    t.failed("alice", "10.0.0.1", now=104)
    t.failed("carol", "10.0.0.1", now=105)
    assert t.retry_after("dave", "10.0.0.1", now=106) > 0  # the address is spent
    assert t.retry_after("bob", "10.0.0.9", now=161) == 0  # the window moved on
    t.failed("erin", "10.0.0.2", now=200)
    t.succeeded("erin")
    assert t.retry_after("erin", "10.0.0.3", now=201) == 0


PARAMS = {
    "Device.": {"object": True},
    "Device.WiFi.": {"object": True},
    "Device.WiFi.SSID.": {"object": True},
    "Device.WiFi.SSID.1.": {"object": True},
    "Device.WiFi.SSID.1.SSID": {"value": "home", "object": False},
    "Device.WiFi.SSID.1.Enable": {"value": "true", "object": False},
    "Device.WiFi.SSID.10.": {"object": True},
    "Device.WiFi.SSID.10.SSID": {"value": "guest", "object": False},
    "Device.WiFi.SSID.2.": {"object": True},
    "Device.WiFi.SSID.2.SSID": {"value": "Home-5G", "object": False},
    "Device.WiFi.RadioNumberOfEntries": {"value": "2", "object": False},
}


def test_the_tree_shows_children_in_instance_order_and_searches_values() -> None:
    root = tree_view(PARAMS, "", "")
    assert root["objects"] == [("Device.", 5)] and root["leaves"] == []
    wifi = tree_view(PARAMS, "Device.WiFi.", "")
    assert wifi["objects"] == [("Device.WiFi.SSID.", 4)]
    assert [p for p, _ in wifi["leaves"]] == ["Device.WiFi.RadioNumberOfEntries"]
    ssids = tree_view(PARAMS, "Device.WiFi.SSID.", "")
    assert [o for o, _ in ssids["objects"]] == [
        "Device.WiFi.SSID.1.",
        "Device.WiFi.SSID.2.",
        "Device.WiFi.SSID.10.",
    ]
    found = tree_view(PARAMS, "", "home")
    assert [p for p, _ in found["matches"]] == [
        "Device.WiFi.SSID.1.SSID",
        "Device.WiFi.SSID.2.SSID",
    ]
    assert crumbs("Device.WiFi.SSID.1.") == [
        ("Device", "Device."),
        ("WiFi", "Device.WiFi."),
        ("SSID", "Device.WiFi.SSID."),
        ("1", "Device.WiFi.SSID.1."),
    ]


def test_charts_escape_what_devices_report() -> None:
    chart = render.bar_chart(
        [render.Bar('<script>alert("x")</script>', (10, 5, 1), "/ui/devices?filter=a&b")],
        ("all", "day", "hour"),
        title="t",
    )
    assert "<script>" not in chart and "&lt;script&gt;" in chart
    assert 'href="/ui/devices?filter=a&amp;b"' in chart
    assert chart.count("<rect") == 3
    bar = render.stacked_bar({"succeeded": 3, "failed": 1}, total=8, width=80)
    assert 'width="30.0"' in bar and 'width="10.0"' in bar  # 3/8 and 1/8 of 80
    assert "succeeded 3, failed 1" in bar


def test_times_read_as_a_person_would() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert render.ago((now - timedelta(seconds=42)).isoformat(), now) == "42 s ago"
    assert render.ago((now - timedelta(hours=3, minutes=5)).isoformat(), now) == "3 h ago"
    assert render.ago("2026-01-29T12:00:00Z", now) == "2 d ago"
    assert render.ago((now + timedelta(minutes=5)).isoformat(), now) == "in 5 min"
    assert render.ago(None) == "never"
    assert render.when("2026-01-31T13:00:00+01:00") == "2026-01-31 12:00:00 UTC"


def test_only_our_own_pages_are_redirect_targets() -> None:
    assert safe_next("/ui/devices?filter=x") == "/ui/devices?filter=x"
    for bad in (
        "https://evil.example/",
        "//evil.example/ui/",
        "/api/v1/tokens",
        "/ui/\\evil",
        None,
    ):
        assert safe_next(bad) == "/ui/"


def test_csv_cells_never_start_a_formula() -> None:
    assert _csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _csv_cell("-1+1") == "'-1+1"
    assert _csv_cell(["a", "b"]) == "a b"
    assert _csv_cell(None) == ""
    assert _csv_cell(3) == "3"


def test_the_throttle_counts_an_attempt_before_it_is_checked() -> None:
    t = LoginThrottle(per_user=2, per_address=3, window_s=60)
    assert t.admit("bob", "10.0.0.1", now=100)[0] == 0
    assert t.admit("bob", "10.0.0.1", now=100)[0] == 0
    # two checks still in flight already spend bob's allowance
    wait, _ = t.admit("bob", "10.0.0.1", now=100.5)
    assert wait == pytest.approx(59.5)
    wait, stamp = t.admit("alice", "10.0.0.1", now=101)
    assert wait == 0
    assert t.admit("carol", "10.0.0.1", now=101)[0] > 0  # the address has spent its 3
    t.succeeded("alice", "10.0.0.1", stamp)  # a right password gives its slot back
    assert t.admit("carol", "10.0.0.1", now=102)[0] == 0
