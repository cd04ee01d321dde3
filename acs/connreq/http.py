"""Connection requests (TR-069 3.2.2): the ACS asks a CPE to open a session now.

An HTTP GET to the device's ConnectionRequestURL, authenticated with the
device's ConnectionRequestUsername/Password by HTTP Digest (aiohttp's
DigestAuthMiddleware answers the challenge); Basic only when an operator
allows it, since it sends the password in clear. Bounded in time, and in
number at once across the whole process, so a boot storm of knocks or a
region of dead CPEs cannot exhaust sockets.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp


@dataclass(slots=True)
class ConnectionRequestResult:
    ok: bool
    status: int | None
    reason: str
    elapsed_s: float


class ConnectionRequester:
    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        max_concurrent: int = 50,
        allow_basic: bool = False,
    ) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s)
        self.timeout_s = timeout_s
        self.allow_basic = allow_basic
        self._gate = asyncio.Semaphore(max_concurrent)
        self._connector: aiohttp.TCPConnector | None = None

    async def close(self) -> None:
        if self._connector is not None:
            await self._connector.close()

    async def send(self, url: str, username: str, password: str) -> ConnectionRequestResult:
        start = time.monotonic()

        def result(ok: bool, status: int | None, reason: str) -> ConnectionRequestResult:
            return ConnectionRequestResult(ok, status, reason, round(time.monotonic() - start, 3))

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return result(False, None, f"ConnectionRequestURL {url!r} is not an http(s) URL")
        async with self._gate:
            try:
                return await self._send(url, username, password, result)
            except TimeoutError:
                return result(False, None, f"timeout after {self.timeout_s} s")
            except aiohttp.ClientConnectorError as exc:
                return result(False, None, f"cannot connect: {exc.os_error or exc}")
            except aiohttp.ClientError as exc:
                return result(False, None, f"HTTP error: {exc}")

    async def _send(self, url: str, username: str, password: str, result):  # type: ignore[no-untyped-def]
        if self._connector is None or self._connector.closed:
            self._connector = aiohttp.TCPConnector(limit=0, force_close=True)
        middlewares = (aiohttp.DigestAuthMiddleware(username, password),) if username else ()
        async with (
            aiohttp.ClientSession(
                connector=self._connector,
                connector_owner=False,
                timeout=self.timeout,
                middlewares=middlewares,
            ) as http,
            http.get(url, allow_redirects=False) as resp,
        ):
            status = resp.status
            challenge = resp.headers.get("WWW-Authenticate", "")
        if status == 401 and challenge.lower().startswith("basic"):
            if not self.allow_basic:
                return result(
                    False, status, "the CPE offered only Basic auth, which is not allowed"
                )
            async with (
                aiohttp.ClientSession(
                    connector=self._connector,
                    connector_owner=False,
                    timeout=self.timeout,
                ) as http,
                http.get(
                    url,
                    allow_redirects=False,
                    headers={"Authorization": aiohttp.encode_basic_auth(username, password)},
                ) as resp,
            ):
                status = resp.status
        if status in (200, 204):
            return result(True, status, "accepted")
        if status == 401:
            return result(False, status, "401 after authentication: wrong credentials")
        if status == 503:
            return result(False, status, "HTTP 503 (the CPE is busy or rate-limits requests)")
        return result(False, status, f"HTTP {status}")
