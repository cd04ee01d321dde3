"""HTTP connection requests (TR-069 3.2.2): the ACS asks a CPE to open a session now.

An HTTP GET to the device's ConnectionRequestURL, authenticated with the
device's ConnectionRequestUsername/Password by HTTP Digest; the CPE answers
200 or 204 and then opens a session with "6 CONNECTION REQUEST".

The Digest client is our own (a few lines, below) rather than aiohttp's
middleware because a CPE's challenge needs choices the middleware does not
make for us: it reads only the first WWW-Authenticate header (a CPE offering
"Basic" first and "Digest" second would be answered with nothing), and it
prefers qop=auth-int over auth, which old CPE stacks get wrong. Owning it also
lets every outcome carry a reason an operator can act on.

Basic is used only when the operator allows it: it sends the password in
clear. Every request is bounded in time, and the number in flight is bounded
across the whole process (one semaphore per requester), so a boot storm of
knocks or a region of dead CPEs cannot exhaust sockets. Two more rules keep a
dead target from starving the rest: the number in flight to one host:port is
bounded too (a CPE that accepts and never answers, knocked over and over, or
many devices behind one such address, hold at most that many slots), and the
timeout covers the wait for a slot, so a caller always has its answer within
it.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from acs.metrics import Metrics

# same-origin redirects are followed (some CPEs redirect /cr to /cr/); each hop
# costs up to two requests, all inside one timeout
MAX_REDIRECTS = 3

_HASHES: dict[str, Callable[[bytes], Any]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}

# RFC 9110 token, and one auth-param or scheme token of a WWW-Authenticate value
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_ITEM = re.compile(rf'[\s,]*(?P<key>{_TOKEN})(?:\s*=\s*(?P<val>"(?:[^"\\]|\\.)*"|[^\s,]*))?')


# What became of a connection request, in a word for metrics and dashboards
# (the reason says the rest): accepted, auth_failed (401), refused (another
# HTTP status), timeout, unreachable (no TCP/TLS connection, or it dropped),
# invalid_url, no_url (the device never sent one), error.
OUTCOMES = (
    "accepted",
    "auth_failed",
    "refused",
    "timeout",
    "unreachable",
    "invalid_url",
    "no_url",
    "error",
)


@dataclass(slots=True)
class ConnectionRequestResult:
    ok: bool
    status: int | None  # the CPE's last HTTP status; None when no answer came
    reason: str
    elapsed_s: float  # from the call, including any wait for a free slot
    outcome: str = "error"  # one of OUTCOMES
    channel: str = "http"  # which channel answered, or the last one tried (acs.core.reach)
    # every channel tried or left out, with its outcome and reason (acs.services.knock)
    channels: dict[str, dict[str, object]] | None = None


@dataclass(slots=True)
class Challenge:
    scheme: str  # lower case: "digest", "basic", ...
    params: dict[str, str]


class _Refused(Exception):
    """The exchange ended without success, for the reason in args[0]."""

    def __init__(self, reason: str, status: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def parse_challenges(values: list[str]) -> list[Challenge]:
    """Every challenge in the WWW-Authenticate headers, in order.

    One header may carry several challenges ("Digest realm=..., Basic realm=...")
    and a response may carry several headers (RFC 9110 11.6.1).
    """
    found: list[Challenge] = []
    for value in values:
        pos = 0
        while (m := _ITEM.match(value, pos)) and m.end() > pos:
            pos = m.end()
            key, raw = m["key"], m["val"]
            if raw is None:
                found.append(Challenge(key.lower(), {}))
            elif found:
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                found[-1].params[key.lower()] = raw
    return found


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_authorization(
    challenge: dict[str, str],
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    cnonce: str | None = None,
) -> str:
    """The Authorization header answering one Digest challenge (RFC 7616, RFC 2069).

    Raises ValueError naming what the challenge lacks or asks for that we cannot do.
    """
    realm, nonce = challenge.get("realm"), challenge.get("nonce")
    if realm is None or not nonce:
        raise ValueError("the CPE's Digest challenge has no realm or nonce")
    algorithm = challenge.get("algorithm", "MD5")
    base, sess, _ = algorithm.upper().partition("-SESS")
    if base not in _HASHES:
        raise ValueError(f"the CPE's Digest challenge asks for algorithm {algorithm!r}")
    hash_fn = _HASHES[base]

    def h(text: str) -> str:
        return hash_fn(text.encode()).hexdigest()

    offered = {q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()}
    # auth when offered: auth-int over an empty GET body gains nothing and old stacks get it wrong
    qop = "auth" if "auth" in offered else "auth-int" if "auth-int" in offered else ""
    if offered and not qop:
        raise ValueError(f"the CPE's Digest challenge asks for qop {challenge['qop']!r}")
    cnonce = cnonce or secrets.token_hex(8)  # given only by tests, for known-answer vectors
    nc = "00000001"  # a fresh challenge per request: the nonce is used once
    ha1 = h(f"{username}:{realm}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}") if qop != "auth-int" else h(f"{method}:{uri}:{h('')}")
    if qop:
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"algorithm={algorithm}",
        f"response={_quote(response)}",
    ]
    if "opaque" in challenge:
        parts.append(f"opaque={_quote(challenge['opaque'])}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc}", f"cnonce={_quote(cnonce)}"]
    return "Digest " + ", ".join(parts)


def check_url(url: str) -> URL | str:
    """The URL to knock on, or why it cannot be used."""
    try:
        parsed = URL(url)
        port = parsed.port
    except (ValueError, TypeError) as exc:
        return f"ConnectionRequestURL {url!r} is not a valid URL: {exc}"
    if parsed.scheme not in ("http", "https"):
        return f"ConnectionRequestURL {url!r} is not an http(s) URL"
    if not parsed.host:
        return f"ConnectionRequestURL {url!r} has no host"
    if port is None or not 0 < port < 65536:
        return f"ConnectionRequestURL {url!r} has an invalid port"
    if parsed.user is not None or parsed.password is not None:
        # aiohttp would turn them into Basic credentials behind our back
        return "ConnectionRequestURL carries credentials in the URL, which is not allowed"
    return parsed.with_fragment(None)


def _is_stale(headers: CIMultiDictProxy[str]) -> bool:
    return any(
        c.scheme == "digest" and c.params.get("stale", "").lower() == "true"
        for c in parse_challenges(headers.getall("WWW-Authenticate", []))
    )


def _status_reason(status: int) -> str:
    if status == 503:
        return "HTTP 503 (CPE rate-limited)"
    if status == 404:
        return "HTTP 404 (wrong ConnectionRequestURL path)"
    if status == 403:
        return "HTTP 403 (the CPE forbids connection requests from this address)"
    return f"HTTP {status}"


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host!r}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of the CPE rejected: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS handshake failed: {exc.os_error}"
    code = exc.os_error.errno if exc.os_error is not None else None
    known = {
        errno.ECONNREFUSED: "connection refused",
        errno.EHOSTUNREACH: "host unreachable",
        errno.ENETUNREACH: "network unreachable",
        errno.ECONNRESET: "connection reset by the CPE",
    }
    return known.get(code or 0, f"cannot connect: {exc.os_error or exc}")


@dataclass(slots=True)
class _HostGate:
    slots: asyncio.Semaphore
    users: int = 0  # callers holding or waiting for a slot; the gate goes when none are left


@dataclass(slots=True)
class _Wait:
    """Where one knock is: waiting for its host's slot, for a global one, or under way."""

    phase: str = "host"
    since: float = 0.0


