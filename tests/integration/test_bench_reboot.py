"""bench.reboot stays runnable: a tiny reboot storm and a few parked sessions
against the real ACS process and the simulator, whose rows say what they
measured and whether the goal was met, consistently."""

from __future__ import annotations

import json
import secrets

import pytest

from bench import known_fleet, reboot
from tests.integration.test_bench_knock import _free_port_block

pytestmark = pytest.mark.db


def test_the_reboot_scenario_serves_every_known_device_and_measures_what_a_session_holds(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACS_BENCH_DATABASE_URL", pg_admin_url)
    name = f"bench_reboot_test_{secrets.token_hex(3)}"
    port = _free_port_block(6)
    reboot.main(
        ["--quick", "--devices", "12", "--parked", "8", "--slow", "2", "--warmup", "2"]
        + ["--port", str(port), "--database", name]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    storm, memory = json.loads(lines[-1])["rows"]
    raw = json.loads(lines[-2])["raw"]
    assert "12/12 served" in storm["measured"], storm
    assert storm["value"] > 0 and storm["met"] is True, storm
    # known devices: no discovery again, and 1 BOOT without 0 BOOTSTRAP
    assert raw["storm"]["bootstrapped_again"] == 0
    assert "GetParameterNames" not in raw["storm"]["acs_rpcs"]
    assert set(raw["storm"]["http"]) <= set(reboot.OK_STATUSES)
    assert raw["storm"]["acs_cpu_s"] > 0 and raw["storm"]["pg_cpu_s"] > 0
    # two storms on one ACS: the second, twice the first's size, is the one measured
    first, second = raw["memory"]["first"], raw["memory"]
    assert first["parked"] >= 1 and second["parked_goal"] == 2 * first["parked_goal"] == 16
    assert second["base_rss_mb"] >= first["base_rss_mb"] > 0
    assert second["extra"] == second["parked"] - first["parked"]
    assert "a storm twice its size" in memory["notes"], memory
    assert memory["met"] is (memory["value"] <= reboot.HELD_GOAL_KB)
    # the setup: two real bootstraps, the rest seeded and checked against them
    assert "2 real bootstraps, 10 devices seeded" in storm["notes"], storm


def test_traced_memory_row_says_what_the_python_heap_holds_per_parked_session(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACS_BENCH_DATABASE_URL", pg_admin_url)
    name = f"bench_reboot_test_{secrets.token_hex(3)}"
    port = _free_port_block(6)
    reboot.main(
        ["--only", "memory", "--traced", "--parked", "4", "--slow", "3", "--warmup", "1"]
        + ["--port", str(port), "--database", name]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    (memory,) = json.loads(lines[-1])["rows"]
    heap = json.loads(lines[-2])["raw"]["memory"]["heap"]
    assert heap["parked"] >= 1 and heap["top"], heap
    assert "tracemalloc" in memory["notes"], memory
    assert all(t["at"] for t in heap["top"])


def test_a_seeded_row_that_differs_from_the_real_bootstrap_is_reported() -> None:
    entry = {"t": "string", "v": "a", "w": True, "nt": 1, "vt": 1}
    real = [{"device_id": "D", "tree": {"X.": entry, "T.": entry}, "updated_at": 1}]
    # other read times, another row time, another clock value: the same device
    same = [
        {
            "device_id": "D",
            "tree": {"X.": {**entry, "nt": 5, "vt": 6}, "T.": {**entry, "v": "later"}},
            "updated_at": 2,
        }
    ]
    clocked = frozenset({"T."})
    assert known_fleet._same("device_parameters", real, same, clocked) == []
    other = [{"device_id": "D", "tree": {"X.": {**entry, "v": "b"}, "T.": entry}, "updated_at": 1}]
    assert known_fleet._same("device_parameters", real, other, clocked) == [
        "tree X.: {'t': 'string', 'v': 'a', 'w': True} predicted,"
        " {'t': 'string', 'v': 'b', 'w': True} stored"
    ]
    assert known_fleet._same("device_parameters", real, [], clocked) == [
        "device_parameters: 1 rows predicted, 0 stored"
    ]
