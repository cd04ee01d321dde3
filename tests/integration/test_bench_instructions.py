"""bench.instructions stays runnable: the ACS runs under callgrind, the counted
phase completes sessions, and the instructions per session are read from its dump."""

from __future__ import annotations

import json
import secrets
import shutil

import pytest

from bench import instructions
from tests.integration.test_bench_knock import _free_port_block

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(
        shutil.which("valgrind") is None, reason="needs valgrind (Debian: valgrind)"
    ),
]


def test_quick_run_counts_instructions_per_session(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACS_BENCH_DATABASE_URL", pg_admin_url)
    name = f"bench_instr_test_{secrets.token_hex(3)}"
    instructions.main(["--quick", "--port", str(_free_port_block(3)), "--database", name])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["scenario"] == instructions.SCENARIO
    (row,) = result["rows"]
    raw = json.loads(lines[-2])["raw"]
    assert raw["sessions"] > 0 and not raw["errors"]
    assert row["value"] == raw["instructions"] / raw["sessions"]
    # a session is two HTTP requests, a Digest check and two statements' worth of
    # Python: far more than a hundred thousand instructions, far less than a billion
    assert 1e5 < row["value"] < 1e9
