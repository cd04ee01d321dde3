"""The audit log end to end: changes made through the API, read back by an admin."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from acs.store import tokens
from acs.web.server import Running
from acs.web.ui.session import USER_PREFIX
from cpe_simulator.firmware import make_image
from tests.e2e.test_api import Client, dev_id_of, registered
from tests.e2e.test_campaigns import catalog_image, ok
from tests.e2e.test_config_backup import a_backup
from tests.e2e.test_ui_http import PASSWORD, Browserless

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


STABLE_ACTION = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")


class Walk:
    """Calls changing routes one at a time and checks the audit row each one wrote."""

    def __init__(self, doc: dict[str, Any], admin: Client, admin_name: str) -> None:
        self.declared = {
            (method.upper(), path): op["x-audit"]
            for path, ops in doc["paths"].items()
            for method, op in ops.items()
            if method.upper() not in ("GET", "HEAD", "OPTIONS")
        }
        self.admin, self.admin_name = admin, admin_name
        self.called: set[tuple[str, str]] = set()
        self.dry_runs: set[tuple[str, str]] = set()

    async def call(
        self,
        method: str,
        template: str,
        status: int | tuple[int, ...],
        object_id: Any,
        *,
        client: Any = None,
        actor: str | None = None,
        dry_run: bool = False,
        **values: Any,
    ) -> Any:
        """``object_id``: the id expected in the row, or a function of the response."""
        kw = {k: values.pop(k) for k in ("json", "params", "data") if k in values}
        path = template.format(**values)
        got, body = await (client or self.admin).call(method, path, **kw)
        assert got in (status if isinstance(status, tuple) else (status,)), (path, got, body)
        route = "/api/v1" + template
        declared = self.declared[(method, route)]
        [entry] = await audit(self.admin, actor=actor or self.admin_name, limit=1)
        expected_id = object_id(body) if callable(object_id) else object_id
        assert (entry["method"], entry["route"], entry["status"]) == (method, route, got)
        action = declared["dryRunAction"] if dry_run else declared["action"]
        assert entry["action"] == action, (route, entry)
        assert (entry["objectType"], entry["objectId"]) == (declared["objectType"], expected_id), (
            route,
            entry,
        )
        (self.dry_runs if dry_run else self.called).add((method, route))
        return body


async def test_every_changing_route_writes_its_declared_action_object_and_id(
    acs: Running, people: Any, db_pool: asyncpg.Pool, unique_serial
) -> None:
    clients, names = people
    admin = clients["admin"]
    status, doc = await admin.call("GET", "/openapi.json")
    assert status == 200
    walk = Walk(doc, admin, names["admin"])
    for (method, path), declared in walk.declared.items():
        assert STABLE_ACTION.match(declared["action"]), (method, path, declared)
        assert declared["objectType"], (method, path)
        assert STABLE_ACTION.match(declared.get("dryRunAction", "x.dry_run")), (method, path)
    actions = [d["action"] for d in walk.declared.values()]
    assert len(set(actions)) == len(actions)  # one action names one kind of change

    cpe = await registered(acs, unique_serial())
    dev = dev_id_of(cpe)
    user = unique_serial("walker-").lower()
    person = Browserless(acs)
    try:
        call = walk.call
        d = {"device_id": dev}
        await call("POST", "/devices/{device_id}/tags", 200, dev, json={"tags": ["walk"]}, **d)
        await call("DELETE", "/devices/{device_id}/tags/{tag}", 200, dev, tag="walk", **d)
        await call(
            "PUT",
            "/devices/{device_id}/overrides",
            200,
            dev,
            json={"parameters": [["Device.WiFi.SSID.1.SSID", "walk"]]},
            **d,
        )
        # nobody listens at the device's connection-request URL: refused (said in the body)
        await call("POST", "/devices/{device_id}/connection-request", 200, dev, **d)
        job = await call(
            "POST", "/devices/{device_id}/tasks", 201, dev, json={"name": "reboot"}, **d
        )
        t = {"task_id": str(job["id"])}
        await call("DELETE", "/tasks/{task_id}", 200, t["task_id"], **t)
        await call("POST", "/tasks/{task_id}/retry", 409, t["task_id"], **t)
        picked = {"ids": [int(t["task_id"])]}
        await call("POST", "/tasks/retry", 200, None, json=picked)
        await call("POST", "/tasks/cancel", 200, None, json=picked)
        await call("POST", "/faults/dismiss", 200, None, json=picked)

        name = f"fw-{unique_serial()}-2.0.0.bin"
        await call("PUT", "/files/{name}", 201, name, data=make_image("2.0.0", 2_000), name=name)
        await call(
            "PUT",
            "/firmware/products/{oui}/{product_class}",
            200,
            "ACDE48/HGW",
            json={"versionScheme": "semver"},
            oui="ACDE48",
            product_class="HGW",
        )
        image = await call(
            "POST",
            "/firmware/images",
            201,
            lambda b: str(b["id"]),
            json={
                "file": name,
                "oui": "ACDE48",
                "productClass": "HGW",
                "hardwareVersions": ["HW1.0"],
                "version": "2.0.0",
            },
        )
        campaign = {
            "name": unique_serial("walk-"),
            "image": image["id"],
            "filter": f'DeviceID.SerialNumber = "{unique_serial("nobody-")}"',
            "stages": [{"size": "100%"}],
        }
        await call(
            "POST", "/campaigns", 200, None, json=campaign, params={"dryRun": "true"}, dry_run=True
        )
        made = await call("POST", "/campaigns", 201, lambda b: str(b["id"]), json=campaign)
        c = {"campaign_id": str(made["id"])}
        cid = c["campaign_id"]
        await call("POST", "/campaigns/{campaign_id}/start", 200, cid, **c)
        for step in ("knock", "pause", "resume", "approve", "retry-failed", "cancel"):
            # an empty campaign may finish as soon as it starts: 409s are audited the same
            await call("POST", "/campaigns/{campaign_id}/" + step, (200, 409), cid, **c)
        await call("DELETE", "/campaigns/{campaign_id}", 204, cid, **c)
        await call(
            "PUT",
            "/firmware/images/{image_id}/mirrors",
            200,
            str(image["id"]),
            json={"mirrors": [{"baseUrl": "https://eu.example.net/fw/", "tag": "eu"}]},
            image_id=image["id"],
        )
        await call(
            "DELETE", "/firmware/images/{image_id}", 204, str(image["id"]), image_id=image["id"]
        )
        await call("DELETE", "/files/{name}", 204, name, name=name)

        bulk = {
            "name": unique_serial("walk-"),
            "filter": f'DeviceID.ID = "{dev}"',
            "task": {"name": "reboot"},
            "ratePerMinute": 1,
        }
        preview = await call(
            "POST", "/bulk-jobs", 200, None, json=bulk, params={"dryRun": "true"}, dry_run=True
        )
        assert preview["devices"] == 1
        job = await call("POST", "/bulk-jobs", 201, lambda b: str(b["id"]), json=bulk)
        b = {"bulk_id": str(job["id"])}
        for step in ("knock", "pause", "resume", "cancel"):
            await call("POST", "/bulk-jobs/{bulk_id}/" + step, 200, b["bulk_id"], **b)

        policy = {"name": unique_serial("walk-"), "precondition": f'DeviceID.ID = "{dev}"'}
        made = await call("POST", "/policies", 201, lambda b: str(b["id"]), json=policy)
        p = {"policy_id": str(made["id"])}
        await call("PUT", "/policies/{policy_id}", 200, p["policy_id"], json=policy, **p)
        await call(
            "POST",
            "/policies/{policy_id}/dry-run",
            200,
            p["policy_id"],
            params={"device": dev},
            **p,
        )
        [dry] = await audit(admin, actor=names["admin"], limit=1)
        assert dry["detail"] == {"device": dev}
        # the editor's dry run of a draft, of the policy it edits
        await call(
            "POST",
            "/policies/dry-run",
            200,
            p["policy_id"],
            json=policy,
            params={"device": dev, "policy": p["policy_id"]},
        )
        [dry] = await audit(admin, actor=names["admin"], limit=1)
        assert dry["detail"] == {"device": dev}
        await call("DELETE", "/policies/{policy_id}", 204, p["policy_id"], **p)

        hook = await call(
            "POST",
            "/webhooks",
            201,
            lambda b: str(b["id"]),
            json={"url": "http://127.0.0.1:9/hook", "events": ["job.finished"]},
        )
        await call(
            "POST",
            "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
            404,  # refused requests are audited too
            str(hook["id"]),
            webhook_id=hook["id"],
            delivery_id="999999999",
        )
        await call("DELETE", "/webhooks/{webhook_id}", 204, str(hook["id"]), webhook_id=hook["id"])
        ci = unique_serial("walk-ci-")
        await call("POST", "/tokens", 201, ci, json={"name": ci, "role": "viewer"})
        await call("DELETE", "/tokens/{name}", 204, ci, name=ci)

        body = {"username": user, "password": PASSWORD, "role": "viewer"}
        await call("POST", "/users", 201, user, json=body)
        u = {"username": user}
        await call("PATCH", "/users/{username}", 200, user, json={"role": "operator"}, **u)
        # a person signed in to the web UI changes their own password
        assert (await person.login(user)).status == 303
        await call(
            "POST",
            "/me/password",
            204,
            user,
            client=person_client(person),
            actor=USER_PREFIX + user,
            json={"current": PASSWORD, "new": PASSWORD + " changed"},
        )
        await call("DELETE", "/users/{username}", 204, user, **u)
        backup = await a_backup(admin, cpe)
        k = {"device_id": dev, "backup_id": str(backup["id"])}
        one = "/devices/{device_id}/backups/{backup_id}"
        await call("POST", one + "/restore", 201, k["backup_id"], json={}, **k)
        await call("DELETE", one, 204, k["backup_id"], **k)
        await call("DELETE", "/devices/{device_id}", 204, dev, **d)
    finally:
        await person.close()
        await cpe.close()

    assert walk.called == set(walk.declared), set(walk.declared) - walk.called
    with_dry_runs = {k for k, v in walk.declared.items() if "dryRunAction" in v}
    assert (
        walk.dry_runs
        == with_dry_runs
        == {
            ("POST", "/api/v1/bulk-jobs"),
            ("POST", "/api/v1/campaigns"),
        }
    )


class person_client:  # noqa: N801 - reads as a function at the call
    """Browserless with Client's call(): the API with the session cookie and CSRF header."""

    def __init__(self, person: Browserless) -> None:
        self.person = person

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.person.api(method, path, **kw)
