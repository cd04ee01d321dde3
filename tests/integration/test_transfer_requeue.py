"""A TransferComplete finds its job even when the session that sent it died."""

from __future__ import annotations

import asyncpg
import pytest

from acs.store import tasks
from tests.integration.test_store import new_device

pytestmark = pytest.mark.db


async def test_transfer_complete_closes_a_job_requeued_after_a_dead_session(
    conn: asyncpg.Connection, unique_serial
) -> None:
    dev = await new_device(conn, unique_serial)
    by_key = await tasks.enqueue(conn, dev, "download", {"url": "http://f/a", "commandKey": "k1"})
    by_id = await tasks.enqueue(conn, dev, "upload", {"url": "http://f/b"})
    never_sent = await tasks.enqueue(
        conn, dev, "download", {"url": "http://f/c", "commandKey": "k3"}
    )
    for job in (by_key, by_id):
        await tasks.mark_running(conn, job.id, "dead-session")
    # the next session of the device puts them back in the queue, attempts kept
    assert await tasks.requeue_running(conn, dev) == 2
    async with conn.transaction():
        found = await tasks.find_awaiting_transfer(conn, dev, "k1")
    assert found is not None and found.id == by_key.id and found.status == "pending"
    async with conn.transaction():
        found = await tasks.find_awaiting_transfer(conn, dev, f"task-{by_id.id}")
    assert found is not None and found.id == by_id.id
    # a job no session ever took cannot have a transfer on the CPE
    async with conn.transaction():
        assert await tasks.find_awaiting_transfer(conn, dev, "k3") is None
    assert never_sent.attempts == 0
