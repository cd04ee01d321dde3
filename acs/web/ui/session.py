"""Browser sessions: the cookie, its lookup, and the CSRF synchronizer token.

The API accepts these sessions as well as Bearer tokens, so the UI's pages
and scripts act through the very routes API clients use. A request that a
cookie authenticates and that may change something must also carry the
session's CSRF token in the ``X-CSRF-Token`` header (or, for the UI's own
forms, a ``csrf`` field): a cross-site page can make the browser send the
cookie, but cannot read the token.
"""

from __future__ import annotations

import hmac
from datetime import timedelta

from aiohttp import web

from acs.config import Settings
from acs.store import tokens, users
from acs.web.api.errors import ApiError
from acs.web.api.plumbing import SERVICES, Services

COOKIE = "acs_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: the name API logs and ``createdBy`` fields give a UI user, apart from token names
USER_PREFIX = "user:"
SESSION = web.RequestKey("ui_session", users.UiSession)


def services_of(request: web.Request) -> Services:
    # config_dict: the UI is a sub-application and the services sit on its parent
    return request.config_dict[SERVICES]


def session_cookie(request: web.Request) -> str | None:
    value = request.cookies.get(COOKIE)
    # a real cookie value is 43 url-safe characters; anything else is not ours
    # (bytes beyond ASCII arrive as lone surrogates, which no query could take)
    return value if value and len(value) < 100 and value.isascii() else None


async def current_session(request: web.Request) -> users.UiSession | None:
    """The signed-in user's session, looked up once per request."""
    if SESSION in request:
        return request[SESSION]
    value = session_cookie(request)
    if value is None:
        return None
    svc = services_of(request)
    async with svc.pool.acquire() as conn:
        found = await users.find_session(
            conn,
            value,
            timedelta(seconds=svc.settings.ui_session_idle_s),
            timedelta(seconds=svc.settings.ui_session_max_s),
        )
    if found is not None:
        request[SESSION] = found
    return found


def csrf_ok(session: users.UiSession, presented: str | None) -> bool:
    # compare_digest: the time taken must not tell how much of a guess was right
    # surrogateescape: header bytes beyond ASCII arrive as lone surrogates
    return bool(presented) and hmac.compare_digest(
        session.csrf_token.encode(), (presented or "").encode("utf-8", "surrogateescape")
    )


async def api_identity(request: web.Request) -> tokens.ApiToken:
    """Who a cookie-authenticated API request speaks for, shaped like a token so
    that every route treats users and tokens alike."""
    session = await current_session(request)
    if session is None:
        raise ApiError(401, "unauthenticated", "your session has ended: sign in again at /ui/login")
    if request.method not in SAFE_METHODS and not csrf_ok(
        session, request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(
            403,
            "csrf",
            f"a request signed in by cookie must carry the {CSRF_HEADER} header of its session;"
            " reload the page and try again",
        )
    return tokens.ApiToken(
        name=USER_PREFIX + session.username,
        role=session.role,
        created_at=session.created_at,
        last_used_at=None,
        revoked_at=None,
    )


def cookie_secure(request: web.Request, settings: Settings) -> bool:
    if settings.ui_cookie_secure is not None:
        return settings.ui_cookie_secure
    # a TLS-terminating proxy talks plain HTTP to us; trusting its header can
    # only make the cookie stricter, never looser
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_cookie(
    response: web.StreamResponse,
    request: web.Request,
    name: str,
    value: str,
    *,
    max_age: float | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        path="/",  # the API under /api/v1 needs it as much as the pages under /ui
        max_age=None if max_age is None else int(max_age),
        httponly=True,
        samesite="Strict",
        secure=cookie_secure(request, services_of(request).settings),
    )


def clear_cookie(response: web.StreamResponse, request: web.Request, name: str) -> None:
    response.del_cookie(
        name,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=cookie_secure(request, services_of(request).settings),
    )
