"""The web UI's routes: sign-in and sign-out, and the pages.

Pages are rendered here from what /api/v1 returns to the signed-in user
(``apiclient.api_get``); every change a page makes is a request from the
browser to /api/v1 with the session cookie and the CSRF header (static/ui.js).
Only signing in and out are handled here, by forms.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from jinja2 import Environment

from acs.core import campaign_report as report_csv
from acs.core import filters
from acs.core.passwords import USERNAME
from acs.core.session_log import pretty
from acs.core.tasks import TASK_ARGS, XSD_TYPES
from acs.core.webhooks import EVENT_TYPES
from acs.logs import log
from acs.store import tokens, users
from acs.web.api.plumbing import api
from acs.web.ui import render
from acs.web.ui.apiclient import ApiFailure, api_get, close_client, seg, start_client
from acs.web.ui.session import (
    COOKIE,
    clear_cookie,
    csrf_ok,
    current_session,
    services_of,
    set_cookie,
)

logger = logging.getLogger("acs.ui")

PREFIX = "/ui"
LOGIN_CSRF = "acs_login_csrf"
ENV = web.AppKey("ui_env", Environment)
STATIC = Path(str(resources.files("acs.web.ui") / "static"))

# No inline script or style may run: a value a CPE reported that slipped past
# escaping still could not execute. Inline SVG attributes are not styles.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------- plumbing


def html(
    request: web.Request, template: str, ctx: dict[str, Any], status: int = 200
) -> web.Response:
    text = request.config_dict[ENV].get_template(template).render(**ctx)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def redirect(location: str) -> web.Response:
    # 303: after a POST the browser fetches the new page with GET
    return web.Response(status=303, headers={"Location": location})


def safe_next(target: str | None) -> str:
    """Only our own pages: an open redirect would lend our name to phishing."""
    if (
        target
        and target.startswith(PREFIX + "/")
        and not target.startswith("//")
        and "\\" not in target
        # CR/LF would split the Location header (aiohttp refuses to send it)
        and target.isprintable()
    ):
        return target
    return PREFIX + "/"


def error_page(
    request: web.Request,
    status: int,
    title: str,
    message: str,
    ctx: dict[str, Any] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> web.Response:
    base = {
        "user": None,
        "role": None,
        "csrf": "",
        "nav": "",
        "can_operate": False,
        "is_admin": False,
    }
    return html(
        request,
        "error.html",
        {
            **base,
            **(ctx or {}),
            "status": status,
            "title": title,
            "message": message,
            "details": details or [],
        },
        status,
    )


def failure_page(request: web.Request, f: ApiFailure, ctx: dict[str, Any]) -> web.StreamResponse:
    if f.status == 401:
        return redirect(f"{PREFIX}/login?next={quote(request.path_qs)}")
    titles = {400: "Invalid request", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
    status = f.status if f.status in titles else 502
    return error_page(
        request, status, titles.get(f.status, "The API failed"), f.message, ctx, f.errors
    )


def page(nav: str) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """A page for signed-in users; others are sent to sign in and brought back."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            session = await current_session(request)
            if session is None:
                return redirect(f"{PREFIX}/login?next={quote(request.path_qs)}")
            ctx: dict[str, Any] = {
                "user": session.username,
                "role": session.role,
                "csrf": session.csrf_token,
                "nav": nav,
                "can_operate": tokens.role_allows(session.role, "operator"),
                "is_admin": tokens.role_allows(session.role, "admin"),
                "params": dict(request.query),
            }
            try:
                return await handler(request, ctx)
            except ApiFailure as f:
                return failure_page(request, f, ctx)

        wrapped.__name__ = handler.__name__
        return wrapped

    return wrap


async def settle(coro: Coroutine[Any, Any, Any]) -> tuple[Any, ApiFailure | None]:
    """A section of a page that may fail on its own without failing the page."""
    try:
        return await coro, None
    except ApiFailure as f:
        return None, f


@web.middleware
async def ui_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_page(request, exc.status, exc.reason, _http_message(exc.status))
    except Exception as exc:  # the last net: a page and a log line, never a bare traceback
        ref = secrets.token_hex(4)
        logger.exception("event=ui_error ref=%s path=%s error=%r", ref, request.path, exc)
        response = error_page(
            request,
            500,
            "Something went wrong",
            f"The page could not be shown. The ACS log has the details under ref={ref}.",
        )
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith(PREFIX + "/static/"):
            # script and style change with upgrades: revalidate (ETag), never stale
            response.headers["Cache-Control"] = "no-cache"
    return response


def _http_message(status: int) -> str:
    return {
        404: "There is no such page. Use the menu to find your way.",
        405: "This address does not take that kind of request.",
        413: "The request is too large.",
    }.get(status, "The request could not be handled.")


