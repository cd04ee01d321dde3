"""Routes of provisioning policies, their dry run, per-device results and overrides."""

from __future__ import annotations

import logging

import asyncpg
from aiohttp import web

from acs.core.policy_secrets import keep_masked, seal_spec, shown_spec
from acs.core.policy_spec import SpecError, check_overrides, compile_spec
from acs.core.sealing import MaskGiven
from acs.core.secrets import mask_document, mask_value
from acs.logs import log
from acs.services import provisioning
from acs.store import devices
from acs.store import policies as store
from acs.web.api import policy_models as P
from acs.web.api.errors import ApiError, not_found
from acs.web.api.plumbing import (
    TOKEN,
    api,
    audit_note,
    body_of,
    json_out,
    path_id,
    query_of,
    services,
)

logger = logging.getLogger("acs.api")


def policy_out(row: store.PolicyRow) -> P.PolicyOut:
    spec = shown_spec(row.spec)
    return P.PolicyOut(
        id=row.id,
        name=row.name,
        description=row.description,
        enabled=row.enabled,
        priority=row.priority,
        precondition=row.precondition,
        events=row.events,
        windows=row.windows,
        parameters=spec.get("parameters", []),
        objects=spec.get("objects", []),
        attributes=spec.get("attributes", []),
        refresh=spec.get("refresh", []),
        tags=spec.get("tags", {}),
        download=spec.get("download"),
        backup=spec.get("backup"),
        version=row.version,
        createdBy=row.created_by,
        created=row.created_at,
        updated=row.updated_at,
    )


def _values(body: P.PolicyIn) -> dict[str, object]:
    spec = body.spec()
    try:  # the compiler that loads policies for sessions: what it refuses never gets stored
        compile_spec(0, body.name, body.priority, spec)
    except SpecError as bad:
        raise ApiError(400, "invalid_policy", str(bad), bad.errors) from None
    return {
        "name": body.name,
        "description": body.description,
        "enabled": body.enabled,
        "priority": body.priority,
        "precondition": body.precondition,
        "events": body.events,
        "windows": [w.model_dump() for w in body.windows],
        "spec": spec,
    }


def _refuse_masks(errors: list[dict[str, str]]) -> None:
    if errors:
        raise ApiError(400, "invalid_body", "a secret's value is the mask", errors)


def _policy_id(request: web.Request) -> int:
    return path_id(request, "policy_id")


@api.route(
    "POST",
    "/policies",
    audit="policy.create",
    audit_object="policy",
    role="operator",
    tag="policies",
    summary="Create a provisioning policy",
    body=P.PolicyIn,
    responses={201: (P.PolicyOut, "created"), 409: (None, "name taken")},
)
async def create_policy(request: web.Request) -> web.Response:
    """Devices apply it at their next matching session."""
    body: P.PolicyIn = await body_of(request, P.PolicyIn)
    values = _values(body)
    _refuse_masks(keep_masked(values["spec"], None))  # type: ignore[arg-type]
    seal_spec(values["spec"], services(request).sealer)  # type: ignore[arg-type]
    async with services(request).pool.acquire() as conn:
        try:
            row = await store.create(conn, values, request[TOKEN].name)
        except asyncpg.UniqueViolationError:
            raise ApiError(409, "exists", f"a policy named {body.name!r} exists") from None
    audit_note(request, object_id=str(row.id), name=row.name)
    log(logger, logging.INFO, "policy_created", policy=row.id, token=request[TOKEN].name)
    return json_out(policy_out(row), 201)


@api.route(
    "GET",
    "/policies",
    role="viewer",
    tag="policies",
    summary="List policies, highest priority first",
    responses={200: (P.PolicyListOut, "policies")},
)
async def list_policies(request: web.Request) -> web.Response:
    """Disabled ones included."""
    async with services(request).pool.acquire() as conn:
        rows = await store.list_all(conn)
    return json_out(P.PolicyListOut(items=[policy_out(r) for r in rows]))


@api.route(
    "GET",
    "/policies/{policy_id}",
    role="viewer",
    tag="policies",
    summary="One policy",
    responses={200: (P.PolicyOut, "the policy"), 404: (None, "unknown")},
)
async def get_policy(request: web.Request) -> web.Response:
    """With its version: a device's result says which version it applied."""
    pid = _policy_id(request)
    async with services(request).pool.acquire() as conn:
        row = await store.get(conn, pid)
    if row is None:
        raise not_found(f"policy {pid}")
    return json_out(policy_out(row))


