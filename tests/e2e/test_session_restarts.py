"""A CPE that restarts mid-session (power loss, a crash) and comes back with a new Inform.

The CPE here is tests/e2e/cpe_double.py: it loses power the way a real one does,
its connection dropped and its cookie gone with the RAM, so the new Inform comes
on a new connection that proves nothing but its credentials. TR-069 allows one
session per device, so while the old session waits on the CPE the new Inform
proves it dead: it is ended at once, its job given back without spending an
attempt. A request the ACS is working on right now proves the opposite (8005:
tests/e2e/test_cwmp_sessions.py, test_second_concurrent_session_is_refused_with_8005),
and only the device's own credentials may end its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.services.session_driver import SUPERSEDED
from acs.store import session_logs, tasks
from acs.store.ids import device_id
from acs.web.relay import Workers
from acs.web.server import Running, running_acs
from tests.e2e.conftest import StartAcs, cwmp_url, make_settings
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_cpe_trust import Stranger, digest, inform_body, nonce_of, per_device_credential

pytestmark = pytest.mark.db

UPTIME = {"parameterNames": ["Device.DeviceInfo.UpTime"]}


def dev_of(cpe: CpeDouble) -> str:
    return device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)


async def job_in_flight(cpe: CpeDouble, pool: asyncpg.Pool) -> tasks.Task:
    """A periodic session that has just been sent the device's queued job."""
    async with pool.acquire() as conn:
        job = await tasks.enqueue(conn, dev_of(cpe), "getParameterValues", UPTIME)
    reply = await cpe.post(cpe.inform_message(["2 PERIODIC"]))
    assert isinstance(reply.message, m.InformResponse), reply.body[:300]
    sent = await cpe.post(None)
    assert isinstance(sent.message, m.GetParameterValues), sent.body[:300]
    async with pool.acquire() as conn:
        running = await tasks.get_task(conn, job.id)
    assert running is not None and running.status == "running" and running.attempts == 1
    return running


async def session_log(pool: asyncpg.Pool, dev: str, session_id: str) -> session_logs.SessionSummary:
    async with pool.acquire() as conn:
        found = [
            s for s in await session_logs.list_sessions(conn, dev) if s.session_key == session_id
        ]
    assert len(found) == 1, found
    return found[0]


def live_session_of(acs: Running, dev: str) -> str:
    [sid] = [s.session_id for s in acs.cwmp.by_id.values() if s.device_id == dev]
    return sid