# --------------------------------------------------------------------------- sign in / out


def _login_form(
    request: web.Request, status: int = 200, error: str = "", username: str = ""
) -> web.Response:
    token = secrets.token_urlsafe(24)
    response = html(
        request,
        "login.html",
        {
            "csrf": token,
            "error": error,
            "username": username,
            "next": safe_next(request.query.get("next")),
            "user": None,
            "role": None,
            "nav": "",
            "can_operate": False,
            "is_admin": False,
        },
        status,
    )
    # signing in is itself protected: a page elsewhere must not be able to
    # sign a victim into the attacker's account (double-submit: this cookie
    # and the form field must match)
    set_cookie(response, request, LOGIN_CSRF, token, max_age=3600)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    if await current_session(request) is not None:
        return redirect(safe_next(request.query.get("next")))
    return _login_form(request)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    token = str(form.get("csrf", ""))
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not token or not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        return _login_form(
            request,
            403,
            "The sign-in form had expired (or cookies are off). Please try again.",
            username,
        )
    if not username or not password:
        return _login_form(request, 400, "Enter your username and password.", username)
    address = request.remote or "unknown"
    svc = services_of(request)
    if USERNAME.fullmatch(username) is None:
        # a name no user can have (a NUL, which PostgreSQL cannot even compare) is
        # a wrong sign-in, answered without asking the database
        log(logger, logging.WARNING, "ui_login_failed", user=username, address=address)
        return _login_form(request, 401, "Wrong username or password.", username)
    attempt = await svc.sign_in.attempt(svc.pool, username, password, address)
    if attempt.retry_after > 0:
        minutes = max(1, round(attempt.retry_after / 60))
        log(logger, logging.WARNING, "ui_login_throttled", user=username, address=address)
        response = _login_form(
            request,
            429,
            f"Too many failed sign-ins for this account or address. Try again in {minutes} min.",
            username,
        )
        response.headers["Retry-After"] = str(int(attempt.retry_after) + 1)
        return response
    user = attempt.user
    if user is None:
        log(logger, logging.WARNING, "ui_login_failed", user=username, address=address)
        # one message for both cases: which usernames exist is not for strangers
        return _login_form(request, 401, "Wrong username or password.", username)
    async with svc.pool.acquire() as conn:
        session_id, _ = await users.open_session(
            conn, user.username, timedelta(seconds=svc.settings.ui_session_idle_s)
        )
    log(logger, logging.INFO, "ui_login", user=user.username, address=address)
    response = redirect(safe_next(str(form.get("next", "")) or None))
    set_cookie(response, request, COOKIE, session_id)
    clear_cookie(response, request, LOGIN_CSRF)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    session = await current_session(request)
    if session is None:
        return redirect(f"{PREFIX}/login")
    form = await request.post()
    if not csrf_ok(session, str(form.get("csrf", ""))):
        return error_page(
            request,
            403,
            "Not signed out",
            "The request did not carry this page's security token. Reload the page and use"
            " the Sign out button.",
        )
    async with services_of(request).pool.acquire() as conn:
        await users.close_session(conn, request.cookies[COOKIE])
    log(logger, logging.INFO, "ui_logout", user=session.username)
    response = redirect(f"{PREFIX}/login")
    clear_cookie(response, request, COOKIE)
    return response


# --------------------------------------------------------------------------- overview


HISTORY_CHARTS = {
    "sessions": "Sessions",
    "boots": "Boots (1 BOOT Informs)",
    "jobs_faulted": "Jobs in fault",
    "connection_requests": "Connection requests",
    "online": "Devices online (seen within the hour)",
}
# span -> (step, points per axis label)
HISTORY_SPANS = {"24h": ("1h", 3), "30d": ("1d", 5)}


async def history_charts(request: web.Request, span: str) -> list[dict[str, Any]]:
    step, every = HISTORY_SPANS[span]
    since = datetime.now(UTC) - (timedelta(days=1) if span == "24h" else timedelta(days=30))
    data = await api_get(
        request, "/history", metrics=",".join(HISTORY_CHARTS), step=step, since=_iso(since)
    )
    return [
        {
            "metric": s["metric"],
            "title": HISTORY_CHARTS[s["metric"]],
            "total": sum(v for _, v in s["points"]),
            "chart": render.time_chart(
                s["points"], title=HISTORY_CHARTS[s["metric"]], label_every=every
            ),
        }
        for s in data["series"]
    ]


