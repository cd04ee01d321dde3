"""bench.plans and bench.wal stay runnable, and say what docs/scaling.md quotes them for:
a periodic session's statements all find their rows by one device id, an operator's
search does not; a session writes WAL, more right after a checkpoint."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench import plans, wal

pytestmark = pytest.mark.db

PINNED = [
    "Update on devices d  (cost=0.29..8.31 rows=0 width=0)",
    "  ->  Index Scan using devices_pkey on devices d  (cost=0.29..8.31 rows=1 width=46)",
    "        Index Cond: (id = 'ACDE48-HGW-X1'::text)",
    "  ->  Index Only Scan using tasks_unique_pending_idx on tasks p_1  (cost=0.12..8.14 rows=1)",
    "        Index Cond: ((device_id = t.device_id) AND (unique_key = t.unique_key))",
]
FAN_OUT = [
    "Aggregate  (cost=3244.77..3244.78 rows=1 width=8)",
    "  ->  Bitmap Heap Scan on device_parameters dp  (cost=268.77..2942.02 rows=100 width=32)",
    "        Recheck Cond: (device_parameter_keys(tree) @> '{Device.X}'::text[])",
    "  ->  Index Only Scan using devices_pkey on devices d  (cost=0.29..3.02 rows=1 width=24)",
    "        Index Cond: (id = dp.device_id)",
]


def test_a_plan_is_one_device_only_when_every_device_scan_is_pinned_or_co_located() -> None:
    plans.DEVICE_TABLES.update({"devices", "tasks", "device_parameters"})
    assert plans.by_device(PINNED)
    assert not plans.by_device(FAN_OUT)  # the join is co-located, the GIN scan is everywhere
    joined_only = [line for line in PINNED if "'ACDE48" not in line and "devices_pkey" not in line]
    assert not plans.by_device(joined_only)  # a co-located join alone pins nothing
    assert plans.by_device(["Seq Scan on audit_log  (cost=0.00..12.40 rows=240 width=14)"])
    assert not plans.by_device(["Seq Scan on tasks t  (cost=0.00..11.90 rows=190 width=32)"])


def test_plans_of_a_real_acs_split_sessions_from_searches(database_url: str) -> None:
    statements = asyncio.run(plans.run(database_url, 1, skip_reseal=False))
    periodic = [s for s in statements if s.phase == "periodic session"]
    informs = [
        s for s in periodic if "UPDATE devices d" in s.query and "FROM device_parameters" in s.query
    ]
    assert informs, [plans.summary(s.query) for s in periodic]
    for s in periodic:
        assert s.plan and not s.plan[0].startswith("(not explained"), s.plan
        assert plans.by_device(s.plan), (s.query, s.plan)
    searches = [
        s for s in statements if s.phase == "operator API" and "device_parameter_keys" in s.query
    ]
    assert searches and not any(plans.by_device(s.plan) for s in searches)
    # the recorder is gone: asyncpg's methods are asyncpg's again
    assert plans.asyncpg.connection.Connection.fetch.__qualname__ == "Connection.fetch"


def test_wal_per_session_on_a_private_server(capsys: pytest.CaptureFixture[str]) -> None:
    wal.main(["--devices", "2"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    first, again = result["after_checkpoint"], result["same_cycle"]
    assert first["sessions"] == 2 and again["sessions"] == 2
    assert first["wal_bytes_per_session"] > 0 and again["wal_bytes_per_session"] > 0
    # the first write of a page after a checkpoint carries its full image
    assert first["full_page_images_per_session"] >= 1
