"""CPE authentication towards the ACS: Basic, Digest, shared and per-device credentials."""

from __future__ import annotations

import logging

import aiohttp
import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.store import credentials
from acs.store.ids import device_id
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble

pytestmark = pytest.mark.db


async def test_digest_with_the_shared_credential(start_acs: StartAcs, unique_serial) -> None:
    acs = await start_acs(cpe_auth="digest", cpe_username="cpe", cpe_password="s3cret")
    cpe = CpeDouble(cwmp_url(acs), unique_serial(), digest=("cpe", "s3cret"))
    try:
        requests = await cpe.session(["0 BOOTSTRAP"])
        assert isinstance(requests[0], m.GetParameterNames)
    finally:
        await cpe.close()


async def test_no_credentials_get_a_challenge_and_nothing_else(
    start_acs: StartAcs, unique_serial, caplog: pytest.LogCaptureFixture
) -> None:
    acs = await start_acs(cpe_auth="any", cpe_username="cpe", cpe_password="s3cret")
    cpe = CpeDouble(cwmp_url(acs), unique_serial())
    try:
        with caplog.at_level(logging.WARNING, logger="acs.cwmp"):
            reply = await cpe.post(cpe.inform_message(["2 PERIODIC"]))
        assert reply.status == 401
        async with cpe.http.post(cwmp_url(acs), data=b"") as resp:
            assert resp.status in (400, 401)
        challenges = reply.headers.get("WWW-Authenticate", "")
        assert "Digest" in challenges or "Basic" in challenges
        # the first leg of a handshake is normal, not a failure to log
        assert "cpe_auth_failed" not in caplog.text
    finally:
        await cpe.close()


async def test_wrong_password_is_refused_and_logged(
    start_acs: StartAcs, unique_serial, caplog: pytest.LogCaptureFixture
) -> None:
    acs = await start_acs(cpe_auth="any", cpe_username="cpe", cpe_password="s3cret")
    for kwargs in ({"digest": ("cpe", "nope")}, {"auth": aiohttp.BasicAuth("cpe", "nope")}):
        cpe = CpeDouble(cwmp_url(acs), unique_serial(), **kwargs)  # type: ignore[arg-type]
        try:
            with caplog.at_level(logging.WARNING, logger="acs.cwmp"):
                reply = await cpe.post(cpe.inform_message(["2 PERIODIC"]))
            assert reply.status == 401
        finally:
            await cpe.close()
    failures = [r.getMessage() for r in caplog.records if "cpe_auth_failed" in r.getMessage()]
    assert len(failures) >= 2
    assert all("username=cpe" in f and "device=" in f for f in failures)
    assert any("wrong password" in f for f in failures)


async def test_basic_is_refused_when_only_digest_is_allowed(
    start_acs: StartAcs, unique_serial
) -> None:
    acs = await start_acs(cpe_auth="digest", cpe_username="cpe", cpe_password="s3cret")
    cpe = CpeDouble(cwmp_url(acs), unique_serial(), auth=aiohttp.BasicAuth("cpe", "s3cret"))
    try:
        reply = await cpe.post(cpe.inform_message(["2 PERIODIC"]))
        assert reply.status == 401 and "Digest" in reply.headers["WWW-Authenticate"]
    finally:
        await cpe.close()


async def test_per_device_credentials_are_bound_to_their_device(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(cpe_auth="any")
    mine, other = unique_serial(), unique_serial()
    async with db_pool.acquire() as conn:
        await credentials.set_credential(
            conn, mine, "pw-" + mine, "acs", device_id("ACDE48", "HGW", mine)
        )
    good = CpeDouble(cwmp_url(acs), mine, auth=aiohttp.BasicAuth(mine, "pw-" + mine))
    thief = CpeDouble(cwmp_url(acs), other, digest=(mine, "pw-" + mine))
    try:
        assert isinstance(
            (await good.post(good.inform_message(["1 BOOT"]))).message, m.InformResponse
        )
        reply = await thief.post(thief.inform_message(["1 BOOT"]))
        assert reply.status == 403
        assert isinstance(reply.message, m.Fault) and reply.message.fault_code == 8001
    finally:
        await good.close()
        await thief.close()


async def test_later_posts_of_a_session_need_no_new_handshake(
    start_acs: StartAcs, unique_serial
) -> None:
    """CPEs authenticate the Inform; the session cookie carries the rest."""
    acs = await start_acs(cpe_auth="basic", cpe_username="cpe", cpe_password="s3cret")
    cpe = CpeDouble(cwmp_url(acs), unique_serial(), auth=aiohttp.BasicAuth("cpe", "s3cret"))
    try:
        assert (await cpe.post(cpe.inform_message(["2 PERIODIC"]))).status == 200
        cookies = {c.key: c.value for c in cpe.http.cookie_jar}
        async with aiohttp.ClientSession(cookies=cookies) as bare:
            async with bare.post(cwmp_url(acs), data=b"") as resp:
                assert resp.status == 200  # the ACS's first request, no 401
    finally:
        await cpe.close()