@page("overview")
async def overview_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    span = request.query.get("span", "24h")
    span = span if span in HISTORY_SPANS else "24h"
    data, (charts, charts_failed) = await asyncio.gather(
        api_get(request, "/overview"), settle(history_charts(request, span))
    )
    by_product = [
        render.Bar(
            p["productClass"],
            (p["total"], p["lastDay"], p["lastHour"]),
            f"{PREFIX}/devices?filter=" + quote(f'DeviceID.ProductClass = "{p["productClass"]}"'),
        )
        for p in data["byProduct"][:20]
    ]
    by_software = [
        render.Bar(
            f"{s['productClass']} {s['softwareVersion'] or '(unknown)'}",
            (s["total"], s["lastDay"], s["lastHour"]),
            f"{PREFIX}/devices?filter="
            + quote(
                f'DeviceID.ProductClass = "{s["productClass"]}" AND '
                + (
                    f'SoftwareVersion = "{s["softwareVersion"]}"'
                    if s["softwareVersion"] is not None
                    else "SoftwareVersion IS NULL"
                )
            ),
        )
        for s in data["bySoftware"][:20]
    ]
    series = ("all devices", "seen in the last day", "seen in the last hour")
    return html(
        request,
        "overview.html",
        {
            **ctx,
            "data": data,
            "quick_hour": quick_filters(datetime.now(UTC))[1][1],
            "product_chart": render.bar_chart(by_product, series, title="Devices by product"),
            "software_chart": render.bar_chart(
                by_software, series, title="Devices by product and software version"
            ),
            "history": charts or [],
            "history_failed": charts_failed,
            "span": span,
        },
    )


# --------------------------------------------------------------------------- devices

COLUMNS = {
    "id": "Device ID",
    "serialNumber": "Serial number",
    "productClass": "Product",
    "oui": "OUI",
    "manufacturer": "Manufacturer",
    "softwareVersion": "Software",
    "hardwareVersion": "Hardware",
    "lastInform": "Last Inform",
    "registered": "Registered",
    "lastBoot": "Last boot",
    "provisioningCode": "Provisioning code",
    "cwmpVersion": "CWMP",
    "tags": "Tags",
    "connectionRequestUrl": "Connection request URL",
}
DEFAULT_COLUMNS = ["serialNumber", "productClass", "softwareVersion", "lastInform", "tags"]
SORTS = {
    "id": "Device ID",
    "last_inform": "Last Inform",
    "product_class": "Product",
    "software_version": "Software",
    "serial_number": "Serial number",
}
PAGE_SIZES = (25, 50, 100, 200)
CSV_MAX_ROWS = 100_000


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quick_filters(now: datetime) -> list[tuple[str, str]]:
    hour, day = _iso(now - timedelta(hours=1)), _iso(now - timedelta(days=1))
    return [
        ("All devices", ""),
        ("Seen in the last hour", f'LastInform > "{hour}"'),
        ("Seen in the last day", f'LastInform > "{day}"'),
        ("Not seen for a day", f'LastInform < "{day}" OR LastInform IS NULL'),
        ("Booted in the last hour", f'LastBoot > "{hour}"'),
    ]


def device_columns(query: Any) -> tuple[list[str], list[str]]:
    """(device fields, parameter paths) to show, from the page's query string."""
    fields = [c for c in query.getall("col", []) if c in COLUMNS] or list(DEFAULT_COLUMNS)
    raw = query.get("params", "")
    paths = [p.strip() for p in raw.replace(",", " ").split() if p.strip()][:20]
    return fields, paths


def _device_query(request: web.Request) -> dict[str, Any]:
    q = request.query
    sort = q.get("sort", "id") if q.get("sort") in SORTS else "id"
    order = "desc" if q.get("order") == "desc" else "asc"
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        limit = 50
    limit = limit if limit in PAGE_SIZES else 50
    return {"filter": q.get("filter", ""), "sort": sort, "order": order, "limit": limit}


