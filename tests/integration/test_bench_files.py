"""bench.files stays runnable: a quick run against the real ACS and the bare
server downloads every byte it planned, verified, and drops its database."""

from __future__ import annotations

import asyncio
import json
import os

import asyncpg
import pytest

from bench import files

pytestmark = pytest.mark.db


def test_plans_cover_the_image_and_the_resumed_half() -> None:
    image = bytes(range(256)) * 41  # not a multiple of the range count
    work = files.plans(image, 4)
    whole, resumed = work[0], work[1]
    assert not whole.resume and resumed.resume
    assert whole.ranges[0][0] == 0 and whole.ranges[-1][1] == len(image) - 1
    for (_, last), (first, _) in zip(whole.ranges, whole.ranges[1:], strict=False):
        assert first == last + 1  # contiguous, no gap, no overlap
    assert resumed.ranges == [(len(image) // 2, len(image) - 1)]


def test_quick_run_downloads_and_verifies_everything(
    pg_admin_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACS_BENCH_DATABASE_URL", pg_admin_url)
    name = f"bench_files_test_{os.getpid()}"
    files.main(["--quick", "--database", name])
    lines = capsys.readouterr().out.strip().splitlines()
    row, cold, warm = json.loads(lines[-1])["rows"]
    assert row["value"] > 0 and float(row["ratio"]) > 0
    assert row["met"] is (row["value"] >= files.GOAL_MB_S)
    # ACS_FILE_STORE=postgres: the cold and warm rows, each against its own goal
    assert "cold cache" in cold["target"] and "warm cache" in warm["target"]
    assert cold["met"] is (cold["value"] >= files.GOAL_COLD_MB_S) and cold["value"] > 0
    assert warm["met"] is (warm["value"] >= files.GOAL_MB_S) and warm["value"] > 0
    (read_line,) = [line for line in lines if line.startswith("| chunks read from PostgreSQL")]
    assert float(read_line.split(" | ")[1].replace(",", "")) > 0
    # 10 clients on 4 MB: 5 whole images in 4 ranges + 5 second halves = 30 MB, 25 requests
    for server in ("| ACS file server |", "| bare aiohttp FileResponse |"):
        (line,) = [line for line in lines if line.startswith(server)]
        cells = line.split(" | ")  # server, MB/s, wall s, MB received, requests, ...
        assert cells[3] == "30" and cells[4] == "25", line

    async def leftover() -> bool:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name))
        finally:
            await conn.close()

    assert not asyncio.run(leftover())
