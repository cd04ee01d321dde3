"""Input an attacker on loopback sent, each once an HTTP 500: now a 400 (or the
status the protocol prescribes) with the API's error body naming the field."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.web.server import Running
from tests.e2e.test_api import Client, token
from tests.e2e.test_ui_http import Browserless, make_user

pytestmark = pytest.mark.db

TOO_BIG = 2**63  # one past bigint
INT_TOO_BIG = 2**31  # one past integer


@pytest.fixture
async def admin(acs: Running, db_pool: asyncpg.Pool, unique_serial):
    client = Client(acs, await token(db_pool, "admin", unique_serial))
    yield client
    await client.close()


def assert_names(status: int, body: Any, field: str, code: str | None = None) -> None:
    """A 400 in the API's error format whose details name ``field``."""
    assert status == 400, body
    assert set(body) == {"error"} and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    paths = [e["path"] for e in body["error"]["errors"]]
    assert any(p == field or p.startswith(field + ".") for p in paths), (field, body)


CAMPAIGN_ROUTES = [
    ("GET", ""),
    ("DELETE", ""),
    ("GET", "/devices"),
    ("POST", "/start"),
    ("POST", "/pause"),
    ("POST", "/resume"),
    ("POST", "/approve"),
    ("POST", "/cancel"),
    ("POST", "/retry-failed"),
]


async def test_ids_past_bigint_are_400_on_every_id_route(admin: Client) -> None:
    routes = [(m, f"/campaigns/{TOO_BIG}{tail}", "campaign_id") for m, tail in CAMPAIGN_ROUTES]
    routes += [
        ("GET", f"/policies/{TOO_BIG}", "policy_id"),
        ("DELETE", f"/policies/{TOO_BIG}", "policy_id"),
        ("POST", f"/policies/{TOO_BIG}/dry-run?device=x", "policy_id"),
        ("DELETE", f"/firmware/images/{TOO_BIG}", "image_id"),
        ("GET", f"/tasks/{TOO_BIG}", "task_id"),
        ("GET", f"/bulk-jobs/{TOO_BIG}", "bulk_id"),
        ("DELETE", f"/webhooks/{TOO_BIG}", "webhook_id"),
        ("GET", f"/devices/x/sessions/{TOO_BIG}", "session_id"),
    ]
    for method, path, field in routes:
        status, body = await admin.call(method, path)
        assert_names(status, body, field, "invalid_id")
    # the largest id is well formed: not found, not refused
    status, body = await admin.call("GET", f"/campaigns/{TOO_BIG - 1}")
    assert status == 404, body
    # PUT checks the id before the body is even read
    status, body = await admin.call("PUT", f"/policies/{TOO_BIG}", json={"name": "x"})
    assert_names(status, body, "policy_id", "invalid_id")


async def test_bigint_query_and_body_values(admin: Client) -> None:
    status, body = await admin.call("GET", f"/bulk-jobs?before={TOO_BIG}")
    assert_names(status, body, "before", "invalid_query")
    status, body = await admin.call(
        "POST", "/campaigns", json={"name": "c", "image": TOO_BIG, "stages": [{"size": "100%"}]}
    )
    assert_names(status, body, "image", "invalid_body")
    status, body = await admin.call(
        "POST",
        "/bulk-jobs",
        json={
            "name": "b",
            "task": {"name": "reboot"},
            "filter": 'DeviceID.ID = "none"',
            "expiry": INT_TOO_BIG,
        },
    )
    assert_names(status, body, "expiry", "invalid_body")
    # a job's expiry is seconds added to now: past int it would overflow timedelta
    status, body = await admin.call(
        "POST", "/devices/x/tasks", json={"name": "reboot", "expiry": 10**20}
    )
    assert_names(status, body, "expiry", "invalid_body")
    # an integer past 64 bits cannot go into jsonb through the store's encoder
    status, body = await admin.call(
        "POST",
        "/devices/x/tasks",
        json={"name": "setParameterValues", "parameterValues": [["Device.X", 2**70]]},
    )
    assert_names(status, body, "parameterValues.0.1", "invalid_body")


def _cursor(*parts: Any) -> str:
    raw = json.dumps(list(parts)).encode()  # ensure_ascii: a lone surrogate stays \udxxx
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_forged_device_cursors(admin: Client) -> None:
    forged = [
        ("id", _cursor("id", "a", "x", "a\x00b")),
        ("id", _cursor("id", "a", "\ud800", "dev")),
        ("last_inform", _cursor("last_inform", "a", "9999-12-31T23:59:59-14:00", "dev")),
        ("last_inform", _cursor("last_inform", "a", "0001-01-01T00:00:00+14:00", "dev")),
    ]
    for sort, cursor in forged:
        status, body = await admin.call("GET", "/devices", params={"sort": sort, "cursor": cursor})
        assert_names(status, body, "cursor", "invalid_query")
        assert "cursor" in body["error"]["message"]