@page("devices")
async def devices_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    dq = _device_query(request)
    fields, paths = device_columns(request.query)
    cursor = request.query.get("cursor") or None
    try:
        page_no = max(1, int(request.query.get("page", "1")))
    except ValueError:
        page_no = 1
    result, failure = await settle(
        api_get(request, "/devices", cursor=cursor, projection=",".join(paths), **dq)
    )
    files: list[dict[str, Any]] = []
    if ctx["can_operate"]:
        listed, _ = await settle(api_get(request, "/files"))
        files = listed["items"] if listed else []
    keep = {
        **dq,
        "col": fields if fields != DEFAULT_COLUMNS else [],
        "params": " ".join(paths),
    }
    return html(
        request,
        "devices.html",
        {
            **ctx,
            **dq,
            "result": result,
            "failure": failure,
            "fields": fields,
            "paths": paths,
            "columns": COLUMNS,
            "sorts": SORTS,
            "page_sizes": PAGE_SIZES,
            "page_no": page_no,
            "keep": keep,
            "quick": quick_filters(datetime.now(UTC)),
            "files": files,
        },
        400 if failure is not None and failure.status == 400 else 200,
    )


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = str(value)
    # a cell starting with = + - @ is a formula to spreadsheet programs: a CPE
    # could otherwise plant one in an exported value
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@page("devices")
async def devices_csv(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    dq = _device_query(request) | {"limit": 1000}
    fields, paths = device_columns(request.query)
    # the first page is fetched before the response starts, so a bad filter
    # still gets an error page instead of a broken download
    first = await api_get(request, "/devices", projection=",".join(paths), **dq)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="devices-{stamp}.csv"',
            **SECURITY_HEADERS,
        }
    )
    await response.prepare(request)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([COLUMNS[f] for f in fields] + paths)
    page_data, rows = first, 0
    while True:
        for item in page_data["items"]:
            values = [item.get(f) for f in fields]
            params = item.get("parameters") or {}
            values += [(params.get(p) or {}).get("value") for p in paths]
            writer.writerow([_csv_cell(v) for v in values])
            rows += 1
        await response.write(buf.getvalue().encode())
        buf.seek(0)
        buf.truncate()
        cursor = page_data.get("nextCursor")
        if not cursor or rows >= CSV_MAX_ROWS:
            break
        try:
            page_data = await api_get(
                request, "/devices", projection=",".join(paths), cursor=cursor, **dq
            )
        except ApiFailure as f:
            # the download has started: say so in the file rather than cut it silently
            writer.writerow([f"# export stopped after {rows} rows: {f.message}"])
            await response.write(buf.getvalue().encode())
            break
    await response.write_eof()
    return response


# --------------------------------------------------------------------------- one device


def tree_view(
    parameters: dict[str, dict[str, Any]], prefix: str, search: str, limit: int = 500
) -> dict[str, Any]:
    """What the parameter browser shows under ``prefix``: child objects with the
    number of parameters beneath, the parameters right under it, or, when
    searching, every parameter of the subtree whose path or value matches."""
    if search:
        needle = search.lower()
        hits = [
            (path, p)
            for path, p in parameters.items()
            if not p.get("object")
            and (needle in path.lower() or needle in str(p.get("value") or "").lower())
        ]
        return {
            "matches": hits[:limit],
            "more": max(0, len(hits) - limit),
            "objects": [],
            "leaves": [],
        }
    objects: dict[str, int] = {}
    leaves = []
    for path, p in parameters.items():
        if not path.startswith(prefix) or path == prefix:
            continue
        rest = path[len(prefix) :]
        head, dot, _ = rest.partition(".")
        if dot:
            child = prefix + head + "."
            objects.setdefault(child, 0)
            if not p.get("object"):
                objects[child] += 1
        elif not p.get("object"):
            leaves.append((path, p))
    return {
        "matches": None,
        "more": 0,
        "objects": sorted(objects.items(), key=lambda kv: _natural(kv[0])),
        "leaves": sorted(leaves, key=lambda kv: _natural(kv[0])),
    }


def _natural(path: str) -> list[tuple[int, Any]]:
    # instance numbers in numeric order: SSID.2 before SSID.10
    return [(0, int(s)) if s.isdigit() else (1, s) for s in path.split(".")]


def crumbs(prefix: str) -> list[tuple[str, str]]:
    out, acc = [], ""
    for part in [p for p in prefix.split(".") if p]:
        acc += part + "."
        out.append((part, acc))
    return out


def session_log_path(device_id: str) -> str | None:
    """Session logs come from another part of the project; link to them only
    once the API has the route."""
    for r in api.routes:
        if r.method == "GET" and r.path.startswith("/api/v1/devices/{device_id}/session"):
            return f"{PREFIX}/devices/{seg(device_id)}/sessions"
    return None


@page("devices")
async def device_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    dev_id = request.match_info["device_id"]
    prefix = request.query.get("prefix", "")
    search = request.query.get("q", "").strip()
    base = f"/devices/{seg(dev_id)}"
    device = await api_get(request, base, prefix=prefix)  # 404 fails the page: nothing to show
    tasks, firmware, policies, files, backups, reach = await asyncio.gather(
        settle(api_get(request, base + "/tasks")),
        settle(api_get(request, base + "/firmware")),
        settle(api_get(request, base + "/policies")),
        settle(api_get(request, "/files")) if ctx["can_operate"] else _none(),
        settle(api_get(request, base + "/backups")),
        settle(api_get(request, base + "/connection-request")),
    )
    software, (history, _), (events, _) = await asyncio.gather(
        settle(api_get(request, base + "/software")),
        settle(api_get(request, base + "/history", days=30)),
        settle(api_get(request, base + "/events", limit=20)),
    )
    device_history = [
        {
            "metric": h["metric"],
            "title": {"sessions": "Sessions", "jobs_faulted": "Jobs in fault"}[h["metric"]],
            "total": sum(v for _, v in h["points"]),
            "chart": render.time_chart(
                h["points"], title=f"{h['metric']} per day", label_every=5, width=480
            ),
        }
        for h in (history or {}).get("series", [])
    ]
    return html(
        request,
        "device.html",
        {
            **ctx,
            "d": device,
            "dev_id": dev_id,
            "prefix": prefix,
            "search": search,
            "crumbs": crumbs(prefix),
            "tree": tree_view(device.get("parameters") or {}, prefix, search),
            "tasks": tasks,
            "firmware": firmware,
            "policies": policies,
            "files": (files[0] or {}).get("items", []),
            "task_names": sorted(TASK_ARGS),
            "device_history": device_history,
            "events": None if events is None else events["items"],
            "session_log": session_log_path(dev_id),
            "software": software,
            "backups": backups,
            "reach": reach,  # the Reach panel (_reach.html)
        },
    )


