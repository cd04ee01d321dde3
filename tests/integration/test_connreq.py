"""Connection requests against real HTTP servers on 127.0.0.1 acting as CPEs.

The CPE side checks credentials with acs.web.cpe_auth (the ACS's own server
side of Digest and Basic), an implementation independent of the requester's
client; known-answer vectors from the RFCs pin the digest arithmetic.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from acs.connreq.http import (
    ConnectionRequester,
    check_url,
    digest_authorization,
    parse_challenges,
)
from acs.web.cpe_auth import CpeAuthenticator, Credential, ha1_of

USER, PASSWORD, REALM = "cpe-user", "s3cret:with colon", "cpe"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Cpe:
    """A CPE's connection-request endpoint that records what it saw."""

    def __init__(
        self,
        mode: str = "digest",
        *,
        status: int = 200,
        delay: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        cred = Credential(USER, ha1_of(USER, REALM, PASSWORD))

        async def lookup(name: str) -> Credential | None:
            return cred if name == USER else None

        self.auth = CpeAuthenticator(mode, REALM, lookup, clock=clock)
        self.status = status
        self.delay = delay
        self.authorizations: list[str | None] = []
        self.accepted = 0
        self.running = 0
        self.max_running = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        self.authorizations.append(header)
        verdict = await self.auth.check(request.method, header, request.raw_path)
        if not verdict.ok:
            resp = web.Response(status=401)
            for challenge in verdict.challenge:
                resp.headers.add("WWW-Authenticate", challenge)
            return resp
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        self.accepted += 1
        return web.Response(status=self.status)


async def serve(routes: dict[str, Handler]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture(loop_scope="session")
async def cpe_server() -> AsyncIterator[Callable[..., Awaitable[tuple[Cpe, str]]]]:
    """Start CPEs on demand; all stopped at the end of the test."""
    runners: list[web.AppRunner] = []

    async def start(*args: object, **kwargs: object) -> tuple[Cpe, str]:
        cpe = Cpe(*args, **kwargs)  # type: ignore[arg-type]
        runner, base = await serve({"/cr": cpe.handle})
        runners.append(runner)
        return cpe, f"{base}/cr"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def requester() -> AsyncIterator[ConnectionRequester]:
    r = ConnectionRequester(timeout_s=1.0)
    yield r
    await r.close()


# ----------------------------------------------------------------- digest arithmetic


def test_digest_matches_rfc_2617_example() -> None:
    challenge = {
        "realm": "testrealm@host.com",
        "qop": "auth,auth-int",
        "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
    }
    header = digest_authorization(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b"
    )
    # auth chosen over auth-int, and the RFC's published response
    assert "qop=auth," in header
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_digest_matches_rfc_7616_examples(algorithm: str, response: str) -> None:
    challenge = {
        "realm": "http-auth@example.org",
        "qop": "auth, auth-int",
        "algorithm": algorithm,
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    }
    header = digest_authorization(
        challenge,
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle of Life",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert f'response="{response}"' in header


def test_digest_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="algorithm 'SHA-512-256'"):
        digest_authorization(
            {"realm": "r", "nonce": "n", "algorithm": "SHA-512-256"}, "GET", "/", "u", "p"
        )
    with pytest.raises(ValueError, match="no realm or nonce"):
        digest_authorization({"realm": "r"}, "GET", "/", "u", "p")


def test_challenges_from_several_headers_and_one_header_with_several() -> None:
    found = parse_challenges(
        ['Basic realm="a, b"', 'Digest realm="cpe", nonce="x\\"y", qop="auth", Basic realm=z']
    )
    assert [(c.scheme, c.params) for c in found] == [
        ("basic", {"realm": "a, b"}),
        ("digest", {"realm": "cpe", "nonce": 'x"y', "qop": "auth"}),
        ("basic", {"realm": "z"}),
    ]


def test_urls_that_are_refused_say_why() -> None:
    assert "not an http(s) URL" in str(check_url("ftp://127.0.0.1/cr"))
    assert "not an http(s) URL" in str(check_url("/cr"))
    assert "has no host" in str(check_url("http:///cr"))
    assert "credentials in the URL" in str(check_url("http://u:p@127.0.0.1/cr"))
    assert "not a valid URL" in str(check_url("http://127.0.0.1:99999/cr"))
    assert str(check_url("https://10.0.0.1:7547/cr#x")) == "https://10.0.0.1:7547/cr"


# ----------------------------------------------------------------- against live CPEs


@pytest.mark.parametrize("status", [200, 204])
async def test_digest_accepted(cpe_server, requester: ConnectionRequester, status: int) -> None:
    cpe, url = await cpe_server(status=status)
    r = await requester.send(url, USER, PASSWORD)
    assert (r.ok, r.status, r.reason) == (True, status, "accepted")
    assert cpe.accepted == 1
    # first leg without credentials, second with a Digest answer; never Basic
    assert cpe.authorizations[0] is None
    assert cpe.authorizations[1] is not None and cpe.authorizations[1].startswith("Digest ")
    assert 0 <= r.elapsed_s < 1.0


async def test_digest_without_qop_rfc_2069(cpe_server, requester: ConnectionRequester) -> None:
    """Old CPE stacks send a challenge without qop; the answer must not invent one."""
    cpe, url = await cpe_server()
    cpe.auth.allow_no_qop = True

    async def legacy(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        cpe.authorizations.append(header)
        verdict = await cpe.auth.check("GET", header, request.raw_path)
        if verdict.ok:
            return web.Response(status=204)
        nonce = cpe.auth.make_nonce()
        return web.Response(
            status=401, headers={"WWW-Authenticate": f'Digest realm="{REALM}", nonce="{nonce}"'}
        )

    runner, base = await serve({"/cr": legacy})
    try:
        r = await requester.send(f"{base}/cr", USER, PASSWORD)
        assert r.ok and r.status == 204, r.reason
        assert "qop=" not in (cpe.authorizations[-1] or "")
    finally:
        await runner.cleanup()


async def test_wrong_password(cpe_server, requester: ConnectionRequester) -> None:
    cpe, url = await cpe_server()
    r = await requester.send(url, USER, "wrong")
    assert (r.ok, r.status, r.reason) == (False, 401, "401 after digest: wrong credentials")
    assert cpe.accepted == 0 and len(cpe.authorizations) == 2  # no retry loop


async def test_no_username_known(cpe_server, requester: ConnectionRequester) -> None:
    cpe, url = await cpe_server()
    r = await requester.send(url, "", "")
    assert not r.ok and r.status == 401 and "ConnectionRequestUsername is empty" in r.reason
    assert len(cpe.authorizations) == 1


async def test_basic_only_refused_unless_allowed(
    cpe_server, requester: ConnectionRequester
) -> None:
    cpe, url = await cpe_server("basic")
    r = await requester.send(url, USER, PASSWORD)
    assert (r.ok, r.status) == (False, 401)
    assert r.reason == "CPE offered only Basic auth, which is not allowed"
    assert cpe.authorizations == [None]  # the password was never sent in clear

    allowing = ConnectionRequester(timeout_s=1.0, allow_basic=True)
    try:
        r = await allowing.send(url, USER, PASSWORD)
        assert r.ok and r.status == 200
        assert (cpe.authorizations[-1] or "").startswith("Basic ")
        r = await allowing.send(url, USER, "wrong")
        assert not r.ok and r.reason == "401 after basic: wrong credentials"
    finally:
        await allowing.close()


async def test_digest_preferred_when_basic_is_offered_first(
    cpe_server, requester: ConnectionRequester
) -> None:
    cpe, url = await cpe_server("any")

    # cpe_auth lists Digest first; put Basic first in a separate header
    async def basic_first(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        cpe.authorizations.append(header)
        verdict = await cpe.auth.check("GET", header, request.raw_path)
        if verdict.ok:
            return web.Response(status=200)
        resp = web.Response(status=401)
        for challenge in reversed(verdict.challenge):
            resp.headers.add("WWW-Authenticate", challenge)
        return resp

    runner, base = await serve({"/cr": basic_first})
    try:
        r = await requester.send(f"{base}/cr", USER, PASSWORD)
        assert r.ok, r.reason
        assert (cpe.authorizations[-1] or "").startswith("Digest ")
    finally:
        await runner.cleanup()


async def test_stale_nonce_is_retried_once(cpe_server, requester: ConnectionRequester) -> None:
    """A CPE whose nonce expired between challenge and answer says stale=true."""
    now = [1_000_000.0]
    cpe, url = await cpe_server(clock=lambda: now[0])

    async def ageing(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        if header is not None and len(cpe.authorizations) == 1:
            now[0] += 3600  # the nonce handed out in the first challenge is now stale
        return await cpe.handle(request)

    runner, base = await serve({"/cr": ageing})
    try:
        r = await requester.send(f"{base}/cr", USER, PASSWORD)
        assert r.ok, r.reason
        assert len(cpe.authorizations) == 3 and cpe.accepted == 1
    finally:
        await runner.cleanup()


async def test_slow_cpe_times_out(cpe_server) -> None:
    cpe, url = await cpe_server(delay=5.0)
    fast = ConnectionRequester(timeout_s=0.5)
    try:
        r = await fast.send(url, USER, PASSWORD)
    finally:
        await fast.close()
    assert (r.ok, r.status, r.reason) == (False, None, "timeout after 0.5 s")
    assert 0.45 <= r.elapsed_s < 1.5


async def test_silent_listener_times_out() -> None:
    """A socket that accepts but never answers (a hung CPE web server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        fast = ConnectionRequester(timeout_s=0.3)
        try:
            r = await fast.send(f"http://127.0.0.1:{port}/cr", USER, PASSWORD)
        finally:
            await fast.close()
    assert not r.ok and r.reason.startswith("timeout after 0.3 s") and r.elapsed_s < 1.0


async def test_refused_port(requester: ConnectionRequester) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connects are refused
        r = await requester.send(f"http://127.0.0.1:{port}/cr", USER, PASSWORD)
    assert (r.ok, r.status, r.reason) == (False, None, "connection refused")


async def test_rate_limited_cpe(cpe_server, requester: ConnectionRequester) -> None:
    _cpe, url = await cpe_server(status=503)
    r = await requester.send(url, USER, PASSWORD)
    assert (r.ok, r.status, r.reason) == (False, 503, "HTTP 503 (CPE rate-limited)")


async def test_other_statuses_are_named(requester: ConnectionRequester) -> None:
    async def teapot(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=418)

    async def closer(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # hang up without any answer
        await asyncio.sleep(0.1)
        return web.Response()

    runner, base = await serve({"/teapot": teapot, "/closer": closer})
    try:
        r = await requester.send(f"{base}/teapot", USER, PASSWORD)
        assert (r.ok, r.status, r.reason) == (False, 418, "HTTP 418")
        r = await requester.send(f"{base}/closer", USER, PASSWORD)
        assert not r.ok and r.status is None and "closed the connection" in r.reason
    finally:
        await runner.cleanup()


async def test_refused_urls_send_nothing(requester: ConnectionRequester) -> None:
    r = await requester.send("ftp://127.0.0.1/cr", USER, PASSWORD)
    assert not r.ok and r.status is None and "not an http(s) URL" in r.reason
    r = await requester.send("http://user:pw@127.0.0.1:1/cr", USER, PASSWORD)
    assert not r.ok and "credentials in the URL" in r.reason


async def test_redirects_followed_only_on_the_same_host(requester: ConnectionRequester) -> None:
    cpe = Cpe()
    elsewhere_hits: list[str] = []

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        elsewhere_hits.append(request.path)
        return web.Response(status=200)

    other_runner, other = await serve({"/cr": elsewhere})

    async def moved_here(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/cr")

    async def moved_away(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(f"{other}/cr")

    async def loop(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/loop")

    runner, base = await serve(
        {"/old": moved_here, "/cr": cpe.handle, "/away": moved_away, "/loop": loop}
    )
    try:
        r = await requester.send(f"{base}/old", USER, PASSWORD)
        assert r.ok and r.status == 200, r.reason
        assert cpe.accepted == 1
        r = await requester.send(f"{base}/away", USER, PASSWORD)
        assert not r.ok and r.status == 307
        assert re.fullmatch(r"HTTP 307 redirect to another host \(.+\) not followed", r.reason)
        assert elsewhere_hits == []  # nothing, credentials least of all, went elsewhere
        r = await requester.send(f"{base}/loop", USER, PASSWORD)
        assert not r.ok and r.reason == "more than 3 redirects"
    finally:
        await runner.cleanup()
        await other_runner.cleanup()


async def test_concurrency_limit_is_global(cpe_server) -> None:
    cpe, url = await cpe_server(delay=0.2)
    limited = ConnectionRequester(timeout_s=5.0, max_concurrent=3)
    try:
        started = time.monotonic()
        results = await asyncio.gather(*(limited.send(url, USER, PASSWORD) for _ in range(10)))
        took = time.monotonic() - started
    finally:
        await limited.close()
    assert all(r.ok for r in results), [r.reason for r in results]
    assert cpe.accepted == 10
    assert cpe.max_running == 3
    assert took >= 4 * 0.2 * 0.9  # ceil(10 / 3) rounds of the CPE's delay


async def test_caller_supplied_session_is_left_open(cpe_server) -> None:
    _cpe, url = await cpe_server()
    async with aiohttp.ClientSession() as http:
        shared = ConnectionRequester(timeout_s=1.0, session=http)
        r = await shared.send(url, USER, PASSWORD)
        await shared.close()
        assert r.ok
        assert not http.closed


# ----------------------------------------------------------------- knocking with a sealed password


@pytest.mark.db
async def test_the_knock_opens_the_sealed_password_the_acs_set(
    cpe_server, requester: ConnectionRequester, db_pool, tmp_path, unique_serial
) -> None:
    """The ACS keeps a password it set only sealed; the knock opens it (and
    nothing else can: another installation's key gets the CPE's 401)."""
    from datetime import UTC, datetime

    from acs.config import Settings
    from acs.cwmp.messages import ParameterValueStruct as PV
    from acs.services.knock import knock
    from acs.services.sealing_key import sealer
    from acs.store import credentials, devices
    from tests.integration.test_store import inform

    cpe, url = await cpe_server("digest")
    ms = "Device.ManagementServer."
    settings = Settings(data_dir=tmp_path / "one")
    other = Settings(data_dir=tmp_path / "two")
    async with db_pool.acquire() as conn:
        rec = inform(unique_serial())
        rec.parameters.append(PV(ms + "ConnectionRequestURL", url))
        dev, _ = await devices.upsert_from_inform(conn, rec)
        values = [
            PV(ms + "ConnectionRequestUsername", USER),
            PV(ms + "ConnectionRequestPassword", PASSWORD),
        ]
        # as the session driver stores the SetParameterValues the CPE accepted
        at = datetime.now(UTC)
        await devices.merge_parameter_values(
            conn, dev.id, sealer(settings).seal_values(dev.id, values), at
        )
        await credentials.remember_connection_request_credentials(conn, dev.id, "Device.")
        kept = await conn.fetchval(
            "SELECT password FROM connection_request_credentials WHERE device_id = $1", dev.id
        )
        tree = await conn.fetchval(
            "SELECT tree::text FROM device_parameters WHERE device_id = $1", dev.id
        )
    assert PASSWORD not in kept and PASSWORD not in tree

    result = await knock(db_pool, requester, settings, dev.id)
    assert result.ok and cpe.accepted == 1, result
    refused = await knock(db_pool, requester, other, dev.id)
    assert not refused.ok and refused.status == 401 and cpe.accepted == 1
