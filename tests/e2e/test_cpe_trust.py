"""Who may speak in a CPE's session, and what one captured Digest header is worth.

Every attacker here is a second real HTTP client on 127.0.0.1, on a new TCP
connection of its own, against a real ACS: what a neighbour behind the same
CGNAT address or proxy can do. The Digest headers are computed here, from
RFC 7616, so that nonce counts, URIs and qop can be chosen one by one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.cwmp.soap import Envelope, parse_envelope, serialize_envelope
from acs.store import credentials
from acs.store.ids import device_id
from acs.web.relay import Workers
from acs.web.server import Running, running_acs
from tests.e2e.conftest import StartAcs, cwmp_url, make_settings
from tests.e2e.cpe_double import CpeDouble

pytestmark = pytest.mark.db

REALM = "acs"
UNAUTHORIZED = b"authentication required\n"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def nonce_of(headers: Any) -> str:
    challenge = next(h for h in headers.getall("WWW-Authenticate") if h.startswith("Digest "))
    found = re.search(r'nonce="([^"]+)"', challenge)
    assert found, challenge
    return found.group(1)


def digest(
    nonce: str,
    username: str,
    password: str,
    *,
    uri: str = "/",
    nc: int = 1,
    qop: str | None = "auth",
    method: str = "POST",
) -> str:
    ha1 = md5(f"{username}:{REALM}:{password}")
    ha2 = md5(f"{method}:{uri}")
    fields = f'username="{username}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
    if qop is None:  # RFC 2069
        return f'Digest {fields}response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
    cnonce = secrets.token_hex(8)
    response = md5(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")
    return f'Digest {fields}qop={qop}, nc={nc:08x}, cnonce="{cnonce}", response="{response}"'


class Stranger:
    """A client with no cookie jar that opens a new TCP connection for every request."""

    def __init__(self) -> None:
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def post(self, url: str, body: bytes = b"", **headers: str) -> tuple[int, bytes, Any]:
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        async with self.http.post(url, data=body, headers=hdrs) as resp:
            return resp.status, await resp.read(), resp.headers

    async def nonce(self, url: str, body: bytes = b"", **headers: str) -> str:
        status, _, hdrs = await self.post(url, body, **headers)
        assert status == 401, status
        return nonce_of(hdrs)

    async def close(self) -> None:
        await self.http.close()


def inform_body(cpe: CpeDouble, events: tuple[str, ...] = ("2 PERIODIC",)) -> bytes:
    env = Envelope(body=cpe.inform_message(list(events)), cwmp_id="1", cwmp_ns=cpe.cwmp_ns)
    return serialize_envelope(env)


def message_of(body: bytes) -> m.Message:
    env = parse_envelope(body)
    assert env is not None
    return env.body


async def finish(cpe: CpeDouble, reply_body: bytes, status: int) -> list[str]:
    """Carry on a session over the CPE's own (cookie) client; the ACS requests it saw."""
    seen = []
    while status == 200:
        request = message_of(reply_body)
        seen.append(request.element_name)
        env = parse_envelope(reply_body)
        answer = cpe.answer(request)
        sent = Envelope(body=answer, cwmp_id=env.cwmp_id if env else None, cwmp_ns=cpe.cwmp_ns)
        async with cpe.http.post(cpe.url, data=serialize_envelope(sent)) as resp:
            status, reply_body = resp.status, await resp.read()
    assert status == 204, (status, reply_body[:300])
    return seen


async def per_device_credential(pool: asyncpg.Pool, serial: str) -> tuple[str, str]:
    password = "pw-" + secrets.token_hex(6)
    async with pool.acquire() as conn:
        await credentials.set_credential(
            conn, serial, password, REALM, device_id("ACDE48", "HGW", serial)
        )
    return serial, password


async def open_session(cpe: CpeDouble, user: str, password: str) -> None:
    """The victim's Inform, Digest-authenticated, on its own cookie-keeping client."""
    async with cpe.http.post(cpe.url, data=inform_body(cpe, ("0 BOOTSTRAP",))) as resp:
        assert resp.status == 401
        nonce = nonce_of(resp.headers)
    auth = digest(nonce, user, password)
    async with cpe.http.post(
        cpe.url, data=inform_body(cpe, ("0 BOOTSTRAP",)), headers={"Authorization": auth}
    ) as resp:
        assert resp.status == 200, await resp.read()
        assert isinstance(message_of(await resp.read()), m.InformResponse)