# --------------------------------------------------------------------------- session logs


def _session_view(log: dict[str, Any]) -> dict[str, Any]:
    """A stored session as the viewer shows it: each message indented, with its
    time from the session's start, and the RPC sequence as one line."""
    started = datetime.fromisoformat(log["started"].replace("Z", "+00:00"))
    messages = []
    for m in log["messages"]:
        at = datetime.fromisoformat(m["at"].replace("Z", "+00:00"))
        messages.append(
            {
                **m,
                "offsetMs": int((at - started).total_seconds() * 1000),
                "pretty": pretty(m["body"]),
            }
        )
    return {
        **log,
        "messages": messages,
        "sequence": [m["rpc"] or "(empty)" for m in log["messages"]],
    }


@page("devices")
async def sessions_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    dev_id = request.match_info["device_id"]
    data = await api_get(request, f"/devices/{seg(dev_id)}/sessions")
    return html(request, "sessions.html", {**ctx, "dev_id": dev_id, "sessions": data["items"]})


@page("devices")
async def session_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    dev_id, sid = request.match_info["device_id"], request.match_info["session_id"]
    log = await api_get(request, f"/devices/{seg(dev_id)}/sessions/{seg(sid)}")
    return html(request, "session.html", {**ctx, "dev_id": dev_id, "s": _session_view(log)})


