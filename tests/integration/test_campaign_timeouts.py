"""A campaign's verify timeout against the real store: it must not turn a device the
campaign did upgrade into a failure, or into "skipped: already runs the target"
(the flake of tests/e2e/test_survival.py's kill test, reproduced here exactly)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import asyncpg
import pytest

from acs.services import campaigns, rollout
from acs.store import campaigns as store
from acs.store import tasks as task_store

pytestmark = pytest.mark.db


async def device(conn: asyncpg.Connection, serial: str, version: str) -> str:
    dev_id = f"ACDE48-CTO-{serial}"
    await conn.execute(
        "INSERT INTO devices (id, oui, product_class, serial_number, manufacturer,"
        " software_version, hardware_version) VALUES ($1, 'ACDE48', 'CTO', $2, 'Acme', $3, 'HW1')",
        dev_id,
        serial,
        version,
    )
    return dev_id


async def running_campaign(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> store.Campaign:
    camp = await store.create(
        conn,
        {
            "name": unique_serial("cto-"),
            "filter": "",
            "channel": "stable",
            "stages": [{"size": "100%"}],
            "verify_timeout_s": 15.0,
            "max_attempts": 3,
        },
    )
    running = await store.update(conn, camp.id, status="running")
    assert running is not None
    return running


async def download_sent(
    conn: asyncpg.Connection, camp: store.Campaign, dev_id: str, state: str, ago_s: float
) -> task_store.Task:
    """The member's Download accepted by the CPE ``ago_s`` seconds ago, awaiting its
    TransferComplete (or, for ``verifying``, with it received)."""
    key = f"campaign-{camp.id}-up-1"
    task = await task_store.enqueue(conn, dev_id, "download", {"fileName": "x", "commandKey": key})
    await task_store.mark_running(conn, task.id, "a-session")
    await task_store.await_transfer(conn, task.id, key, {"awaitingTransferComplete": True})
    if state == "verifying":
        await task_store.mark_done(conn, task.id, {"transferComplete": {"faultCode": 0}})
    await store.add_members(
        conn, [(camp.id, dev_id, 0, "pending", None, "1.0.0", "2.0.0", None, None)]
    )
    await store.transition(
        conn,
        camp.id,
        dev_id,
        ["pending"],
        state,
        task_id=task.id,
        attempts=1,
        started_at=rollout.utcnow() - timedelta(seconds=ago_s),
    )
    got = await task_store.get_task(conn, task.id)
    assert got is not None
    return got


async def test_a_timeout_racing_the_session_that_verified_the_device_is_a_success(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    """TransferComplete received and the device on the target version (its session
    not over yet, so not settled): the tick's timeout must see it, not fail it as
    "never came back on 2.0.0"."""
    camp = await running_campaign(conn, unique_serial)
    dev_id = await device(conn, unique_serial("V"), "2.0.0")
    await download_sent(conn, camp, dev_id, "verifying", ago_s=60)

    await campaigns.tick_campaign(conn, camp.id)

    member = await store.member(conn, camp.id, dev_id)
    assert member is not None
    assert (member.state, member.code) == ("succeeded", None), member.reason
    assert "reports 2.0.0" in (member.reason or "")


async def test_a_transfer_complete_after_the_timeout_verifies_the_device_once(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    """The timeout gave up on a transfer the CPE kept going; its TransferComplete
    arrives after all, with the device on the image: the job is closed as done and
    the device succeeds (not skipped as "already runs 2.0.0"), without a second
    Download."""
    camp = await running_campaign(conn, unique_serial)
    dev_id = await device(conn, unique_serial("L"), "1.0.0")
    task = await download_sent(conn, camp, dev_id, "downloading", ago_s=60)

    await campaigns.tick_campaign(conn, camp.id)
    member = await store.member(conn, camp.id, dev_id)
    assert member is not None and member.state == "failed", member
    assert member.code == "never_came_back"
    given_up = await task_store.get_task(conn, task.id)
    assert given_up is not None and given_up.status == "fault"

    # the CPE flashed and comes back: the Inform's version, then its TransferComplete
    await conn.execute("UPDATE devices SET software_version = '2.0.0' WHERE id = $1", dev_id)
    outcome = {"commandKey": task.command_key, "faultCode": 0}
    assert task.command_key is not None
    assert await rollout.late_transfer_complete(conn, dev_id, task.command_key, outcome)
    closed = await task_store.get_task(conn, task.id)
    assert closed is not None
    assert (closed.status, closed.fault_string) == ("done", None)
    assert closed.result is not None and closed.result["transferComplete"] == outcome
    assert "awaitingTransferComplete" not in closed.result
    await rollout.settle_device(conn, dev_id)  # the session's end

    member = await store.member(conn, camp.id, dev_id)
    assert member is not None
    assert (member.state, member.attempts, member.task_id) == ("succeeded", 1, task.id)
    # the same report again (a CPE retrying it) changes nothing
    assert not await rollout.late_transfer_complete(conn, dev_id, task.command_key, outcome)
    assert await rollout.queue_download(conn, dev_id) is None  # no second Download
    downloads = await conn.fetchval(
        "SELECT count(*) FROM tasks WHERE device_id = $1 AND name = 'download'", dev_id
    )
    assert downloads == 1


async def test_a_late_transfer_complete_of_a_superseded_attempt_moves_nothing(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    """Attempt 2's Download already went out: attempt 1's late report closes its own
    job only; the member waits for attempt 2."""
    camp = await running_campaign(conn, unique_serial)
    dev_id = await device(conn, unique_serial("S"), "1.0.0")
    first = await download_sent(conn, camp, dev_id, "downloading", ago_s=60)
    await task_store.give_up(conn, first.id, "timed out")
    second = await task_store.enqueue(conn, dev_id, "download", {"fileName": "x"})
    await conn.execute(
        "UPDATE campaign_devices SET task_id = $3, attempts = 2"
        " WHERE campaign_id = $1 AND device_id = $2",
        camp.id,
        dev_id,
        second.id,
    )
    assert first.command_key is not None
    outcome = {"commandKey": first.command_key, "faultCode": 0}
    assert not await rollout.late_transfer_complete(conn, dev_id, first.command_key, outcome)
    member = await store.member(conn, camp.id, dev_id)
    assert member is not None and (member.state, member.task_id) == ("downloading", second.id)


async def test_the_timeout_counts_from_when_the_judging_host_began_to_listen(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    """A Download sent 60 s ago under a 15 s timeout is overdue, unless the host
    judging it has been listening for less than 15 s (it was down, or just took over)."""
    camp = await running_campaign(conn, unique_serial)
    dev_id = await device(conn, unique_serial("W"), "1.0.0")
    await download_sent(conn, camp, dev_id, "downloading", ago_s=60)
    now = rollout.utcnow()
    assert [m.device_id for m in await store.overdue(conn, camp.id, 15.0)] == [dev_id]
    assert [
        m.device_id for m in await store.overdue(conn, camp.id, 15.0, now - timedelta(seconds=30))
    ] == [dev_id]
    assert await store.overdue(conn, camp.id, 15.0, now - timedelta(seconds=5)) == []


async def test_a_transfer_complete_between_the_ticks_reads_and_writes_stands(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    """The tick read the member as downloading; the session's TransferComplete then
    closed the job and moved it to verifying before the timeout's writes: the
    timeout must not overwrite the done job with "dropped the Download"."""
    camp = await running_campaign(conn, unique_serial)
    dev_id = await device(conn, unique_serial("R"), "1.0.0")
    task = await download_sent(conn, camp, dev_id, "downloading", ago_s=60)
    [stale] = await store.overdue(conn, camp.id, 15.0)
    # the session: the Inform's new version, then TransferComplete closes the job
    await conn.execute("UPDATE devices SET software_version = '2.0.0' WHERE id = $1", dev_id)
    await task_store.mark_done(conn, task.id, {"transferComplete": {"faultCode": 0}})
    await rollout.transfer_complete(conn, dev_id, (await task_store.get_task(conn, task.id)))  # type: ignore[arg-type]

    async with conn.transaction():
        await rollout.time_out(conn, camp, stale)

    member = await store.member(conn, camp.id, dev_id)
    assert member is not None and member.state == "succeeded", member
    job = await task_store.get_task(conn, task.id)
    assert job is not None and job.status == "done" and job.fault_string is None
    assert not await task_store.give_up(conn, task.id, "too late")  # a closed job stays closed