async def test_lone_surrogates_and_nul_in_job_and_policy_values(admin: Client) -> None:
    lone = json.dumps({"name": "setParameterValues", "parameterValues": [["Device.X", "a\ud800"]]})
    assert "\\ud800" in lone  # the escape as an attacker sends it
    status, body = await admin.call(
        "POST", "/devices/x/tasks", data=lone, headers={"Content-Type": "application/json"}
    )
    assert_names(status, body, "parameterValues.0.1", "invalid_body")
    assert "surrogate" in body["error"]["message"]
    policy = json.dumps({"name": "p", "parameters": [{"path": "Device.X", "value": "\udfff"}]})
    status, body = await admin.call(
        "POST", "/policies", data=policy, headers={"Content-Type": "application/json"}
    )
    assert_names(status, body, "parameters.0.value", "invalid_body")
    # a surrogate in a key is named too
    status, body = await admin.call(
        "POST",
        "/policies",
        data=json.dumps({"name": "p", "\ud83d": 1}),
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and "surrogate" in body["error"]["message"], body
    status, body = await admin.call("POST", "/policies", json={"name": "p\x00"})
    assert_names(status, body, "name", "invalid_body")
    # nothing was half-written
    status, listed = await admin.call("GET", "/policies")
    assert status == 200 and not [p for p in listed["items"] if p["name"].startswith("p")]


async def test_deep_json_is_refused_before_any_recursion(admin: Client) -> None:
    hdr = {"Content-Type": "application/json"}
    status, body = await admin.call("POST", "/policies", data="[" * 100_000, headers=hdr)
    assert status == 400 and body["error"]["code"] == "invalid_json", body
    deep = '{"name": "p", "description": ' + "[" * 40 + "]" * 40 + "}"
    status, body = await admin.call("POST", "/policies", data=deep, headers=hdr)
    assert_names(status, body, "description", "invalid_body")
    assert "deeper than 32" in body["error"]["message"]
    status, body = await admin.call(
        "POST", "/policies", data='{"name": "p", "priority": NaN}', headers=hdr
    )
    assert status == 400 and body["error"]["code"] == "invalid_json", body


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('DeviceID.SerialNumber LIKE "abc\\\\"', "backslash"),
        ('LastInform < "9999-12-31T23:59:59-14:00"', "ISO 8601"),
        ('LastInform > "0001-01-01T00:00:00+14:00"', "ISO 8601"),
        ("Device.X.Count > " + "9" * 400 + ".5", "out of range"),
    ],
)
async def test_filter_literals_out_of_bounds(admin: Client, text: str, says: str) -> None:
    status, body = await admin.call("GET", "/devices", params={"filter": text})
    assert_names(status, body, "filter", "invalid_filter")
    assert says in body["error"]["message"], body
    # the same rule at creation of a bulk job
    status, body = await admin.call(
        "POST", "/bulk-jobs", json={"name": "b", "task": {"name": "reboot"}, "filter": text}
    )
    assert status == 400 and says in json.dumps(body), body


async def test_an_escaped_trailing_backslash_is_a_valid_like(admin: Client) -> None:
    status, body = await admin.call(
        "GET", "/devices", params={"filter": 'DeviceID.SerialNumber LIKE "abc\\\\\\\\"'}
    )
    assert status == 200 and body["total"] == 0, body


async def test_file_server_range_with_thousands_of_digits(acs: Running, admin: Client) -> None:
    content = b"0123456789" * 10
    status, stored = await admin.call("PUT", "/files/range-digits.bin", data=content)
    assert status == 201, stored
    huge = "9" * 4301
    async with aiohttp.ClientSession() as http:
        url = stored["url"]
        async with http.get(url, headers={"Range": f"bytes={huge}-"}) as resp:
            assert resp.status == 416
        async with http.get(url, headers={"Range": f"bytes=10-{huge}"}) as resp:
            assert resp.status == 206
            assert await resp.read() == content[10:]
        async with http.get(url, headers={"Range": f"bytes=-{huge}"}) as resp:
            assert resp.status == 206
            assert await resp.read() == content


