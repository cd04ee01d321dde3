"""The web UI over plain HTTP (no browser): sign-in, cookies, CSRF, roles, error pages.

The browser tests (test_ui.py) drive the same pages through Chromium; these
pin the security rules exactly, and run on machines without a browser.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.services import accounts
from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_api import Client, registered, token

pytestmark = pytest.mark.db

PASSWORD = "a long enough secret"


async def make_user(pool: asyncpg.Pool, unique_serial, role: str) -> str:
    name = unique_serial(f"{role}-").lower()
    async with pool.acquire() as conn:
        await accounts.create_user(conn, name, PASSWORD, role)
    return name


class Browserless:
    """A cookie-keeping HTTP client that signs in as a person would."""

    def __init__(self, running: Running) -> None:
        self.base = f"http://127.0.0.1:{running.ports['api']}"
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self, username: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        async with self.http.get(self.base + "/ui/login") as resp:
            page = await resp.text()
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token is not None
        async with self.http.post(
            self.base + "/ui/login",
            data={"username": username, "password": password, "csrf": token.group(1)},
            allow_redirects=False,
        ) as resp:
            await resp.read()
        if resp.status == 303:
            self.csrf = await self.page_csrf()
        return resp

    async def page_csrf(self) -> str:
        async with self.http.get(self.base + "/ui/account") as resp:
            page = await resp.text()
        found = re.search(r'<meta name="csrf-token" content="([^"]*)">', page)
        assert found is not None
        return found.group(1)

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.http.get(self.base + path, allow_redirects=False, **kw) as resp:
            return resp.status, await resp.text()

    async def api(self, method: str, path: str, csrf: bool = True, **kw: Any) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        headers |= kw.pop("headers", {})
        async with self.http.request(
            method, self.base + "/api/v1" + path, headers=headers, **kw
        ) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, body

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def people(acs: Running, db_pool: asyncpg.Pool, unique_serial):
    made: dict[str, Browserless] = {}
    for role in ("viewer", "operator", "admin"):
        b = Browserless(acs)
        b.name = await make_user(db_pool, unique_serial, role)  # type: ignore[attr-defined]
        assert (await b.login(b.name)).status == 303  # type: ignore[attr-defined]
        made[role] = b
    yield made
    for b in made.values():
        await b.close()


async def test_sign_in_sets_a_strict_http_only_cookie_and_lands_on_the_overview(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    b = Browserless(acs)
    try:
        name = await make_user(db_pool, unique_serial, "viewer")
        status, _ = await b.get("/ui/devices")
        assert status == 303  # not signed in: sent to sign in, and brought back after
        resp = await b.login(name)
        assert resp.status == 303 and resp.headers["Location"] == "/ui/"
        cookie = resp.headers.getall("Set-Cookie")
        session = next(c for c in cookie if c.startswith("acs_session="))
        assert "HttpOnly" in session and "SameSite=Strict" in session and "Path=/" in session
        assert "Secure" not in session  # plain HTTP here
        status, page = await b.get("/ui/")
        assert status == 200 and "Overview" in page and name in page
        assert "Content-Security-Policy" in (await b.http.get(b.base + "/ui/")).headers
    finally:
        await b.close()


async def test_the_cookie_is_secure_behind_a_tls_proxy(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    b = Browserless(acs)
    try:
        name = await make_user(db_pool, unique_serial, "viewer")
        async with b.http.get(b.base + "/ui/login") as resp:
            token = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
        assert token is not None
        async with b.http.post(
            b.base + "/ui/login",
            data={"username": name, "password": PASSWORD, "csrf": token.group(1)},
            headers={"X-Forwarded-Proto": "https"},
            allow_redirects=False,
        ) as resp:
            session = next(c for c in resp.headers.getall("Set-Cookie") if "acs_session=" in c)
        assert "Secure" in session
    finally:
        await b.close()


async def test_wrong_passwords_get_one_message_and_then_a_pause(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    b = Browserless(acs)
    try:
        name = await make_user(db_pool, unique_serial, "viewer")
        for _ in range(5):
            resp = await b.login(name, "not the password")
            assert resp.status == 401
        unknown = await b.login("nobody-" + name, "not the password")
        assert unknown.status == 401  # the same answer: which users exist stays unknown
        blocked = await b.login(name)  # even the right password waits now
        assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 0
        status, page = await b.get("/ui/")
        assert status == 303
    finally:
        await b.close()


async def test_sign_in_without_the_form_token_is_refused(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    b = Browserless(acs)
    try:
        name = await make_user(db_pool, unique_serial, "admin")
        async with b.http.post(
            b.base + "/ui/login",
            data={"username": name, "password": PASSWORD},
            allow_redirects=False,
        ) as resp:
            page = await resp.text()
        assert resp.status == 403 and "form had expired" in page
        assert "acs_session" not in {c.key for c in b.http.cookie_jar}
    finally:
        await b.close()


async def test_next_only_leads_to_our_own_pages(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    b = Browserless(acs)
    try:
        name = await make_user(db_pool, unique_serial, "viewer")
        async with b.http.get(b.base + "/ui/login?next=https://evil.example/") as resp:
            page = await resp.text()
        assert 'name="next" value="/ui/"' in page
        async with b.http.get(b.base + "/ui/login?next=/ui/devices%3Ffilter%3Dx") as resp:
            page = await resp.text()
        assert 'name="next" value="/ui/devices?filter=x"' in page
        await b.login(name)
    finally:
        await b.close()


async def test_cookie_requests_to_the_api_need_the_csrf_header_to_change_anything(
    acs: Running, people: dict[str, Browserless], unique_serial
) -> None:
    op = people["operator"]
    cpe = await registered(acs, unique_serial())
    dev = f"{cpe.identity.oui}-{cpe.identity.product_class}-{cpe.identity.serial_number}"
    status, body = await op.api("GET", f"/devices/{dev}", csrf=False)
    assert status == 200 and body["id"] == dev  # reading needs no token
    status, body = await op.api(
        "POST", f"/devices/{dev}/tasks", csrf=False, json={"name": "reboot"}
    )
    assert status == 403 and body["error"]["code"] == "csrf"
    assert "X-CSRF-Token" in body["error"]["message"]
    status, body = await op.api(
        "POST",
        f"/devices/{dev}/tasks",
        headers={"X-CSRF-Token": "guessed"},
        json={"name": "reboot"},
        csrf=False,
    )
    assert status == 403 and body["error"]["code"] == "csrf"
    status, body = await op.api("POST", f"/devices/{dev}/tasks", json={"name": "reboot"})
    assert status == 201 and body["status"] == "pending"
    status, body = await op.api("GET", "/me")
    assert body == {"name": "user:" + op.name, "role": "operator", "kind": "user"}  # type: ignore[attr-defined]


async def test_sign_out_needs_the_page_token_and_ends_the_session(
    acs: Running, people: dict[str, Browserless]
) -> None:
    v = people["viewer"]
    async with v.http.post(v.base + "/ui/logout", allow_redirects=False) as resp:
        assert resp.status == 403
    assert (await v.get("/ui/"))[0] == 200  # still signed in
    async with v.http.post(
        v.base + "/ui/logout", data={"csrf": v.csrf}, allow_redirects=False
    ) as resp:
        assert resp.status == 303
    assert (await v.get("/ui/"))[0] == 303
    status, body = await v.api("GET", "/devices")
    assert status == 401


async def test_roles_hold_for_cookie_sessions_as_for_tokens(
    acs: Running, people: dict[str, Browserless], db_pool: asyncpg.Pool, unique_serial
) -> None:
    viewer, admin = people["viewer"], people["admin"]
    status, body = await viewer.api("POST", "/tokens", json={"name": "x", "role": "admin"})
    assert status == 403 and "needs 'admin'" in body["error"]["message"]
    status, page = await viewer.get("/ui/admin")
    assert status == 403 and "needs the admin role" in page
    status, page = await viewer.get("/ui/devices")
    assert status == 200 and "Bulk action" not in page
    status, page = await admin.get("/ui/admin")
    assert status == 200 and viewer.name in page  # type: ignore[attr-defined]
    # a role change applies to an open session at once
    status, _ = await admin.api("PATCH", f"/users/{viewer.name}", json={"role": "operator"})  # type: ignore[attr-defined]
    assert status == 200
    status, page = await viewer.get("/ui/devices")
    assert "Bulk action" in page


async def test_users_are_managed_through_the_api(
    acs: Running, people: dict[str, Browserless], unique_serial
) -> None:
    admin = people["admin"]
    name = unique_serial("new-").lower()
    status, body = await admin.api(
        "POST", "/users", json={"username": name, "password": "short", "role": "viewer"}
    )
    assert status == 400 and body["error"]["errors"][0]["path"] == "password"
    assert "at least 10" in body["error"]["message"]
    status, body = await admin.api(
        "POST", "/users", json={"username": name, "password": PASSWORD, "role": "viewer"}
    )
    assert status == 201 and body["username"] == name
    status, body = await admin.api(
        "POST", "/users", json={"username": name, "password": PASSWORD, "role": "viewer"}
    )
    assert status == 409
    fresh = Browserless(acs)
    try:
        assert (await fresh.login(name)).status == 303
        # a new password ends the sessions of whoever knew the old one
        status, _ = await admin.api("PATCH", f"/users/{name}", json={"password": "another secret"})
        assert status == 200
        assert (await fresh.get("/ui/"))[0] == 303
        assert (await fresh.login(name, "another secret")).status == 303
        status, _ = await admin.api("DELETE", f"/users/{name}")
        assert status == 204
        assert (await fresh.get("/ui/"))[0] == 303
    finally:
        await fresh.close()


async def test_a_user_changes_their_own_password(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    b = Browserless(acs)
    try:
        name = await make_user(db_pool, unique_serial, "viewer")
        await b.login(name)
        status, body = await b.api(
            "POST", "/me/password", json={"current": "wrong one!!", "new": "brand new secret"}
        )
        assert status == 400 and body["error"]["code"] == "wrong_password"
        status, _ = await b.api(
            "POST", "/me/password", json={"current": PASSWORD, "new": "brand new secret"}
        )
        assert status == 204
        assert (await b.get("/ui/"))[0] == 303
        assert (await b.login(name, "brand new secret")).status == 303
    finally:
        await b.close()


async def test_tokens_still_work_and_have_no_password(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    client = Client(acs, await token(db_pool, "viewer", unique_serial))
    try:
        status, body = await client.call("GET", "/me")
        assert status == 200 and body["kind"] == "token"
        status, body = await client.call(
            "POST", "/me/password", json={"current": "x", "new": "yyyyyyyyyyyy"}
        )
        assert status == 409
    finally:
        await client.close()


async def test_bad_input_gets_a_page_that_says_what_to_fix(
    acs: Running, people: dict[str, Browserless]
) -> None:
    v = people["viewer"]
    status, page = await v.get("/ui/devices", params={"filter": 'DeviceID.ID = "x" AND ('})
    assert status == 400 and "The filter or query is not valid" in page and "position" in page
    status, page = await v.get("/ui/devices", params={"cursor": "garbage", "limit": "7"})
    assert status == 400 and "cursor" in page
    status, page = await v.get("/ui/devices/NO-SUCH-DEVICE")
    assert status == 404 and "no device" in page
    status, page = await v.get("/ui/campaigns/abc")
    assert status == 400 and "must be a number" in page
    status, page = await v.get("/ui/campaigns/999999999")
    assert status == 404
    status, page = await v.get("/ui/policies/123456789")
    assert status == 404
    status, page = await v.get("/ui/no/such/page")
    assert status == 404 and "no such page" in page
    status, page = await v.get("/ui/devices.csv", params={"filter": "(("})
    assert status == 400


async def test_csv_export_quotes_formulas(
    acs: Running, people: dict[str, Browserless], unique_serial
) -> None:
    op = people["operator"]
    serial = unique_serial("CSV")
    cpe = await registered(acs, serial)
    dev = f"{cpe.identity.oui}-{cpe.identity.product_class}-{cpe.identity.serial_number}"
    status, _ = await op.api("POST", f"/devices/{dev}/tags", json={"tags": ["-lab"]})
    assert status == 200
    status, text = await op.get(
        "/ui/devices.csv",
        params={"filter": f'DeviceID.SerialNumber = "{serial}"', "col": ["serialNumber", "tags"]},
    )
    assert status == 200
    assert text.splitlines() == ["Serial number,Tags", f"{serial},'-lab"]


async def test_the_api_port_serves_the_ui(
    start_acs: StartAcs,
) -> None:
    """The API port serves the UI and redirects its root there."""
    running = await start_acs()
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{running.ports['api']}"
        async with http.get(base + "/", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/ui/"
        async with http.get(base + "/ui/static/ui.js") as resp:
            assert resp.status == 200 and "X-CSRF-Token" in await resp.text()


def test_the_ui_reaches_the_database_only_for_signing_in() -> None:
    """Every page reads through /api/v1 and every change is an API request from
    the browser: the UI's modules may use the store only for users and sessions."""
    folder = Path(__file__).resolve().parents[2] / "acs" / "web" / "ui"
    allowed = {"acs.store.users", "acs.store.tokens", "acs.services.accounts"}
    for source in folder.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in ("acs.store", "acs.services"):
                targets = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for name in targets:
                if name.startswith(("acs.store", "acs.services")):
                    assert name in allowed, f"{source.name} imports {name}: a second path to data"


async def test_the_last_admin_is_kept(
    acs: Running, people: dict[str, Browserless], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = people["admin"]
    me = admin.name  # type: ignore[attr-defined]

    # the test run's database holds many admins; pretend this one is alone
    async def one(_conn: Any) -> int:
        return 1

    monkeypatch.setattr("acs.store.users.count_admins", one)
    status, body = await admin.api("PATCH", f"/users/{me}", json={"role": "viewer"})
    assert status == 409 and body["error"]["code"] == "last_admin"
    assert "make another user admin first" in body["error"]["message"]
    status, body = await admin.api("DELETE", f"/users/{me}")
    assert status == 409
    status, _ = await admin.api("PATCH", f"/users/{people['viewer'].name}", json={"role": "admin"})  # type: ignore[attr-defined]
    assert status == 200  # promoting is always allowed