@page("devices")
async def session_download(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    """The session as one text file: each message with its direction, time and
    status, then its body (secrets masked, as stored)."""
    dev_id, sid = request.match_info["device_id"], request.match_info["session_id"]
    log = await api_get(request, f"/devices/{seg(dev_id)}/sessions/{seg(sid)}")
    out = io.StringIO()
    out.write(f"# device {dev_id} session {log['id']} ({log['sessionKey']})\n")
    out.write(f"# {log['started']} .. {log['ended']} outcome={log['outcome']}")
    out.write(f" reason={log['reason']}\n" if log.get("reason") else "\n")
    out.write(f"# events: {', '.join(log['events'])}\n\n")
    for m in log["messages"]:
        arrow = "CPE -> ACS" if m["direction"] == "in" else "ACS -> CPE"
        status = f" HTTP {m['status']}" if m.get("status") else ""
        out.write(f"=== {arrow} {m['at']} {m['rpc'] or '(empty)'}{status} {m['size']} bytes\n")
        out.write(pretty(m["body"]).rstrip() + "\n\n")
    name = f"session-{log['id']}.txt"
    return web.Response(
        text=out.getvalue(),
        content_type="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _none() -> tuple[None, None]:
    return None, None


# --------------------------------------------------------------------------- bulk jobs


@page("bulk")
async def bulk_jobs_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    jobs, files = await asyncio.gather(
        api_get(request, "/bulk-jobs", limit=100),
        settle(api_get(request, "/files")) if ctx["can_operate"] else _none(),
    )
    return html(
        request,
        "bulk_jobs.html",
        {
            **ctx,
            "jobs": jobs["items"],
            "files": (files[0] or {}).get("items", []),
            "filter": request.query.get("filter", ""),
        },
    )


async def _bulk_data(request: web.Request) -> dict[str, Any]:
    bid = request.match_info["bulk_id"]
    job, devices = await asyncio.gather(
        api_get(request, f"/bulk-jobs/{seg(bid)}"),
        api_get(request, f"/bulk-jobs/{seg(bid)}/devices", limit=200),
    )
    return {
        "j": job,
        "devices": devices["items"],
        "live": job["status"] in ("running", "paused"),
    }


@page("bulk")
async def bulk_job_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    return html(request, "bulk_job.html", {**ctx, **await _bulk_data(request)})


@page("bulk")
async def bulk_job_progress(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    """The live part of a bulk job's page, fetched again every few seconds."""
    return html(request, "bulk_job_progress.html", {**ctx, **await _bulk_data(request)})


# --------------------------------------------------------------------------- jobs and faults

# the Jobs page's filters, passed on to GET /api/v1/tasks as they are
JOB_FILTERS = ("status", "name", "faultCode", "filter", "device", "openFaults")
JOB_STATUSES = ("pending", "running", "done", "fault", "expired", "cancelled")
JOB_GROUPS = {
    "faultCode": "Fault code",
    "productClass": "Product",
    "softwareVersion": "Firmware",
    "name": "Job",
    "status": "Status",
}


def job_selection(query: dict[str, str], group: dict[str, str | None] | None = None) -> str:
    """The body of POST /tasks/retry|cancel for the page's filters (and one group)."""
    return json.dumps(_selection_body(query, group))


def _selection_body(
    query: dict[str, str], group: dict[str, str | None] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if query.get("status"):
        body["status"] = [s for s in query["status"].split(",") if s]
    if query.get("name"):
        body["name"] = [n for n in query["name"].split(",") if n]
    if query.get("faultCode", "").isdigit():
        body["faultCode"] = int(query["faultCode"])
    if query.get("device"):
        body["device"] = query["device"]
    if query.get("openFaults") == "true":
        body["openFaults"] = True
    clauses = [f"({query['filter']})"] if query.get("filter") else []
    for key, value in (group or {}).items():
        if key == "faultCode" and value is not None:
            body["faultCode"] = int(value)
        elif key == "name" and value is not None:
            body["name"] = [value]
        elif key == "status" and value is not None:
            body["status"] = [value]
        elif key in ("productClass", "softwareVersion"):
            field = "DeviceID.ProductClass" if key == "productClass" else "SoftwareVersion"
            clauses.append(
                f"{field} IS NULL" if value is None else f"{field} = {filters.quote(value)}"
            )
    if clauses:
        body["filter"] = " AND ".join(clauses)
    return body


def jobs_link(**query: str) -> str:
    return f"{PREFIX}/jobs?" + urlencode({k: v for k, v in query.items() if v})


@page("jobs")
async def jobs_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    q = {k: request.query[k].strip() for k in JOB_FILTERS if request.query.get(k, "").strip()}
    by = request.query.get("by", "")
    by = by if by in JOB_GROUPS else ""
    (jobs, failed), (groups, groups_failed) = await asyncio.gather(
        settle(api_get(request, "/tasks", limit=50, cursor=request.query.get("cursor"), **q)),
        settle(api_get(request, "/tasks/groups", by=by, **q)) if by else _none(),
    )
    group_rows = [
        {
            **g,
            "selection": job_selection(q, g["key"]),
            "link": jobs_link(**(q | _group_filters(q, g["key"]))),
        }
        for g in (groups or {}).get("groups", [])
    ]
    return html(
        request,
        "jobs.html",
        {
            **ctx,
            "q": q,
            "by": by,
            "groups_by": JOB_GROUPS,
            "statuses": JOB_STATUSES,
            "jobs": jobs,
            "failed": failed or groups_failed,
            "groups": group_rows,
            "selection": job_selection(q),
            "next_link": jobs_link(**q, by=by, cursor=str(jobs["nextCursor"]))
            if jobs and jobs.get("nextCursor")
            else None,
        },
    )


def _group_filters(q: dict[str, str], key: dict[str, str | None]) -> dict[str, str]:
    """The Jobs page's query that lists one group's jobs."""
    out: dict[str, str] = {}
    body = _selection_body(q, key)
    if "faultCode" in body:
        out["faultCode"] = str(body["faultCode"])
    if "name" in body:
        out["name"] = ",".join(body["name"])
    if "status" in body:
        out["status"] = ",".join(body["status"])
    if "filter" in body:
        out["filter"] = body["filter"]
    return out


@page("faults")
async def faults_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    device_filter = request.query.get("filter", "").strip()
    data, failed = await settle(api_get(request, "/faults", filter=device_filter or None))
    groups = []
    for g in (data or {}).get("groups", []):
        base = (
            {"openFaults": "true", "filter": device_filter}
            if device_filter
            else {"openFaults": "true"}
        )
        key = {"faultCode": g["key"]["faultCode"], "productClass": g["key"]["productClass"]}
        groups.append(
            {
                **g,
                "selection": job_selection(base, key),
                "link": jobs_link(status="fault", **_group_filters(base, key), openFaults="true"),
            }
        )
    return html(
        request,
        "faults.html",
        {
            **ctx,
            "groups": groups,
            "total": (data or {}).get("total", 0),
            "failed": failed,
            "filter": device_filter,
        },
    )


# --------------------------------------------------------------------------- files


@page("files")
async def files_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    files, images = await asyncio.gather(
        api_get(request, "/files"), api_get(request, "/firmware/images")
    )
    return html(request, "files.html", {**ctx, "files": files["items"], "images": images["items"]})


# --------------------------------------------------------------------------- campaigns


@page("campaigns")
async def campaigns_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    campaigns, images = await asyncio.gather(
        api_get(request, "/campaigns"), api_get(request, "/firmware/images")
    )
    return html(
        request,
        "campaigns.html",
        {
            **ctx,
            "campaigns": campaigns["items"],
            "images": images["items"],
            # a campaign's target as operators name it: product, version, file
            "image_names": {
                i["id"]: f"{i['productClass']} {i['version']} ({i['file']})"
                for i in images["items"]
            },
        },
    )


REPORT_ROWS = 200  # devices of the report on the campaign page; the CSV has them all
REPORT_CSV_PAGE = 5000


async def _campaign_data(request: web.Request) -> dict[str, Any]:
    cid = request.match_info["campaign_id"]
    campaign, failed, images, report = await asyncio.gather(
        api_get(request, f"/campaigns/{seg(cid)}"),
        api_get(request, f"/campaigns/{seg(cid)}/devices", state="failed", limit=100),
        api_get(request, "/firmware/images"),
        api_get(request, f"/campaigns/{seg(cid)}/report", limit=REPORT_ROWS),
    )
    return {
        "c": campaign,
        "image": next((i for i in images["items"] if i["id"] == campaign["image"]), None),
        "failed": failed["items"],
        "report": report,
        "live": campaign["status"] in ("running", "paused"),
    }


@page("campaigns")
async def campaign_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    return html(request, "campaign.html", {**ctx, **await _campaign_data(request)})


@page("campaigns")
async def campaign_report_csv(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    """The campaign's report, every device, as the API's CSV (read as this user)."""
    cid = request.match_info["campaign_id"]
    path = f"/campaigns/{seg(cid)}/report"
    # the first page before the response starts: an unknown campaign is an error page
    data = await api_get(request, path, limit=REPORT_CSV_PAGE)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="campaign-{data["campaign"]}-report.csv"',
            **SECURITY_HEADERS,
        }
    )
    await response.prepare(request)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(report_csv.COLUMNS)
    while True:
        for device in data["devices"]:
            writer.writerow(report_csv.row(device))
        await response.write(buf.getvalue().encode())
        buf.seek(0)
        buf.truncate()
        if not data["next"]:
            break
        data = await api_get(request, path, after=data["next"], limit=REPORT_CSV_PAGE)
    await response.write_eof()
    return response


@page("campaigns")
async def campaign_progress(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    """The live part of a campaign page, fetched again every few seconds."""
    return html(request, "campaign_progress.html", {**ctx, **await _campaign_data(request)})


# --------------------------------------------------------------------------- policies

POLICY_FIELDS = (
    "name",
    "description",
    "enabled",
    "priority",
    "precondition",
    "events",
    "windows",
    "parameters",
    "objects",
    "attributes",
    "refresh",
    "tags",
    "download",
    "backup",
)
EXAMPLE_POLICY = {
    "name": "wifi-defaults",
    "description": "",
    "enabled": False,
    "priority": 10,
    "precondition": 'DeviceID.ProductClass = "HGW"',
    "events": ["0 BOOTSTRAP", "1 BOOT"],
    "parameters": [{"path": "WiFi.SSID.1.SSID", "value": "home-{DeviceID.SerialNumber[-4:]}"}],
}


@page("policies")
async def policies_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    listed = await api_get(request, "/policies")
    return html(request, "policies.html", {**ctx, "policies": listed["items"]})


@page("policies")
async def policy_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    pid = request.match_info.get("policy_id")
    if pid is None:
        policy, doc = None, EXAMPLE_POLICY
    else:
        policy = await api_get(request, f"/policies/{seg(pid)}")
        doc = {k: policy[k] for k in POLICY_FIELDS if policy.get(k) not in (None, [], {})}
        doc.setdefault("enabled", policy["enabled"])
    return html(
        request,
        "policy.html",
        {
            **ctx,
            "policy": policy,
            "doc": json.dumps(doc, indent=2, ensure_ascii=False),
            "xsd_types": sorted(XSD_TYPES),
        },
    )


# --------------------------------------------------------------------------- admin and account


@page("admin")
async def admin_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    if not ctx["is_admin"]:
        return error_page(
            request,
            403,
            "Not allowed",
            f"The admin page needs the admin role; you are signed in as {ctx['role']}.",
            ctx,
        )
    listed_users, listed_tokens, settings = await asyncio.gather(
        api_get(request, "/users"), api_get(request, "/tokens"), api_get(request, "/settings")
    )
    return html(
        request,
        "admin.html",
        {
            **ctx,
            "users": listed_users["items"],
            "tokens": listed_tokens["items"],
            "settings": settings["settings"],
        },
    )


def _admin_only(request: web.Request, ctx: dict[str, Any], what: str) -> web.Response | None:
    if ctx["is_admin"]:
        return None
    return error_page(
        request,
        403,
        "Not allowed",
        f"The {what} page needs the admin role; you are signed in as {ctx['role']}.",
        ctx,
    )


AUDIT_FILTERS = ("actor", "action", "object", "objectType", "since", "until")


@page("audit")
async def audit_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    if (refused := _admin_only(request, ctx, "audit log")) is not None:
        return refused
    q = {k: request.query[k].strip() for k in AUDIT_FILTERS if request.query.get(k, "").strip()}
    data, failed = await settle(
        api_get(request, "/audit", limit=100, cursor=request.query.get("cursor"), **q)
    )
    next_link = None
    if data and data.get("nextCursor"):
        next_link = f"{PREFIX}/audit?" + urlencode(q | {"cursor": data["nextCursor"]})
    return html(
        request,
        "audit.html",
        {
            **ctx,
            "q": q,
            "entries": (data or {}).get("items", []),
            "failed": failed,
            "next_link": next_link,
        },
    )


@page("webhooks")
async def webhooks_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    if (refused := _admin_only(request, ctx, "webhooks")) is not None:
        return refused
    data = await api_get(request, "/webhooks")
    return html(
        request, "webhooks.html", {**ctx, "hooks": data["items"], "event_types": EVENT_TYPES}
    )


@page("webhooks")
async def webhook_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    if (refused := _admin_only(request, ctx, "webhooks")) is not None:
        return refused
    hook_id = request.match_info["webhook_id"]
    state = request.query.get("state") or None
    hooks, deliveries = await asyncio.gather(
        api_get(request, "/webhooks"),
        api_get(
            request,
            f"/webhooks/{seg(hook_id)}/deliveries",
            state=state,
            cursor=request.query.get("cursor"),
        ),
    )
    hook = next((h for h in hooks["items"] if str(h["id"]) == hook_id), None)
    if hook is None:
        return error_page(request, 404, "Not found", f"There is no webhook {hook_id}.", ctx)
    next_link = None
    if deliveries.get("nextCursor"):
        query = {"cursor": deliveries["nextCursor"]} | ({"state": state} if state else {})
        next_link = f"{PREFIX}/webhooks/{seg(hook_id)}?" + urlencode(query)
    return html(
        request,
        "webhook.html",
        {
            **ctx,
            "hook": hook,
            "deliveries": deliveries["items"],
            "state": state,
            "next_link": next_link,
        },
    )


@page("account")
async def account_page(request: web.Request, ctx: dict[str, Any]) -> web.StreamResponse:
    me = await api_get(request, "/me")
    return html(request, "account.html", {**ctx, "me": me})


# --------------------------------------------------------------------------- the app


async def to_ui(_request: web.Request) -> web.StreamResponse:
    return redirect(PREFIX + "/")


def ui_app() -> web.Application:
    app = web.Application(middlewares=[ui_middleware])
    app[ENV] = render.environment()
    app.on_startup.append(start_client)
    app.on_cleanup.append(close_client)
    r = app.router
    r.add_get("/", overview_page)
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/devices", devices_page)
    r.add_get("/devices.csv", devices_csv)
    r.add_get("/devices/{device_id}", device_page)
    r.add_get("/devices/{device_id}/sessions", sessions_page)
    r.add_get("/devices/{device_id}/sessions/{session_id}", session_page)
    r.add_get("/devices/{device_id}/sessions/{session_id}/download", session_download)
    r.add_get("/bulk-jobs", bulk_jobs_page)
    r.add_get("/bulk-jobs/{bulk_id}", bulk_job_page)
    r.add_get("/bulk-jobs/{bulk_id}/progress", bulk_job_progress)
    r.add_get("/jobs", jobs_page)
    r.add_get("/faults", faults_page)
    r.add_get("/files", files_page)
    r.add_get("/campaigns", campaigns_page)
    r.add_get("/campaigns/{campaign_id}", campaign_page)
    r.add_get("/campaigns/{campaign_id}/progress", campaign_progress)
    r.add_get("/campaigns/{campaign_id}/report.csv", campaign_report_csv)
    r.add_get("/policies", policies_page)
    r.add_get("/policies/new", policy_page)
    r.add_get("/policies/{policy_id}", policy_page)
    r.add_get("/admin", admin_page)
    r.add_get("/audit", audit_page)
    r.add_get("/webhooks", webhooks_page)
    r.add_get("/webhooks/{webhook_id}", webhook_page)
    r.add_get("/account", account_page)
    r.add_static("/static", STATIC)
    return app


def install(app: web.Application) -> None:
    """Serve the UI under /ui of the API application."""
    app.add_subapp(PREFIX, ui_app())
    app.router.add_get("/", to_ui)
    app.router.add_get(PREFIX, to_ui)
