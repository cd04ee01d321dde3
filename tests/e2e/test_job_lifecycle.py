"""Jobs over several sessions: transient faults back off, transfers time out."""

from __future__ import annotations

import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.store import tasks
from acs.store.ids import device_id
from acs.web.server import expire_transfers
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble

pytestmark = pytest.mark.db


async def test_transient_cpe_fault_retries_with_backoff_then_faults(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(task_retry_base_s=0.0, max_task_attempts=2)
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)

    def busy(request: m.Message) -> m.Message:
        if isinstance(request, m.Reboot):
            return m.Fault(9002, "Internal error")
        return cpe.answer(request)

    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(conn, dev, "reboot", {})
        await cpe.session(["2 PERIODIC"], answer=busy)
        async with db_pool.acquire() as conn:
            after_one = await tasks.get_task(conn, job.id)
        assert after_one.status == "pending" and after_one.attempts == 1
        assert after_one.fault_string.startswith("9002")
        await cpe.session(["2 PERIODIC"], answer=busy)
        async with db_pool.acquire() as conn:
            after_two = await tasks.get_task(conn, job.id)
        assert after_two.status == "fault" and after_two.fault_code == 9002
        assert after_two.attempts == 2
    finally:
        await cpe.close()


async def test_backoff_keeps_a_deferred_job_out_of_the_next_session(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(task_retry_base_s=600.0)
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)

    def busy(request: m.Message) -> m.Message:
        return (
            m.Fault(9004, "Resources exceeded")
            if isinstance(request, m.Reboot)
            else (cpe.answer(request))
        )

    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            await tasks.enqueue(conn, dev, "reboot", {})
        assert [r.rpc for r in await cpe.session(["2 PERIODIC"], answer=busy)] == ["Reboot"]
        assert await cpe.session(["2 PERIODIC"]) == []  # not before 600 s
    finally:
        await cpe.close()


async def test_transfer_without_transfer_complete_times_out(
    acs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)

    def accept(request: m.Message) -> m.Message:
        return (
            m.DownloadResponse(status=1)
            if isinstance(request, m.Download)
            else (cpe.answer(request))
        )

    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(conn, dev, "download", {"url": "http://127.0.0.1:9/fw"})
        await cpe.session(["2 PERIODIC"], answer=accept)
        # a later session of the device does not requeue or close the transfer
        await cpe.session(["2 PERIODIC"])
        async with db_pool.acquire() as conn:
            assert (await tasks.get_task(conn, job.id)).status == "running"
        await expire_transfers(db_pool, 3600)
        async with db_pool.acquire() as conn:
            assert (await tasks.get_task(conn, job.id)).status == "running"
        await expire_transfers(db_pool, 0)
        async with db_pool.acquire() as conn:
            done = await tasks.get_task(conn, job.id)
        assert done.status == "fault" and done.fault_string.startswith("timeout")
    finally:
        await cpe.close()


async def test_job_whose_cpe_keeps_vanishing_faults_after_the_attempt_limit(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    import asyncio

    acs = await start_acs(session_timeout_s=0.5, max_task_attempts=2)
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(conn, dev, "reboot", {})
        for attempt in (1, 2):
            await cpe.post(cpe.inform_message(["2 PERIODIC"]))
            assert isinstance((await cpe.post(None)).message, m.Reboot)
            for _ in range(60):  # never answer: the ACS reaps the session
                await asyncio.sleep(0.1)
                if not acs.cwmp.by_id:
                    break
            async with db_pool.acquire() as conn:
                state = await tasks.get_task(conn, job.id)
            assert state.attempts == attempt
        assert state.status == "fault" and state.fault_code is None
        assert state.fault_string.startswith("timeout")
    finally:
        await cpe.close()
