"""Every change through the API is audited under a declared, stable action."""

from __future__ import annotations

import pytest

from acs.core.policies import session_events
from acs.web.api.routing import Api


async def _handler() -> None:  # pragma: no cover - never called
    raise AssertionError


def test_a_changing_route_without_an_audit_action_is_refused() -> None:
    api = Api("/api/v1")
    with pytest.raises(ValueError, match="POST /things changes state and declares no audit"):
        api.route("POST", "/things", role="admin", summary="Make a thing", tag="t")
    with pytest.raises(ValueError, match="is not noun.verb"):
        api.route("DELETE", "/things/{id}", role="admin", summary="x", tag="t", audit="gone")
    api.route("GET", "/things", role="viewer", summary="List things", tag="t")(_handler)
    api.route(
        "POST", "/things", role="admin", summary="Make", tag="t", audit="thing.create",
        audit_dry_run="thing.dry_run", audit_object="thing",
    )(_handler)  # fmt: skip
    doc = api.openapi("t", "1")
    assert "x-audit" not in doc["paths"]["/api/v1/things"]["get"]
    assert doc["paths"]["/api/v1/things"]["post"]["x-audit"] == {
        "action": "thing.create",
        "objectType": "thing",
        "dryRunAction": "thing.dry_run",
    }
    made = api.routes[1]
    assert made.object_of({}) == ("thing", None)  # the handler names what it made


def test_object_types_follow_the_collection() -> None:
    api = Api("/api/v1")
    for path in ("/policies/{policy_id}/dry-run", "/bulk-jobs/{bulk_id}/pause", "/tasks/{task_id}"):
        api.route("POST", path, role="operator", summary="s", tag="t", audit="x.y")(_handler)
    ids = {"policy_id": "7", "bulk_id": "8", "task_id": "9"}
    assert [r.object_of(ids) for r in api.routes] == [
        ("policy", "7"),
        ("bulk_job", "8"),
        ("task", "9"),
    ]


def test_first_contact_counts_as_bootstrap_for_policies() -> None:
    assert session_events(["1 BOOT"], first_contact=True) == ["0 BOOTSTRAP", "1 BOOT"]
    assert session_events(["0 BOOTSTRAP", "1 BOOT"], first_contact=True) == [
        "0 BOOTSTRAP",
        "1 BOOT",
    ]
    assert session_events(["2 PERIODIC"], first_contact=False) == ["2 PERIODIC"]
