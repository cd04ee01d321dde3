"""How the UI's pages read data: from /api/v1, as the signed-in user.

Pages are rendered on the server from the JSON the API returns to the user's
own session, fetched over this process's own listener. So the UI has no
second path to the database: the API's role checks, validation, filters and
errors apply to every read exactly as they do for API clients.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from yarl import URL

from acs.web.ui.session import COOKIE, services_of

CLIENT = web.AppKey("ui_api_client", aiohttp.ClientSession)
TIMEOUT_S = 60.0


class ApiFailure(Exception):
    """The API refused or failed; ``message`` is its own explanation."""

    def __init__(
        self, status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []


def seg(value: object) -> str:
    """One path segment, percent-encoded (a device id's own ``%`` included)."""
    return quote(str(value), safe="")


def _loopback(host: str) -> str:
    """An address of our own listener that this process can connect to."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass  # a host name
    return host


async def start_client(app: web.Application) -> None:
    app[CLIENT] = aiohttp.ClientSession(
        # the user's cookie is set per call; nothing may leak between users
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
    )


async def close_client(app: web.Application) -> None:
    await app[CLIENT].close()


async def api_get(request: web.Request, path: str, **query: Any) -> Any:
    """GET /api/v1<path> as the request's user; the decoded JSON, or ApiFailure.

    ``path`` is already percent-encoded (see ``seg``): device ids hold ``%``.
    """
    settings = services_of(request).settings
    base = f"http://{_loopback(settings.host)}:{settings.api_port}/api/v1"
    params = {
        k: str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in query.items()
        if v is not None
    }
    url = URL(base + path, encoded=True).with_query(params)
    headers = {
        "Cookie": f"{COOKIE}={request.cookies.get(COOKIE, '')}",
        "Accept": "application/json",
    }
    client = request.config_dict[CLIENT]
    try:
        async with client.get(url, headers=headers) as resp:
            if resp.content_type != "application/json":
                raise ApiFailure(
                    502, "bad_gateway", f"the API answered {resp.status} without a JSON body"
                )
            body = await resp.json()
            if resp.status >= 400:
                err = body.get("error", {}) if isinstance(body, dict) else {}
                raise ApiFailure(
                    resp.status,
                    str(err.get("code", "error")),
                    str(err.get("message", f"the API answered {resp.status}")),
                    err.get("errors") or [],
                )
            return body
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ApiFailure(
            502, "api_unreachable", f"the ACS API did not answer ({type(exc).__name__}: {exc})"
        ) from None
