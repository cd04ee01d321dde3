"""History buckets in PostgreSQL: counters add up across writers, gauges keep a level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from acs.core import history as rules
from acs.metrics import Metrics
from acs.services.history import HistoryRecorder, totals
from acs.store import history
from acs.store.db import create_pool

pytestmark = pytest.mark.db

# a day far from the others of this run's tests: the table is shared
DAY = datetime(2031, 3, 4, tzinfo=UTC)


async def test_counters_add_up_per_bucket_and_per_step(db_pool: asyncpg.Pool) -> None:
    t0 = rules.bucket_of(DAY + timedelta(hours=10, minutes=7))
    assert t0 == DAY + timedelta(hours=10, minutes=5)
    async with db_pool.acquire() as conn:
        # two workers adding to the same bucket, and one more bucket in the hour
        await history.add(conn, t0, {"sessions": 5, "boots": 1})
        await history.add(conn, t0, {"sessions": 7})
        await history.add(conn, t0 + timedelta(minutes=20), {"sessions": 2})
        await history.add(conn, t0 + timedelta(hours=1), {"sessions": 4})
        five = await history.series(
            conn, ["sessions", "boots"], DAY, DAY + timedelta(days=1), rules.BUCKET
        )
        hourly = await history.series(
            conn, ["sessions"], DAY, DAY + timedelta(days=1), timedelta(hours=1)
        )
    assert five["sessions"][t0] == 12 and five["boots"][t0] == 1
    hour = DAY + timedelta(hours=10)
    assert hourly["sessions"] == {hour: 14, hour + timedelta(hours=1): 4}
    filled = rules.fill(hourly["sessions"], DAY, DAY + timedelta(days=1), timedelta(hours=1))
    assert len(filled) == 24 and filled[10] == (hour, 14) and filled[0] == (DAY, 0)


async def test_the_online_level_is_set_not_added_and_a_step_takes_its_highest(
    db_pool: asyncpg.Pool,
) -> None:
    t = DAY + timedelta(days=1, hours=3)
    async with db_pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO history (metric, bucket, value) VALUES"
            " ('online', $1, 40), ('online', $2, 55), ('online', $3, 50)",
            t,
            t + timedelta(minutes=5),
            t + timedelta(minutes=10),
        )
        first = await history.set_online(conn, t + timedelta(minutes=15), 3600)
        again = await history.set_online(conn, t + timedelta(minutes=15), 3600)
        devices_seen = await conn.fetchval(
            "SELECT count(*) FROM device_sessions WHERE last_inform > now() - interval '1 hour'"
        )
        hourly = await history.series(
            conn, ["online"], t, t + timedelta(hours=1), timedelta(hours=1)
        )
    assert first == again == devices_seen  # written twice (two hosts): the same level
    assert hourly["online"][t] == max(55, devices_seen)


async def test_a_recorder_flushes_what_its_counters_gained_and_keeps_it_when_it_cannot(
    db_pool: asyncpg.Pool, database_url: str
) -> None:
    metrics = Metrics()
    recorder = HistoryRecorder(db_pool, metrics, 60, online=False)
    now = DAY + timedelta(days=2, hours=8, minutes=1)
    for _ in range(3):
        metrics.session("completed")
    metrics.session("abandoned")
    metrics.session("overloaded")  # refused before it was a session: not served
    metrics.informed(["1 BOOT", "4 VALUE CHANGE"])
    metrics.connection_request("accepted")
    metrics.connection_request("timeout")
    metrics.job_finished("fault")
    assert totals(metrics)["sessions"] == 4
    await recorder.flush(now)
    metrics.session("completed")
    await recorder.flush(now)
    async with db_pool.acquire() as conn:
        got = await history.series(
            conn,
            list(rules.COUNTERS),
            now - timedelta(hours=1),
            now + timedelta(hours=1),
            rules.BUCKET,
        )
    bucket = rules.bucket_of(now)
    assert got["sessions"][bucket] == 5 and got["sessions_abandoned"][bucket] == 1
    assert got["boots"][bucket] == 1 and got["jobs_faulted"][bucket] == 1
    assert got["connection_requests"][bucket] == 2
    assert got["connection_requests_failed"][bucket] == 1

    # the database away: the counts stay owed and land with the next flush
    gone = await create_pool(database_url, min_size=1, max_size=1)
    broken = HistoryRecorder(gone, metrics, 60, online=False)
    broken.flushed = recorder.flushed
    await gone.close()
    metrics.session("completed")
    await broken.flush(now)
    assert broken.flushed["sessions"] == 5  # not moved on: the one session is still owed
    recorder.flushed = broken.flushed
    await recorder.flush(now)
    async with db_pool.acquire() as conn:
        got = await history.series(conn, ["sessions"], bucket, bucket + rules.BUCKET, rules.BUCKET)
    assert got["sessions"][bucket] == 6
