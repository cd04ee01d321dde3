"""Rollback that misses no one (issue 18 item 4), against the real store: what
starting a rollback does to each member state, and the operator controls of a
rolling-back campaign."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from acs.services import campaigns, rollout
from acs.store import campaigns as store
from acs.store import tasks as task_store

pytestmark = pytest.mark.db


async def device(conn: asyncpg.Connection, serial: str, version: str) -> str:
    dev_id = f"ACDE48-RBR-{serial}"
    await conn.execute(
        "INSERT INTO devices (id, oui, product_class, serial_number, manufacturer,"
        " software_version, hardware_version) VALUES ($1, 'ACDE48', 'RBR', $2, 'Acme', $3, 'HW1')",
        dev_id,
        serial,
        version,
    )
    return dev_id


async def put(conn: asyncpg.Connection, cid: int, dev_id: str, state: str, **values: Any) -> None:
    await store.add_members(conn, [(cid, dev_id, 0, "pending", None, "1.0.0", "2.0.0", None, None)])
    if state != "pending" or values:
        await store.transition(conn, cid, dev_id, ["pending"], state, **values)


async def test_starting_a_rollback_leaves_no_device_on_the_image(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    camp = await store.create(
        conn,
        {
            "name": unique_serial("rbr-"),
            "filter": "",
            "channel": "stable",
            "stages": [{"size": "100%", "failureThreshold": "1", "onFailure": "pause"}],
            "rollback": True,
        },
    )
    camp = await store.update(conn, camp.id, status="running")
    assert camp is not None
    ids = {
        name: await device(conn, unique_serial("R"), "2.0.0" if name == "done" else "1.0.0")
        for name in ("done", "unknown", "pending", "queued", "sent", "failed")
    }
    await put(conn, camp.id, ids["done"], "succeeded")
    await put(conn, camp.id, ids["unknown"], "succeeded", from_version=None)
    await put(conn, camp.id, ids["pending"], "pending")
    queued = await task_store.enqueue(conn, ids["queued"], "download", {"fileName": "x"})
    await put(conn, camp.id, ids["queued"], "downloading", task_id=queued.id)
    sent = await task_store.enqueue(conn, ids["sent"], "download", {"fileName": "x"})
    await conn.execute("UPDATE tasks SET status = 'done' WHERE id = $1", sent.id)
    await put(conn, camp.id, ids["sent"], "downloading", task_id=sent.id)
    await put(conn, camp.id, ids["failed"], "failed", reason="download failed: 9018")

    # the tick crosses the failure threshold: pause, and roll back
    await campaigns.tick_campaign(conn, camp.id)
    after = await store.get(conn, camp.id)
    assert after is not None and after.status == "paused"

    def state(name: str) -> tuple[str, bool, str | None]:
        m = members[ids[name]]
        return m.state, m.rollback, m.code

    members = {m.device_id: m for m in await store.list_members(conn, camp.id)}
    assert state("done") == ("pending", True, None)
    assert members[ids["done"]].target_version == "1.0.0"
    assert state("unknown") == ("failed", True, "rollback_impossible")
    assert "unknown" in (members[ids["unknown"]].reason or "")
    # nothing newly starts the image: pending skipped, a queued Download withdrawn
    assert state("pending") == ("skipped", False, "rollback_started")
    assert state("queued") == ("skipped", False, "rollback_started")
    assert (await task_store.get_task(conn, queued.id)).status == "cancelled"  # type: ignore[union-attr]
    # a Download already sent cannot be stopped: it is caught when it finishes
    assert state("sent") == ("downloading", False, None)
    m = members[ids["sent"]]
    await rollout.succeed(conn, after, m, "2.0.0")
    caught = await store.member(conn, camp.id, ids["sent"])
    assert caught is not None
    assert (caught.state, caught.rollback) == ("pending", True)
    assert (caught.from_version, caught.target_version) == ("2.0.0", "1.0.0")
    assert "after the campaign started rolling back" in (caught.reason or "")

    # resume and approve would install the image being rolled back: refused, saying so
    for action in (campaigns.resume, campaigns.approve):
        with pytest.raises(campaigns.ControlError, match="rolling back"):
            await action(conn, camp.id, "alice")

    # a failed rollback is retried by retry-failed; the failed upgrade is not
    done = await store.member(conn, camp.id, ids["done"])
    assert done is not None
    await store.transition(conn, camp.id, ids["done"], ["pending"], "downloading")
    done = await store.member(conn, camp.id, ids["done"])
    assert done is not None
    await rollout.fail(conn, after, done, 9018, "download failed: corrupt", "download_fault")
    assert (await store.member(conn, camp.id, ids["done"])).state == "failed"  # type: ignore[union-attr]
    assert await campaigns.retry_failed(conn, camp.id, "alice") == 1
    again = await store.member(conn, camp.id, ids["done"])
    assert again is not None and (again.state, again.rollback) == ("pending", True)
    assert (await store.member(conn, camp.id, ids["failed"])).state == "failed"  # type: ignore[union-attr]
    # the unknown version cannot be retried either: there is nothing to go back to
    assert (await store.member(conn, camp.id, ids["unknown"])).state == "failed"  # type: ignore[union-attr]


async def test_an_upgrade_failing_after_the_rollback_started_is_not_retried(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    camp = await store.create(
        conn,
        {
            "name": unique_serial("rbn-"),
            "channel": "stable",
            "filter": "",
            "stages": [{"size": "100%"}],
        },
    )
    camp = await store.update(conn, camp.id, status="aborted", rollback=True)
    assert camp is not None
    dev_id = await device(conn, unique_serial("R"), "1.0.0")
    await put(conn, camp.id, dev_id, "downloading", attempts=1)
    await campaigns.start_rollback(conn, camp)
    m = await store.member(conn, camp.id, dev_id)
    assert m is not None
    # 9010 is transient: outside a rollback it would go back to pending
    await rollout.fail(conn, camp, m, 9010, "download failed: 9010", "download_fault")
    m = await store.member(conn, camp.id, dev_id)
    assert m is not None and m.state == "failed"
    assert "not retried: the campaign is rolling back" in (m.reason or "")