async def test_sign_in_next_with_crlf_goes_home(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    user = await make_user(db_pool, unique_serial, "viewer")
    browser = Browserless(acs)
    try:
        async with browser.http.get(browser.base + "/ui/login") as resp:
            page = await resp.text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        async with browser.http.post(
            browser.base + "/ui/login",
            data={
                "username": user,
                "password": "a long enough secret",
                "csrf": csrf.group(1),
                "next": "/ui/\r\nSet-Cookie: evil=1",
            },
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/ui/"
        # signed in, the login page sends the user on to next: the same rule
        async with browser.http.get(
            browser.base + "/ui/login?next=/ui/%0D%0ASet-Cookie:%20evil=1", allow_redirects=False
        ) as resp:
            assert resp.status == 303
            assert resp.headers["Location"] == "/ui/"
    finally:
        await browser.close()


async def test_openapi_is_exact_about_ids_statuses_and_allow(acs: Running, admin: Client) -> None:
    status, doc = await admin.call("GET", "/openapi.json")
    assert status == 200
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for param in op["parameters"]:
                if (
                    param["in"] == "path"
                    and param["name"].endswith("_id")
                    and param["name"] != "device_id"
                ):
                    assert param["schema"] == {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 2**63 - 1,
                    }, (method, path, param)
            assert "503" in op["responses"], (method, path)
            if "requestBody" in op and "application/json" in op["requestBody"]["content"]:
                assert "413" in op["responses"], (method, path)
    assert "409" in doc["paths"]["/api/v1/files/{name}"]["delete"]["responses"]
    image_in = doc["components"]["schemas"]["CampaignIn"]["properties"]["image"]
    assert {"minimum": 1, "maximum": 2**63 - 1}.items() <= image_in["anyOf"][0].items()
    expiry = doc["components"]["schemas"]["BulkJobIn"]["properties"]["expiry"]["anyOf"][0]
    assert expiry["maximum"] == 2**31 - 1
    # two models named DryRunOut (campaign and policy) each keep their own schema
    schemas = doc["components"]["schemas"]
    campaign_dry = doc["paths"]["/api/v1/campaigns"]["post"]["responses"]["200"]
    policy_dry = doc["paths"]["/api/v1/policies/{policy_id}/dry-run"]["post"]["responses"]["200"]
    names = [
        r["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for r in (campaign_dry, policy_dry)
    ]
    assert names[0] != names[1]
    assert "stages" in schemas[names[0]]["properties"]
    assert "policy" in schemas[names[1]]["properties"]
    # 405 says which methods the path has
    async with admin.http.patch(admin.base + "/campaigns") as resp:
        assert resp.status == 405
        assert {m.strip() for m in resp.headers["Allow"].split(",")} >= {"GET", "POST"}
        assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_put_file_without_a_body_is_refused(admin: Client) -> None:
    status, body = await admin.call("PUT", "/files/empty.bin")
    assert_names(status, body, "body", "empty_body")
    status, body = await admin.call("GET", "/files/empty.bin")
    assert status == 404  # nothing stored


async def _raw(port: int, request: bytes) -> int:
    """The status of a request sent byte for byte (clients refuse non-ASCII headers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()
    return int(status_line.split()[1])


def _get(path: str, *headers: bytes) -> bytes:
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def test_header_bytes_beyond_ascii_are_refused_not_crashed(
    start_acs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    running = await start_acs(metrics_token="m" * 32)
    port = running.ports["api"]
    # aiohttp hands such bytes over as lone surrogates, which no encoder takes
    assert await _raw(port, _get("/api/v1/devices", b"Authorization: Bearer \xff\xfe")) == 401
    assert await _raw(port, _get("/api/v1/devices", b"Cookie: acs_session=\xff\xfe")) == 401
    assert await _raw(port, _get("/ui/", b"Cookie: acs_session=\xff\xfe")) == 303  # to sign-in
    assert await _raw(port, _get("/metrics", b"Authorization: Bearer \xff")) == 401
    # a signed-in user's CSRF header with such bytes is a wrong header, a 403
    user = await make_user(db_pool, unique_serial, "admin")
    browser = Browserless(running)
    try:
        assert (await browser.login(user)).status == 303
        cookie = next(c.value for c in browser.http.cookie_jar if c.key == "acs_session")
    finally:
        await browser.close()
    post = (
        b"POST /api/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Cookie: acs_session={cookie}\r\n".encode()
        + b"X-CSRF-Token: \xff\xfe\r\nContent-Type: application/json\r\n"
        + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    assert await _raw(port, post) == 403


async def test_sign_in_with_a_nul_in_the_username_is_a_wrong_sign_in(acs: Running) -> None:
    browser = Browserless(acs)
    try:
        async with browser.http.get(browser.base + "/ui/login") as resp:
            page = await resp.text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        async with browser.http.post(
            browser.base + "/ui/login",
            data={"username": "ad\x00min", "password": "x" * 12, "csrf": csrf.group(1)},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 401
            assert "Wrong username or password." in await resp.text()
    finally:
        await browser.close()
