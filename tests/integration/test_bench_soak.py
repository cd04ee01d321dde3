"""bench.soak stays runnable: a quick run ticks a soaking campaign, judges the
devices that rebooted, and drops its database."""

from __future__ import annotations

import asyncio
import json
import os

import asyncpg
import pytest

from bench import soak

pytestmark = pytest.mark.db


def test_quick_run_ticks_a_soaking_campaign(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACS_BENCH_DATABASE_URL", pg_admin_url)
    name = f"bench_soak_test_{os.getpid()}"
    soak.main(["--quick", "--database", name])
    lines = capsys.readouterr().out.strip().splitlines()
    (row,) = json.loads(lines[-1])["rows"]
    assert row["value"] > 0 and row["met"] is (row["value"] < soak.GOAL_S)
    assert "2,000 soaking devices" in row["target"]
    (verdicts,) = [
        line for line in lines if line.startswith("13 Informs") or "verdicts after" in line
    ]
    assert "'soaking'" in verdicts  # the soak goes on: 6 hours are not over
    assert len([line for line in lines if line.startswith("| ") and line[2].isdigit()]) == 3

    async def leftover() -> bool:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name))
        finally:
            await conn.close()

    assert not asyncio.run(leftover())