class ConnectionRequester:
    """One per process: its semaphore is the global limit on knocks in flight,
    and ``max_per_host`` the limit towards one host:port."""

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        max_concurrent: int = 50,
        max_per_host: int = 4,
        allow_basic: bool = False,
        session: aiohttp.ClientSession | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if max_per_host < 1:
            raise ValueError("max_per_host must be at least 1")
        self.timeout_s = timeout_s
        self.max_concurrent = max_concurrent
        self.max_per_host = max_per_host
        self.allow_basic = allow_basic
        self._gate = asyncio.Semaphore(max_concurrent)
        self._hosts: dict[tuple[str, int], _HostGate] = {}
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s)
        self.metrics = metrics or Metrics()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession(
                # the semaphore is the limit; one knock is two short requests, and
                # keeping idle sockets to thousands of CPEs would only hold file handles
                connector=aiohttp.TCPConnector(limit=0, force_close=True),
                # a CPE's cookies must never reach another CPE
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=self._timeout,
                headers={"User-Agent": "acs-connection-request"},
            )
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, url: str, username: str, password: str) -> ConnectionRequestResult:
        result = await self._send(url, username, password)
        self.metrics.connection_request(result.outcome)
        return result

    async def _send(self, url: str, username: str, password: str) -> ConnectionRequestResult:
        start = time.monotonic()

        def result(
            ok: bool, status: int | None, reason: str, outcome: str
        ) -> ConnectionRequestResult:
            elapsed = round(time.monotonic() - start, 3)
            return ConnectionRequestResult(ok, status, reason, elapsed, outcome)

        target = check_url(url)
        if isinstance(target, str):
            return result(False, None, target, "invalid_url")
        host = (target.host or "", target.port or 0)
        wait = _Wait()
        try:
            # one bound for everything: the wait for a slot, then the challenge, the
            # answer and redirects; the caller (an operator's API call) has its
            # answer within the configured timeout, whatever the other knocks do
            async with asyncio.timeout(self.timeout_s), self._slot(host, wait):
                status, reason = await self._exchange(target, username, password)
            return result(True, status, reason, "accepted")
        except _Refused as refused:
            outcome = "auth_failed" if refused.status == 401 else "refused"
            return result(False, refused.status, refused.reason, outcome)
        except aiohttp.ConnectionTimeoutError:
            reason = f"timeout after {self.timeout_s} s (no TCP connection)"
            return result(False, None, reason, "timeout")
        except TimeoutError:
            return result(False, None, self._timeout_reason(host, wait, start), "timeout")
        except aiohttp.ClientConnectorError as exc:
            return result(False, None, _connect_reason(exc), "unreachable")
        except aiohttp.ServerDisconnectedError:
            reason = "the CPE closed the connection without answering"
            return result(False, None, reason, "unreachable")
        except aiohttp.ClientResponseError as exc:  # e.g. a malformed HTTP answer
            reason = f"invalid HTTP answer from the CPE: {exc.message}"
            return result(False, None, reason, "refused")
        except aiohttp.ClientError as exc:
            return result(False, None, f"HTTP error: {exc}", "error")
        except OSError as exc:
            return result(False, None, f"network error: {exc}", "unreachable")

    @asynccontextmanager
    async def _slot(self, host: tuple[str, int], wait: _Wait) -> AsyncIterator[None]:
        """A slot towards ``host``, then one of the process's: waiting for the host's
        first means knocks piling up on one dead address hold no global slot."""
        gate = self._hosts.get(host)
        if gate is None:
            gate = self._hosts[host] = _HostGate(asyncio.Semaphore(self.max_per_host))
        gate.users += 1
        try:
            async with gate.slots:
                wait.phase = "global"
                async with self._gate:
                    wait.phase, wait.since = "exchange", time.monotonic()
                    yield
        finally:
            gate.users -= 1
            if gate.users == 0:
                del self._hosts[host]

    def _timeout_reason(self, host: tuple[str, int], wait: _Wait, start: float) -> str:
        limit = f"timeout after {self.timeout_s} s"
        if wait.phase == "host":
            return (
                f"{limit} waiting for a free slot: {self.max_per_host} connection requests"
                f" to {host[0]}:{host[1]} already in flight (the most allowed per host)"
            )
        if wait.phase == "global":
            return (
                f"{limit} waiting for a free slot: {self.max_concurrent} connection requests"
                " already in flight (the most allowed)"
            )
        waited = wait.since - start
        if waited >= 0.1 * self.timeout_s:  # say so when the wait ate much of the time
            return f"{limit} ({waited:.1f} s of it waiting for a free slot)"
        return limit

    async def _get(
        self, target: URL, authorization: str | None
    ) -> tuple[int, CIMultiDictProxy[str]]:
        headers = {"Authorization": authorization} if authorization else None
        async with self._http().get(
            target, headers=headers, allow_redirects=False, timeout=self._timeout
        ) as resp:
            return resp.status, resp.headers

    async def _exchange(self, target: URL, username: str, password: str) -> tuple[int, str]:
        """(status, reason) on success; raises _Refused with the reason otherwise."""
        origin = target.origin()
        for _hop in range(MAX_REDIRECTS + 1):
            status, headers = await self._get(target, None)
            if status == 401:
                scheme, authorization = self._answer(target, headers, username, password)
                status, headers = await self._get(target, authorization)
                if status == 401 and scheme == "digest" and _is_stale(headers):
                    # right password, expired nonce: one more try with the fresh one
                    scheme, authorization = self._answer(target, headers, username, password)
                    status, headers = await self._get(target, authorization)
                if status == 401:
                    raise _Refused(f"401 after {scheme}: wrong credentials", 401)
            if status in (301, 302, 303, 307, 308):
                location = headers.get("Location")
                if not location:
                    raise _Refused(f"HTTP {status} redirect without a Location", status)
                try:
                    nxt = target.join(URL(location))
                except ValueError:
                    raise _Refused(f"HTTP {status} redirect to an invalid URL", status) from None
                if nxt.origin() != origin:
                    raise _Refused(
                        f"HTTP {status} redirect to another host ({nxt.origin()}) not followed",
                        status,
                    )
                target = nxt
                continue
            if 200 <= status < 300:
                return status, "accepted" if status in (200, 204) else f"accepted (HTTP {status})"
            raise _Refused(_status_reason(status), status)
        raise _Refused(f"more than {MAX_REDIRECTS} redirects", None)

    def _answer(
        self, target: URL, headers: CIMultiDictProxy[str], username: str, password: str
    ) -> tuple[str, str]:
        """(scheme, Authorization value) for a 401's challenges, or _Refused saying why not."""
        challenges = parse_challenges(headers.getall("WWW-Authenticate", []))
        digest = next((c for c in challenges if c.scheme == "digest"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if not username:
            raise _Refused(
                "401: the CPE requires credentials but none are known for the device "
                "(ConnectionRequestUsername is empty)",
                401,
            )
        if digest is not None:
            try:
                value = digest_authorization(
                    digest.params, "GET", target.raw_path_qs, username, password
                )
            except ValueError as exc:
                if basic is None or not self.allow_basic:
                    raise _Refused(f"401: {exc}", 401) from None
            else:
                return "digest", value
        if basic is not None:
            if not self.allow_basic:
                raise _Refused("CPE offered only Basic auth, which is not allowed", 401)
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            return "basic", f"Basic {token}"
        offered = ", ".join(c.scheme for c in challenges) or "none"
        raise _Refused(f"401 without a usable challenge (schemes offered: {offered})", 401)