# ------------------------------------------------------------------ session takeover


async def test_a_neighbour_at_the_same_address_cannot_take_over_a_session(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(cpe_auth="digest")
    url = cwmp_url(acs)
    victim_serial, other_serial = unique_serial(), unique_serial()
    v_user, v_pw = await per_device_credential(db_pool, victim_serial)
    o_user, o_pw = await per_device_credential(db_pool, other_serial)
    victim = CpeDouble(url, victim_serial)
    stranger = Stranger()
    try:
        await open_session(victim, v_user, v_pw)

        # no cookie, no credentials, new connection: a challenge, not the victim's RPC
        status, body, headers = await stranger.post(url)
        assert (status, body) == (401, UNAUTHORIZED)
        assert "Digest" in headers["WWW-Authenticate"]

        # valid credentials, but of another device: no session to join
        auth = digest(nonce_of(headers), o_user, o_pw)
        status, body, _ = await stranger.post(url, Authorization=auth)
        assert status == 400, body
        fault = message_of(body)
        assert isinstance(fault, m.Fault) and fault.fault_code == 8003

        # the victim's own credentials and address, without the cookie, on a new
        # connection: a CPE that ignores cookies and reconnects is still served
        nonce = await stranger.nonce(url)
        status, body, _ = await stranger.post(url, Authorization=digest(nonce, v_user, v_pw))
        assert status == 200, body
        first = message_of(body)
        assert isinstance(first, m.GetParameterNames), first  # discovery starts: nothing lost

        env = parse_envelope(body)
        answer = Envelope(body=victim.answer(first), cwmp_id=env.cwmp_id, cwmp_ns=victim.cwmp_ns)
        async with victim.http.post(url, data=serialize_envelope(answer)) as resp:
            seen = await finish(victim, await resp.read(), resp.status)
        assert "GetParameterValues" in seen  # the rest of discovery went to the cookie holder
    finally:
        await victim.close()
        await stranger.close()


@pytest.mark.parametrize("cpe_auth", ["none", "digest"])
async def test_a_forged_session_cookie_is_refused(
    start_acs: StartAcs, unique_serial, cpe_auth: str
) -> None:
    acs = await start_acs(cpe_auth=cpe_auth, cpe_username="cpe", cpe_password="s3cret")
    url = cwmp_url(acs)
    victim = CpeDouble(url, unique_serial(), digest=("cpe", "s3cret"))
    stranger = Stranger()
    try:
        reply = await victim.post(victim.inform_message(["0 BOOTSTRAP"]))
        assert isinstance(reply.message, m.InformResponse)
        forged = [secrets.token_urlsafe(18), f"0.{secrets.token_urlsafe(18)}"]
        genuine = next(c.value for c in victim.http.cookie_jar if c.key == "acs_session")
        session_id, sep, mac = genuine.rpartition("~")
        if sep:  # the session id alone, and the genuine cookie with its MAC altered
            forged += [session_id, f"{session_id}~{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"]
        for value in forged:
            status, body, _ = await stranger.post(url, Cookie=f"acs_session={value}")
            assert status == 403, (value, status, body[:200])
            assert b"acs_session" in body
        assert len(forged) == 4  # the cookie carries a MAC of the session id
        # the victim's session lost nothing to the forgeries
        first = await victim.post(None)
        assert isinstance(first.message, m.GetParameterNames), first.body[:300]
    finally:
        await victim.close()
        await stranger.close()


async def test_without_cpe_auth_the_address_alone_still_finds_a_cookieless_session(
    start_acs: StartAcs, unique_serial
) -> None:
    """ACS_CPE_AUTH=none has nothing to prove a CPE by: the single live session at an
    address is given to any cookie-less client there (the README states this cost)."""
    acs = await start_acs(cpe_auth="none")
    url = cwmp_url(acs)
    cpe = CpeDouble(url, unique_serial())
    stranger = Stranger()
    try:
        assert isinstance(
            (await cpe.post(cpe.inform_message(["1 BOOT"]))).message, m.InformResponse
        )
        status, body, _ = await stranger.post(url)
        assert status == 200 and isinstance(message_of(body), m.GetParameterNames)
    finally:
        await cpe.close()
        await stranger.close()


# ------------------------------------------------------------------ Digest replay


async def test_a_captured_digest_header_opens_one_session_only(
    start_acs: StartAcs, unique_serial, caplog: pytest.LogCaptureFixture
) -> None:
    acs = await start_acs(cpe_auth="digest", cpe_username="cpe", cpe_password="s3cret")
    url = cwmp_url(acs)
    first, other = CpeDouble(url, unique_serial()), CpeDouble(url, unique_serial())
    attacker = Stranger()
    try:
        nonce = await attacker.nonce(url, inform_body(first))
        captured = digest(nonce, "cpe", "s3cret")
        async with first.http.post(
            url, data=inform_body(first), headers={"Authorization": captured}
        ) as resp:
            assert resp.status == 200
            body = await resp.read()
        assert isinstance(message_of(body), m.InformResponse)
        async with first.http.post(url, data=b"") as resp:
            await finish(first, await resp.read(), resp.status)

        with caplog.at_level(logging.WARNING, logger="acs.cwmp"):
            # the same device's next session, and another device's
            for cpe in (first, other):
                status, body, _ = await attacker.post(url, inform_body(cpe), Authorization=captured)
                assert (status, body) == (401, UNAUTHORIZED)
        assert caplog.text.count("was used already") == 2
    finally:
        await first.close()
        await other.close()
        await attacker.close()


async def test_nonce_counts_must_increase(start_acs: StartAcs, unique_serial) -> None:
    acs = await start_acs(cpe_auth="digest", cpe_username="cpe", cpe_password="s3cret")
    url = cwmp_url(acs)
    client = Stranger()
    cpes = [CpeDouble(url, unique_serial()) for _ in range(4)]
    try:
        nonce = await client.nonce(url, inform_body(cpes[0]))
        # each header freshly computed with the password: only the count is at fault
        for cpe, nc, want in ((cpes[0], 2, 200), (cpes[1], 2, 401), (cpes[1], 1, 401)):
            status, _, _ = await client.post(
                url, inform_body(cpe), Authorization=digest(nonce, "cpe", "s3cret", nc=nc)
            )
            assert status == want, (nc, status)
        for cpe, nc in ((cpes[2], 3), (cpes[3], 0x10)):  # counts may skip, never go back
            status, body, _ = await client.post(
                url, inform_body(cpe), Authorization=digest(nonce, "cpe", "s3cret", nc=nc)
            )
            assert status == 200 and isinstance(message_of(body), m.InformResponse), nc
    finally:
        for cpe in cpes:
            await cpe.close()
        await client.close()


async def test_the_digest_uri_must_be_the_request_target(
    start_acs: StartAcs, unique_serial
) -> None:
    acs = await start_acs(cpe_auth="digest", cpe_username="cpe", cpe_password="s3cret")
    root = cwmp_url(acs).rstrip("/")
    client = Stranger()
    cpe = CpeDouble(root + "/", unique_serial())
    try:
        for target, uri in (("/", "/other"), ("/cwmp", "/"), ("/", f"{root}/elsewhere")):
            nonce = await client.nonce(root + target, inform_body(cpe))
            status, body, _ = await client.post(
                root + target,
                inform_body(cpe),
                Authorization=digest(nonce, "cpe", "s3cret", uri=uri),
            )
            assert (status, body) == (401, UNAUTHORIZED), (target, uri)
        # the same computation for the real target passes, in origin and absolute form
        for target, uri in (("/cwmp", "/cwmp"), ("/", f"{root}/")):
            other = CpeDouble(root + "/", unique_serial())
            try:
                nonce = await client.nonce(root + target, inform_body(other))
                status, _, _ = await client.post(
                    root + target,
                    inform_body(other),
                    Authorization=digest(nonce, "cpe", "s3cret", uri=uri),
                )
                assert status == 200, (target, uri)
            finally:
                await other.close()
    finally:
        await cpe.close()
        await client.close()


@pytest.mark.parametrize("allow", [False, True])
async def test_digest_without_qop_only_with_the_legacy_setting(
    start_acs: StartAcs, unique_serial, allow: bool
) -> None:
    acs = await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="s3cret",
        cpe_digest_allow_no_qop=allow,
    )
    url = cwmp_url(acs)
    client = Stranger()
    one, two = CpeDouble(url, unique_serial()), CpeDouble(url, unique_serial())
    try:
        nonce = await client.nonce(url, inform_body(one))
        legacy = digest(nonce, "cpe", "s3cret", qop=None)
        status, body, _ = await client.post(url, inform_body(one), Authorization=legacy)
        if not allow:
            assert (status, body) == (401, UNAUTHORIZED)
            return
        assert status == 200 and isinstance(message_of(body), m.InformResponse)
        # no count to compare: such a nonce is good for one request
        status, body, _ = await client.post(url, inform_body(two), Authorization=legacy)
        assert (status, body) == (401, UNAUTHORIZED)
    finally:
        await one.close()
        await two.close()
        await client.close()