async def test_a_cpe_back_from_a_power_loss_is_served_at_once_and_its_job_keeps_its_attempts(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    # a long session timeout: only the new Inform can end the old session in time
    acs = await start_acs(
        cpe_auth="digest", cpe_username="cpe", cpe_password="s3cret", session_timeout_s=120
    )
    serial = unique_serial()
    cpe = CpeDouble(cwmp_url(acs), serial, digest=("cpe", "s3cret"))
    dev = dev_of(cpe)
    try:
        await cpe.session(["0 BOOTSTRAP"])
        job = await job_in_flight(cpe, db_pool)
        old = live_session_of(acs, dev)
    finally:
        await cpe.close()  # the power goes: connection and cookie lost, no answer sent
    back = CpeDouble(cwmp_url(acs), serial, digest=("cpe", "s3cret"))
    try:
        started = asyncio.get_running_loop().time()
        # no 8005: CpeDouble.session asserts the Inform got an InformResponse
        requests = await back.session(["1 BOOT"])
        assert asyncio.get_running_loop().time() - started < 10  # not after a timeout
    finally:
        await back.close()
    assert [r.rpc for r in requests] == ["GetParameterValues"]
    async with db_pool.acquire() as conn:
        done = await tasks.get_task(conn, job.id)
        device_row = await conn.fetchrow(
            "SELECT session_id FROM device_sessions WHERE device_id = $1", dev
        )
    assert done is not None and done.status == "done", (done.status, done.fault_string)
    assert done.attempts == 1 and done.restarts == 1  # the crash spent no attempt
    assert device_row["session_id"] is None  # the new session ended and let go
    log = await session_log(db_pool, dev, old)
    assert (log.outcome, log.reason) == ("abandoned", SUPERSEDED)
    assert acs.cwmp.by_id == {}


async def test_a_job_that_crashes_its_cpe_every_time_still_runs_out_of_attempts(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    """Restarts are free only ACS_MAX_TASK_ATTEMPTS times per job: then they cost an
    attempt as a timeout does, and the job faults instead of coming back forever."""
    acs = await start_acs(max_task_attempts=2, session_timeout_s=120)
    serial = unique_serial()
    cpe = CpeDouble(cwmp_url(acs), serial)
    dev = dev_of(cpe)
    async with db_pool.acquire() as conn:
        await cpe.session(["0 BOOTSTRAP"])
        job = await tasks.enqueue(conn, dev, "reboot", {})
    await cpe.close()
    seen: list[tuple[int, int]] = []
    for _ in range(6):  # each time: sent the job's Reboot, the CPE dies before answering
        cpe = CpeDouble(cwmp_url(acs), serial)
        try:
            reply = await cpe.post(cpe.inform_message(["1 BOOT"]))
            assert isinstance(reply.message, m.InformResponse), reply.body[:300]
            sent = await cpe.post(None)
        finally:
            await cpe.close()
        async with db_pool.acquire() as conn:
            state = await tasks.get_task(conn, job.id)
        assert state is not None
        if not isinstance(sent.message, m.Reboot):
            break  # the job is over: the session had nothing to send
        seen.append((state.attempts, state.restarts))
    # the first two restarts gave the attempt back, the next two spent one each
    assert seen == [(1, 0), (1, 1), (1, 2), (2, 2)], seen
    assert state.status == "fault" and state.fault_string is not None
    assert state.fault_string.startswith("timeout: the CPE did not answer in 2 sessions")
    assert SUPERSEDED in state.fault_string


async def test_only_the_devices_own_credential_ends_its_session(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    # a shared credential too: it authenticates, but it did not open the victim's session
    acs = await start_acs(cpe_auth="digest", cpe_username="cpe", cpe_password="s3cret")
    url = cwmp_url(acs)
    serial, other_serial = unique_serial(), unique_serial()
    user, pw = await per_device_credential(db_pool, serial)
    o_user, o_pw = await per_device_credential(db_pool, other_serial)
    victim = CpeDouble(url, serial, digest=(user, pw))
    impostor = CpeDouble(url, serial)  # claims the victim's DeviceId in its Inform
    stranger = Stranger()
    dev = dev_of(victim)
    try:
        await victim.session(["0 BOOTSTRAP"])
        job = await job_in_flight(victim, db_pool)
        old = live_session_of(acs, dev)
        body = inform_body(impostor, ("1 BOOT",))

        # no credentials: a challenge
        status, _, headers = await stranger.post(url, body)
        assert status == 401
        # a wrong password for the victim's username: refused
        wrong = digest(nonce_of(headers), user, "not-" + pw)
        status, _, headers = await stranger.post(url, body, Authorization=wrong)
        assert status == 401
        # another device's valid credential: that credential may not speak for it
        other = digest(nonce_of(headers), o_user, o_pw)
        status, reply, headers = await stranger.post(url, body, Authorization=other)
        assert status == 403 and b"8001" in reply, reply[:300]
        # the shared credential is valid for the device, but not the one that opened it
        nonce = await stranger.nonce(url, body)
        status, reply, _ = await stranger.post(
            url, body, Authorization=digest(nonce, "cpe", "s3cret")
        )
        assert status == 200 and b"8005" in reply, reply[:300]

        assert old in acs.cwmp.by_id  # none of them ended it
        end = await victim.post(victim.answer(m.GetParameterValues(UPTIME["parameterNames"])))
        assert end.status == 204, end.body[:300]
        async with db_pool.acquire() as conn:
            done = await tasks.get_task(conn, job.id)
        assert done is not None and done.status == "done" and done.attempts == 1
        assert (await session_log(db_pool, dev, old)).outcome == "completed"
    finally:
        await victim.close()
        await impostor.close()
        await stranger.close()


@contextlib.asynccontextmanager
async def two_workers(database_url: str) -> AsyncIterator[tuple[Running, Running]]:
    """Two workers of one ACS (the secret `acs serve --workers 2` hands out), each on a
    port of its own so that the test chooses where a request lands."""
    run_dir = Path(tempfile.mkdtemp(prefix="acs-restart-"))
    secret = secrets.token_bytes(32)
    contexts = []
    running: list[Running] = []
    try:
        for index in range(2):
            settings = make_settings(
                cpe_auth="digest", data_dir=run_dir, workers=2, session_timeout_s=120
            )
            ctx = running_acs(settings, database_url, Workers(index, 2, run_dir, secret))
            running.append(await ctx.__aenter__())
            contexts.append(ctx)
        yield running[0], running[1]
    finally:
        for ctx in reversed(contexts):
            await ctx.__aexit__(None, None, None)


async def test_a_restart_landing_on_the_other_worker_takes_over_through_the_owner(
    database_url: str, db_pool: asyncpg.Pool, unique_serial
) -> None:
    async with two_workers(database_url) as (w0, w1):
        serial = unique_serial()
        user, pw = await per_device_credential(db_pool, serial)
        cpe = CpeDouble(cwmp_url(w0), serial, digest=(user, pw))
        dev = dev_of(cpe)
        try:
            await cpe.session(["0 BOOTSTRAP"])
            job = await job_in_flight(cpe, db_pool)
            old = live_session_of(w0, dev)
            assert old.startswith("0.")
        finally:
            await cpe.close()
        back = CpeDouble(cwmp_url(w1), serial, digest=(user, pw))
        try:
            requests = await back.session(["1 BOOT"])
        finally:
            await back.close()
        assert [r.rpc for r in requests] == ["GetParameterValues"]
        assert old not in w0.cwmp.by_id  # its owner ended it
        async with db_pool.acquire() as conn:
            done = await tasks.get_task(conn, job.id)
        assert done is not None and done.status == "done" and done.attempts == 1
        assert done.session_id is not None and done.session_id.startswith("1.")  # ran at w1
        log = await session_log(db_pool, dev, old)
        assert (log.outcome, log.reason) == ("abandoned", SUPERSEDED)


async def test_a_concurrent_inform_at_the_other_worker_gets_8005_while_the_owner_is_busy(
    database_url: str, db_pool: asyncpg.Pool, unique_serial
) -> None:
    async with two_workers(database_url) as (w0, w1):
        serial = unique_serial()
        user, pw = await per_device_credential(db_pool, serial)
        cpe = CpeDouble(cwmp_url(w0), serial, digest=(user, pw))
        twin = CpeDouble(cwmp_url(w1), serial, digest=(user, pw))
        dev = dev_of(cpe)
        try:
            await cpe.session(["0 BOOTSTRAP"])
            job = await job_in_flight(cpe, db_pool)
            old = live_session_of(w0, dev)
            answer = cpe.answer(m.GetParameterValues(UPTIME["parameterNames"]))
            # the job's row held: recording the CPE's answer, worker 0 waits mid-request
            async with db_pool.acquire() as lock, lock.transaction():
                await lock.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", job.id)
                answering = asyncio.ensure_future(cpe.post(answer))
                for _ in range(100):
                    # not on ``lock``: in a transaction, pg_stat_activity is one snapshot
                    waiting = await db_pool.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE tasks%'"
                    )
                    if waiting and w0.cwmp.by_id[old].busy:
                        break
                    await asyncio.sleep(0.05)
                else:
                    answering.cancel()
                    raise AssertionError("worker 0 never got to the job's row")
                refused = await twin.post(twin.inform_message(["1 BOOT"]))
                assert isinstance(refused.message, m.Fault), refused.body[:300]
                assert refused.message.fault_code == 8005
                assert old in w0.cwmp.by_id
            end = await answering
            assert end.status == 204, end.body[:300]
            async with db_pool.acquire() as conn:
                done = await tasks.get_task(conn, job.id)
            assert done is not None and done.status == "done" and done.attempts == 1
            assert (await session_log(db_pool, dev, old)).outcome == "completed"
        finally:
            await cpe.close()
            await twin.close()
