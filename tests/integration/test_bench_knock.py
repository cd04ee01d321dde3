"""bench.knock and bench.stun stay runnable: quick runs of both, against the real
ACS process (bench.knock) and the real STUN server (bench.stun), whose rows say
what they measured and whether the goal was met, consistently."""

from __future__ import annotations

import json
import secrets
import socket

import pytest

from bench import knock
from bench import stun as stun_bench

pytestmark = pytest.mark.db


def _free_port_block(n: int = 4) -> int:
    """A port whose next n-1 are free too (CWMP, API, files over TCP; STUN over UDP)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        try:
            for p in range(port, port + n):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free block of {n} ports")


def test_the_knock_scenario_starts_every_natted_session_at_a_tiny_scale(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACS_BENCH_DATABASE_URL", pg_admin_url)
    name = f"bench_knock_test_{secrets.token_hex(3)}"
    knock.main(["--quick", "--devices", "8", "--port", str(_free_port_block()), "--database", name])
    lines = capsys.readouterr().out.strip().splitlines()
    (row,) = json.loads(lines[-1])["rows"]
    assert "8/8 sessions started" in row["measured"], row
    assert row["value"] > 0
    assert row["met"] is (row["value"] <= knock.GOAL_P99_S)
    # the knocks went over UDP: nothing listens for HTTP behind the simulator's NAT
    assert lines[0].startswith("8 knocks, 8 sessions, UDP accepted "), lines[0]
    assert int(lines[0].rsplit(" ", 1)[1]) >= 8
    # the row says what the CPEs did with the datagrams, and what the knocks cost
    assert "the CPEs' UDP connection requests during the knocks {'accepted': " in row["notes"]
    assert "ACS CPU " in row["notes"] and "PostgreSQL CPU " in row["notes"]


def test_the_stun_scenario_answers_every_request_and_reports_the_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stun_bench.main(["--quick"])  # it asserts every answer was a real, counted one
    (row,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert row["value"] > 0 and 0 < float(row["ratio"])
    assert row["met"] is (row["value"] >= stun_bench.GOAL_PER_S)