# ------------------------------------------------------------------ failed passwords


async def attempt(
    client: Stranger, url: str, cpe: CpeDouble, user: str, password: str, address: str
) -> tuple[int, bytes, Any]:
    """One Digest handshake from ``address`` (told by the trusted proxy header)."""
    nonce = await client.nonce(url, inform_body(cpe), X_Forwarded_For=address)
    return await client.post(
        url,
        inform_body(cpe),
        Authorization=digest(nonce, user, password),
        X_Forwarded_For=address,
    )


async def test_wrong_passwords_are_throttled_per_username_and_per_address(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(
        cpe_auth="digest",
        trusted_proxies="127.0.0.1",  # so that each check can come from an address of its own
        cpe_auth_max_failures=3,
        cpe_auth_backoff_s=2.0,
    )
    url = cwmp_url(acs)
    serial = unique_serial()
    user, password = await per_device_credential(db_pool, serial)
    cpe = CpeDouble(url, serial)
    client = Stranger()
    net = f"198.51.100.{secrets.randbelow(200) + 1}"
    guesser, device_home, elsewhere = net, "203.0.113.7", "203.0.113.8"
    try:
        # per username: wrong passwords from one address shut the username out everywhere
        for i in range(2):
            status, _, _ = await attempt(client, url, cpe, user, f"guess-{i}", guesser)
            assert status == 401
        status, _, headers = await attempt(client, url, cpe, user, "guess-2", guesser)
        assert status == 503 and 1 <= int(headers["Retry-After"]) <= 2
        status, _, headers = await attempt(client, url, cpe, user, password, device_home)
        assert status == 503, "the right password while the username is refused"
        await asyncio.sleep(int(headers["Retry-After"]) + 0.3)
        status, body, _ = await attempt(client, url, cpe, user, password, device_home)
        assert status == 200 and isinstance(message_of(body), m.InformResponse)

        # per address: three unknown usernames from one address shut the address out,
        # for a valid credential too; another address is not affected
        other_serial = unique_serial()
        o_user, o_pw = await per_device_credential(db_pool, other_serial)
        other = CpeDouble(url, other_serial)
        try:
            prober = "198.51.100.250"
            for i in range(3):
                status, _, _ = await attempt(client, url, other, f"nobody-{i}", "x", prober)
            assert status == 503
            status, _, _ = await attempt(client, url, other, o_user, o_pw, prober)
            assert status == 503
            status, _, _ = await attempt(client, url, other, o_user, o_pw, elsewhere)
            assert status == 200
        finally:
            await other.close()
    finally:
        await cpe.close()
        await client.close()


async def test_every_failed_authentication_gets_the_same_401_body(
    start_acs: StartAcs, unique_serial, caplog: pytest.LogCaptureFixture
) -> None:
    acs = await start_acs(
        cpe_auth="any", cpe_username="cpe", cpe_password="s3cret", trusted_proxies="127.0.0.1"
    )
    url = cwmp_url(acs)
    client = Stranger()
    cpe = CpeDouble(url, unique_serial())
    here = {"X_Forwarded_For": "192.0.2.77"}
    try:
        with caplog.at_level(logging.WARNING, logger="acs.cwmp"):
            bodies = {}
            bodies["none"] = (await client.post(url, inform_body(cpe), **here))[:2]
            for name, user, pw in (("unknown", "nobody", "s3cret"), ("wrong", "cpe", "nope")):
                nonce = await client.nonce(url, inform_body(cpe), **here)
                bodies[name] = (
                    await client.post(
                        url, inform_body(cpe), Authorization=digest(nonce, user, pw), **here
                    )
                )[:2]
            basic = aiohttp.encode_basic_auth("cpe", "nope")
            bodies["basic"] = (
                await client.post(url, inform_body(cpe), Authorization=basic, **here)
            )[:2]
            nul = aiohttp.encode_basic_auth("cp\x00e", "s3cret")  # no text PostgreSQL can hold
            bodies["control character"] = (
                await client.post(url, inform_body(cpe), Authorization=nul, **here)
            )[:2]
            forged = digest("bm90LW91cnM=", "cpe", "s3cret")
            bodies["forged nonce"] = (
                await client.post(url, inform_body(cpe), Authorization=forged, **here)
            )[:2]
        assert set(bodies.values()) == {(401, UNAUTHORIZED)}, bodies
        for reason in ("unknown username", "wrong password", "not issued by this ACS"):
            assert reason in caplog.text, reason
    finally:
        await cpe.close()
        await client.close()


# ------------------------------------------------------------------ across workers


async def test_nonce_counts_and_session_owners_hold_across_workers(
    database_url: str, db_pool: asyncpg.Pool, unique_serial
) -> None:
    """Two workers of one ACS (the secret `acs serve --workers 2` hands out), each on a
    port of its own here so that the test chooses which one a request reaches."""
    run_dir = Path(tempfile.mkdtemp(prefix="acs-trust-"))
    secret = secrets.token_bytes(32)
    contexts = []
    running: list[Running] = []
    try:
        for index in range(2):
            settings = make_settings(cpe_auth="digest", data_dir=run_dir, workers=2)
            ctx = running_acs(settings, database_url, Workers(index, 2, run_dir, secret))
            running.append(await ctx.__aenter__())
            contexts.append(ctx)
        w0, w1 = (cwmp_url(r) for r in running)
        serial, other_serial, third_serial = unique_serial(), unique_serial(), unique_serial()
        user, pw = await per_device_credential(db_pool, serial)
        o_user, o_pw = await per_device_credential(db_pool, other_serial)
        t_user, t_pw = await per_device_credential(db_pool, third_serial)
        victim = CpeDouble(w0, serial)
        client = Stranger()
        try:
            # a nonce worker 0 issued is good at worker 1, and its count is spent at both
            nonce = await client.nonce(w0, inform_body(victim, ("0 BOOTSTRAP",)))
            header = digest(nonce, user, pw)
            async with victim.http.post(
                w0, data=inform_body(victim, ("0 BOOTSTRAP",)), headers={"Authorization": header}
            ) as resp:
                assert resp.status == 200
            third = CpeDouble(w1, third_serial)
            try:
                for nc, want in ((1, 401), (2, 200)):  # count 1 was spent at worker 0
                    async with third.http.post(
                        w1,
                        data=inform_body(third),
                        headers={"Authorization": digest(nonce, t_user, t_pw, nc=nc)},
                    ) as resp:
                        assert resp.status == want, (nc, await resp.read())
                async with third.http.post(w1, data=b"") as resp:  # its session, to the end
                    await finish(third, await resp.read(), resp.status)
            finally:
                await third.close()

            # the victim's session lives in worker 0; a stranger at worker 1 gets a challenge
            status, body, headers = await client.post(w1)
            assert (status, body) == (401, UNAUTHORIZED)
            # another device's valid credential does not join it through the relay
            auth = digest(nonce_of(headers), o_user, o_pw)
            status, body, _ = await client.post(w1, Authorization=auth)
            assert status == 400, body
            # the victim's own credential, cookie-less at worker 1, is relayed to its session
            nonce = await client.nonce(w1)
            status, body, _ = await client.post(w1, Authorization=digest(nonce, user, pw))
            assert status == 200 and isinstance(message_of(body), m.GetParameterNames), body
            # a forged cookie naming worker 0 is not relayed there
            status, body, _ = await client.post(
                w1, Cookie="acs_session=0.forged~AAAAAAAAAAAAAAAAAAAAAA"
            )
            assert status == 403, body
        finally:
            await victim.close()
            await client.close()
    finally:
        for ctx in reversed(contexts):
            await ctx.__aexit__(None, None, None)