@api.route(
    "PUT",
    "/policies/{policy_id}",
    audit="policy.update",
    role="operator",
    tag="policies",
    summary="Replace a policy (its version goes up)",
    body=P.PolicyIn,
    responses={200: (P.PolicyOut, "replaced"), 404: (None, "unknown"), 409: (None, "name taken")},
)
async def put_policy(request: web.Request) -> web.Response:
    """The change reaches each device at its next matching session."""
    pid = _policy_id(request)
    body: P.PolicyIn = await body_of(request, P.PolicyIn)
    values = _values(body)
    async with services(request).pool.acquire() as conn:
        before = await store.get(conn, pid)
        if before is None:
            raise not_found(f"policy {pid}")
        # a secret read back masked and sent unchanged keeps its value
        _refuse_masks(keep_masked(values["spec"], before.spec))  # type: ignore[arg-type]
        seal_spec(values["spec"], services(request).sealer)  # type: ignore[arg-type]
        try:
            row = await store.replace(conn, pid, values)
        except asyncpg.UniqueViolationError:
            raise ApiError(409, "exists", f"a policy named {body.name!r} exists") from None
    if row is None:
        raise not_found(f"policy {pid}")
    log(
        logger,
        logging.INFO,
        "policy_changed",
        policy=pid,
        version=row.version,
        token=request[TOKEN].name,
    )
    return json_out(policy_out(row))


@api.route(
    "DELETE",
    "/policies/{policy_id}",
    audit="policy.delete",
    role="operator",
    tag="policies",
    summary="Delete a policy",
    responses={204: (None, "deleted"), 404: (None, "unknown")},
)
async def delete_policy(request: web.Request) -> web.Response:
    """Values it set stay on the devices; nothing is undone."""
    pid = _policy_id(request)
    async with services(request).pool.acquire() as conn:
        if not await store.delete(conn, pid):
            raise not_found(f"policy {pid}")
    return web.Response(status=204)


@api.route(
    "POST",
    "/policies/dry-run",
    audit="policy.draft.dry_run",
    audit_object="policy",
    role="viewer",
    tag="policies",
    summary="What a policy not yet saved would change on a device now (nothing is stored or sent)",
    body=P.PolicyIn,
    query=P.DraftDryRunQuery,
    responses={
        200: (P.DryRunOut, "the changes (policy 0: a draft)"),
        404: (None, "unknown device, or unknown policy in ?policy"),
    },
)
async def dry_run_draft(request: web.Request) -> web.Response:
    """The policy editor's dry run: the body is checked exactly as a create or
    replace would check it (a 400 lists every bad field), then run as the
    device's next session would, without being saved."""
    body: P.PolicyIn = await body_of(request, P.PolicyIn)
    q: P.DraftDryRunQuery = query_of(request, P.DraftDryRunQuery)
    values = _values(body)
    sealer = services(request).sealer
    if q.policy is None:
        audit_note(request, device=q.device)
    else:
        audit_note(request, object_id=str(q.policy), device=q.device)
    async with services(request).pool.acquire() as conn:
        before = None
        if q.policy is not None:
            before = await store.get(conn, q.policy)
            if before is None:
                raise not_found(f"policy {q.policy}")
        _refuse_masks(keep_masked(values["spec"], before.spec if before else None))  # type: ignore[arg-type]
        now = provisioning.utcnow()
        draft = store.PolicyRow(
            id=0,
            version=0,
            created_by=None,
            created_at=now,
            updated_at=now,
            **values,  # type: ignore[arg-type]
        )
        try:
            loaded = provisioning.load(draft, sealer)
        except SpecError as bad:
            raise ApiError(400, "invalid_policy", str(bad), bad.errors) from None
        result = await provisioning.dry_run(
            conn, provisioning.PolicyBook(sealer=sealer), loaded, q.device, now, sealer
        )
    if result is None:
        raise not_found(f"device {q.device!r}")
    return json_out(P.DryRunOut(policy=0, device=q.device, **result))


