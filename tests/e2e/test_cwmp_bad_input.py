"""Bad input at the CWMP endpoint: a 4xx or a CWMP fault with a reason, never a 500,
never a half-written device."""

from __future__ import annotations

import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.cwmp.soap import parse_envelope
from acs.store import devices, tasks
from acs.store.ids import device_id
from acs.web.server import Running
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.samples import INFORM_1_0

pytestmark = pytest.mark.db


def fault_of(body: bytes) -> m.Fault:
    env = parse_envelope(body)
    assert env is not None and isinstance(env.body, m.Fault), body[:400]
    return env.body


async def device_count(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM devices"))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<not-xml", "malformed XML"),
        (b"<?xml version='1.0'?><a><b></a>", "malformed XML"),
        (b"<Envelope/>", "without Body"),
        (b"<html><body>hi</body></html>", "not a SOAP envelope"),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>',
            "DOCTYPE",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b"<x>&xxe;</x>",
            "DOCTYPE",
        ),
    ],
    ids=["garbage", "unclosed", "no-body", "html", "billion-laughs", "xxe"],
)
async def test_hostile_or_broken_xml_gets_400_with_a_fault(
    acs: Running, db_pool: asyncpg.Pool, unique_serial, body: bytes, reason: str
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        before = await device_count(db_pool)
        reply = await cpe.post_raw(body)
        assert reply.status == 400
        fault = fault_of(reply.body)
        assert fault.fault_code == 8003 and reason in fault.fault_string
        assert b"root:" not in reply.body
        assert await device_count(db_pool) == before
    finally:
        await cpe.close()


async def test_body_over_the_limit_gets_413(start_acs: StartAcs, unique_serial) -> None:
    acs = await start_acs(max_body_bytes=64 * 1024)
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        big = INFORM_1_0.format(serial="X" * 100).encode() + b" " * (70 * 1024)
        assert (await cpe.post_raw(big)).status == 413

        # chunked, so the server cannot judge by Content-Length alone
        async def chunks():
            for _ in range(80):
                yield b" " * 1024

        async with cpe.http.post(cwmp_url(acs), data=chunks()) as resp:
            assert resp.status == 413
    finally:
        await cpe.close()


async def test_session_must_start_with_inform(acs: Running, unique_serial) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        reply = await cpe.post(None)
        assert reply.status == 400
        assert "must start with Inform" in fault_of(reply.body).fault_string
        reply = await cpe.post(m.GetParameterValuesResponse([]))
        assert reply.status == 400
        reply = await cpe.post(m.TransferComplete("k", m.FaultStruct(), None, None))
        assert reply.status == 400 and fault_of(reply.body).fault_code == 8003
    finally:
        await cpe.close()


async def test_inform_without_serial_is_refused(acs: Running, db_pool: asyncpg.Pool) -> None:
    cpe = CpeDouble(cwmp_url(acs), "ignored")
    try:
        before = await device_count(db_pool)
        inform = cpe.inform_message(["2 PERIODIC"])
        inform.device_id.serial_number = "  "
        reply = await cpe.post(inform)
        assert reply.status == 400
        assert "SerialNumber" in fault_of(reply.body).fault_string
        assert await device_count(db_pool) == before
    finally:
        await cpe.close()


async def test_unknown_and_misplaced_cpe_requests_get_8000(acs: Running, unique_serial) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        assert isinstance(
            (await cpe.post(cpe.inform_message(["2 PERIODIC"]))).message, m.InformResponse
        )
        unknown = (
            b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
            b'xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><soap:Header><cwmp:ID>9</cwmp:ID>'
            b"</soap:Header><soap:Body><cwmp:X_ACME_Hello><A>1</A></cwmp:X_ACME_Hello>"
            b"</soap:Body></soap:Envelope>"
        )
        reply = await cpe.post_raw(unknown)
        assert reply.status == 200
        fault = fault_of(reply.body)
        assert fault.fault_code == 8000 and "X_ACME_Hello" in fault.fault_string
        assert reply.envelope is not None and reply.envelope.cwmp_id == "9"
        # a CPE-side method sent by the CPE is no ACS method either
        reply = await cpe.post(m.Reboot("x"))
        assert fault_of(reply.body).fault_code == 8000
        # the session goes on normally afterwards
        gm = await cpe.post(m.GetRPCMethods())
        assert isinstance(gm.message, m.GetRPCMethodsResponse)
        assert "TransferComplete" in gm.message.method_list
        # then the ACS takes its turn: an unknown device is discovered first
        assert isinstance((await cpe.post(None)).message, m.GetParameterNames)
    finally:
        await cpe.close()


async def test_response_to_a_request_never_sent_ends_the_session(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev_id = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(
                conn, dev_id, "getParameterValues", {"parameterNames": ["Device.DeviceInfo.UpTime"]}
            )
        await cpe.post(cpe.inform_message(["2 PERIODIC"]))
        # a response before the ACS asked anything
        reply = await cpe.post(m.SetParameterValuesResponse(0))
        assert reply.status == 400
        assert "ACS sent no request" in fault_of(reply.body).fault_string
        # the session is gone; the job was never started and is still there
        assert (await cpe.post(None)).status == 400
        await cpe.post(cpe.inform_message(["2 PERIODIC"]))
        request = (await cpe.post(None)).message
        assert isinstance(request, m.GetParameterValues)
        # a response of the wrong kind
        reply = await cpe.post(m.SetParameterValuesResponse(0))
        assert reply.status == 400 and "does not answer" in fault_of(reply.body).fault_string
        async with db_pool.acquire() as conn:
            assert (await tasks.get_task(conn, job.id)).status == "pending"
            dev = await devices.get_device(conn, dev_id)
        assert dev is not None and dev.session_id is None
    finally:
        await cpe.close()


async def test_missing_cwmp_id_is_accepted_duplicate_is_refused(
    acs: Running, unique_serial
) -> None:
    """TR-069 A.2.2: the cwmp:ID header is optional; two of them make no sense."""
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        serial = cpe.identity.serial_number
        no_id = INFORM_1_0.format(serial=serial).replace(
            '<SOAP-ENV:Header><cwmp:ID SOAP-ENV:mustUnderstand="1">4711</cwmp:ID>'
            "</SOAP-ENV:Header>",
            "",
        )
        reply = await cpe.post_raw(no_id.encode())
        assert reply.status == 200 and isinstance(reply.message, m.InformResponse)
        assert reply.envelope is not None and reply.envelope.cwmp_id is None
        request = await cpe.post(None)
        assert request.status == 200 and isinstance(request.message, m.GetParameterNames)

        twice = INFORM_1_0.format(serial=serial).replace(
            "</SOAP-ENV:Header>", "<cwmp:ID>4712</cwmp:ID></SOAP-ENV:Header>"
        )
        reply = await cpe.post_raw(twice.encode())
        assert reply.status == 400
        assert "duplicate cwmp:ID" in fault_of(reply.body).fault_string
    finally:
        await cpe.close()


async def test_cpe_fault_is_recorded_against_the_job(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    dev_id = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    try:
        await cpe.session(["0 BOOTSTRAP"])
        async with db_pool.acquire() as conn:
            job = await tasks.enqueue(
                conn, dev_id, "getParameterValues", {"parameterNames": ["Device.NoSuchThing."]}
            )
            bad_args = await tasks.enqueue(conn, dev_id, "addObject", {"objectName": "no-dot"})
        await cpe.session(["2 PERIODIC"])
        async with db_pool.acquire() as conn:
            faulted = await tasks.get_task(conn, job.id)
            refused = await tasks.get_task(conn, bad_args.id)
    finally:
        await cpe.close()
    assert faulted.status == "fault" and faulted.fault_code == 9005
    assert faulted.fault_string
    assert refused.status == "fault" and refused.fault_code == 8003
    assert "objectName" in refused.fault_string
