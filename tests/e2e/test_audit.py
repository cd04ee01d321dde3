"""The audit log end to end: changes made through the API, read back by an admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from acs.store import tokens
from acs.web.server import Running
from tests.e2e.test_api import Client, dev_id_of, registered
from tests.e2e.test_campaigns import catalog_image, ok

pytestmark = pytest.mark.db


@pytest.fixture
async def people(acs: Running, db_pool: asyncpg.Pool, unique_serial) -> Any:
    """One client per role, each with its own token (its name is the actor)."""
    made: dict[str, Client] = {}
    names: dict[str, str] = {}
    async with db_pool.acquire() as conn:
        for role in ("admin", "operator", "viewer"):
            names[role] = unique_serial(f"{role}-")
            secret = await tokens.create_token(conn, names[role], role)
            made[role] = Client(acs, secret)
    yield made, names
    for c in made.values():
        await c.close()


async def audit(admin: Client, **query: Any) -> list[dict[str, Any]]:
    status, body = await admin.call("GET", "/audit", params=query)
    assert status == 200, body
    return body["items"]


async def test_a_queued_job_and_a_revoked_token_are_audited_with_actor_and_object(
    acs: Running, people: Any, unique_serial
) -> None:
    clients, names = people
    admin, operator = clients["admin"], clients["operator"]
    cpe = await registered(acs, unique_serial())
    try:
        device = dev_id_of(cpe)
        status, job = await operator.call(
            "POST", f"/devices/{device}/tasks", json={"name": "reboot"}
        )
        assert status == 201
        [entry] = await audit(admin, actor=names["operator"])
        assert entry["action"] == "device.task.create"
        assert (entry["method"], entry["route"]) == ("POST", "/api/v1/devices/{device_id}/tasks")
        assert (entry["objectType"], entry["objectId"]) == ("device", device)
        assert entry["status"] == 201 and entry["role"] == "operator"
        assert entry["detail"] == {"job": job["id"], "name": "reboot"}
        assert entry["remote"] == "127.0.0.1"
        # the same entry, found by its object
        assert [e["id"] for e in await audit(admin, object=device)] == [entry["id"]]

        doomed = unique_serial("ci-bot-")
        status, _ = await admin.call("POST", "/tokens", json={"name": doomed, "role": "viewer"})
        assert status == 201
        status, _ = await admin.call("DELETE", f"/tokens/{doomed}")
        assert status == 204
        revoked, created = await audit(admin, object=doomed)
        assert (revoked["action"], revoked["status"], revoked["method"]) == (
            "token.revoke",
            204,
            "DELETE",
        )
        assert (created["action"], created["status"]) == ("token.create", 201)
        assert {revoked["actor"], created["actor"]} == {names["admin"]}
        assert revoked["objectType"] == created["objectType"] == "token"
        assert created["detail"] == {"role": "viewer"}  # never the token itself
        assert revoked["id"] > created["id"]  # newest first

        # failures are audited with their outcome; reads are not audited at all
        status, _ = await admin.call("DELETE", f"/tokens/{doomed}")
        assert status == 404
        assert [e["status"] for e in await audit(admin, object=doomed)] == [404, 204, 201]
        status, _ = await operator.call("DELETE", "/tokens/" + names["admin"])
        assert status == 403
        forbidden = (await audit(admin, actor=names["operator"]))[0]
        assert (forbidden["action"], forbidden["status"]) == ("token.revoke", 403)
        for _ in range(3):
            assert (await clients["viewer"].call("GET", f"/devices/{device}"))[0] == 200
        assert await audit(admin, actor=names["viewer"]) == []
    finally:
        await cpe.close()


async def test_files_and_campaigns_are_audited_by_name_and_id(
    acs: Running, people: Any, unique_serial
) -> None:
    clients, names = people
    admin = clients["admin"]
    image = await catalog_image(admin, unique_serial, "9.9.9")
    campaign = await ok(
        admin,
        "POST",
        "/campaigns",
        201,
        json={
            "name": unique_serial("audited-"),
            "image": image["id"],
            "filter": f'DeviceID.SerialNumber = "{unique_serial("nobody-")}"',
            "stages": [{"size": "100%"}],
        },
    )
    await ok(admin, "POST", f"/campaigns/{campaign['id']}/start")
    entries = await audit(admin, actor=names["admin"])
    actions = [(e["action"], e["objectType"], e["objectId"]) for e in entries]
    assert actions == [
        ("campaign.start", "campaign", str(campaign["id"])),
        ("campaign.create", "campaign", str(campaign["id"])),
        ("image.create", "image", str(image["id"])),
        ("file.upload", "file", image["file"]),
    ]
    # ids of different kinds can coincide: the type tells them apart
    by_campaign = await audit(admin, object=str(campaign["id"]), objectType="campaign")
    assert [e["action"] for e in by_campaign] == ["campaign.start", "campaign.create"]


async def test_audit_paging_and_filters(acs: Running, people: Any, unique_serial) -> None:
    clients, names = people
    admin, operator = clients["admin"], clients["operator"]
    cpe = await registered(acs, unique_serial())
    try:
        device = dev_id_of(cpe)
        for tag in ("a", "b", "c", "d", "e"):
            status, _ = await operator.call("POST", f"/devices/{device}/tags", json={"tags": [tag]})
            assert status == 200
        seen: list[int] = []
        cursor = None
        while True:
            query: dict[str, Any] = {"actor": names["operator"], "limit": 2}
            if cursor is not None:
                query["cursor"] = cursor
            status, page = await admin.call("GET", "/audit", params=query)
            assert status == 200
            seen += [e["id"] for e in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert len(seen) == 5 and seen == sorted(seen, reverse=True)
        assert len(set(seen)) == 5
        newest = await audit(admin, actor=names["operator"], limit=1)
        assert newest[0]["detail"] == {"tags": ["e"]}
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert await audit(admin, actor=names["operator"], since=future) == []
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        assert len(await audit(admin, actor=names["operator"], since=past)) == 5

        for bad in ({"since": "yesterday"}, {"limit": "0"}, {"cursor": "-1"}, {"nope": "1"}):
            status, body = await admin.call("GET", "/audit", params=bad)
            assert status == 400, bad
            assert body["error"]["code"] == "invalid_query"
            assert body["error"]["errors"][0]["path"] == next(iter(bad))
    finally:
        await cpe.close()


async def test_only_admins_read_the_audit_log(acs: Running, people: Any) -> None:
    clients, _ = people
    for role in ("viewer", "operator"):
        status, body = await clients[role].call("GET", "/audit")
        assert status == 403, role
        assert body["error"]["code"] == "forbidden" and "admin" in body["error"]["message"]
    status, _ = await clients["admin"].call("GET", "/audit")
    assert status == 200


async def test_bad_input_gets_a_4xx_with_a_reason_and_is_still_audited(
    acs: Running, people: Any
) -> None:
    clients, names = people
    admin = clients["admin"]
    for path, code in (
        ("/audit?actor=%00", "invalid_query"),
        ("/audit?cursor=99999999999999999999999", "invalid_query"),
        ("/devices/%00/sessions", "invalid_path"),
        ("/devices/x/sessions/%C2%B2", "invalid_id"),
        ("/tasks/%C2%B2", "invalid_id"),
        ("/webhooks/1/deliveries?cursor=999999999999999999999", "invalid_query"),
    ):
        status, body = await admin.call("GET", path)
        assert (status, body["error"]["code"]) == (400, code), (path, body)
    status, body = await admin.call("DELETE", "/devices/a%00b")
    assert (status, body["error"]["code"]) == (400, "invalid_path")
    status, body = await admin.call(
        "POST", "/tokens", json={"name": "nul\u0000name", "role": "viewer"}
    )
    assert status == 400 and body["error"]["errors"][0]["path"] == "name"
    refused = await audit(admin, actor=names["admin"])
    assert [(e["action"], e["status"]) for e in refused[:2]] == [
        ("token.create", 400),
        ("device.delete", 400),
    ]
    assert refused[1]["objectId"] == "a\ufffdb"