@api.route(
    "POST",
    "/policies/{policy_id}/dry-run",
    audit="policy.dry_run",
    role="viewer",
    tag="policies",
    summary="What the policy would change on a device now (nothing is sent)",
    query=P.DryRunQuery,
    responses={
        200: (P.DryRunOut, "the changes"),
        404: (None, "unknown policy or device"),
        409: (None, "the stored policy cannot be used (its secrets do not open, say)"),
    },
)
async def dry_run_policy(request: web.Request) -> web.Response:
    """Computed from the stored tree, as the device's next session would."""
    pid = _policy_id(request)
    q: P.DryRunQuery = query_of(request, P.DryRunQuery)
    sealer = services(request).sealer
    audit_note(request, device=q.device)
    async with services(request).pool.acquire() as conn:
        row = await store.get(conn, pid)
        if row is None:
            raise not_found(f"policy {pid}")
        try:
            loaded = provisioning.load(row, sealer)
        except SpecError as bad:  # written to the table by hand, or before a rule got stricter
            raise ApiError(409, "policy_unusable", str(bad), bad.errors) from None
        except ValueError as err:  # its sealed secrets do not open with this key
            raise ApiError(409, "policy_unusable", f"policy {pid} cannot be used: {err}") from None
        result = await provisioning.dry_run(
            conn,
            provisioning.PolicyBook(sealer=sealer),
            loaded,
            q.device,
            provisioning.utcnow(),
            sealer,
        )
    if result is None:
        raise not_found(f"device {q.device!r}")
    return json_out(P.DryRunOut(policy=pid, device=q.device, **result))


@api.route(
    "GET",
    "/devices/{device_id}/policies",
    role="viewer",
    tag="policies",
    summary="What each policy last did on the device, and which policy set which value",
    responses={200: (P.DevicePoliciesOut, "results"), 404: (None, "unknown device")},
)
async def device_policies(request: web.Request) -> web.Response:
    """Faults (a parameter the device lacks, a refused value, a loop) and lost conflicts."""
    dev_id = request.match_info["device_id"]
    async with services(request).pool.acquire() as conn:
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
        results = await store.results(conn, dev_id)
        rows = {r.id: r for r in await store.list_all(conn)}
        sources = await store.sources(conn, dev_id)
    return json_out(
        P.DevicePoliciesOut(
            device=dev_id,
            results=[
                P.PolicyResultOut(
                    policy=pid,
                    name=rows[pid].name,
                    version=r.policy_version,
                    current=r.policy_version == rows[pid].version,
                    appliedAt=r.applied_at,
                    changes=r.changes,
                    faults=r.faults,
                    conflicts=mask_document(r.conflicts),
                )
                for pid, r in sorted(results.items())
                if pid in rows
            ],
            sources=[
                P.SourceOut(
                    path=s["path"],
                    policy=s["policy_id"],
                    policyName=s["policy_name"],
                    value=mask_value(s["path"], s["value"]) or "",
                    setAt=s["set_at"],
                )
                for s in sources
            ],
        )
    )


@api.route(
    "PUT",
    "/devices/{device_id}/overrides",
    audit="device.overrides.set",
    role="operator",
    tag="policies",
    summary="Values this device must have whatever the policies say",
    body=P.OverridesIn,
    responses={200: (P.OverridesOut, "stored"), 404: (None, "unknown device")},
)
async def put_overrides(request: web.Request) -> web.Response:
    """Replaces the device's overrides; an empty list removes them."""
    dev_id = request.match_info["device_id"]
    body: P.OverridesIn = await body_of(request, P.OverridesIn)
    values = [(p[0], p[1], p[2] if len(p) == 3 else None) for p in body.parameters]
    try:
        check_overrides(values)
    except SpecError as bad:
        raise ApiError(400, "invalid_overrides", str(bad), bad.errors) from None
    svc = services(request)
    async with svc.pool.acquire() as conn:
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
        try:
            await provisioning.set_overrides(conn, svc.sealer, dev_id, values)
        except MaskGiven as bad:
            errors = [{"path": p, "message": str(bad)} for p in bad.paths]
            raise ApiError(400, "invalid_body", str(bad), errors) from None
    shown = mask_document([list(v) for v in values])
    return json_out(P.OverridesOut(device=dev_id, parameters=shown))


@api.route(
    "GET",
    "/devices/{device_id}/overrides",
    role="viewer",
    tag="policies",
    summary="The device's overrides",
    responses={200: (P.OverridesOut, "overrides"), 404: (None, "unknown device")},
)
async def get_overrides(request: web.Request) -> web.Response:
    """[[path, value, type]]."""
    dev_id = request.match_info["device_id"]
    async with services(request).pool.acquire() as conn:
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
        values = await store.overrides(conn, dev_id)
    shown = mask_document([list(v) for v in values])
    return json_out(P.OverridesOut(device=dev_id, parameters=shown))
