"""Routes for running the ACS in production: session logs, the audit log, webhooks."""

from __future__ import annotations

import logging
import secrets

from aiohttp import web

from acs.logs import log
from acs.store import audit, device_events, devices, session_logs
from acs.store import webhooks as hooks
from acs.web.api import observability_models as O
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


# --------------------------------------------------------------------------- session logs


def _summary_out(s: session_logs.SessionSummary) -> O.SessionSummaryOut:
    return O.SessionSummaryOut(
        id=s.id,
        started=s.started_at,
        ended=s.ended_at,
        outcome=s.outcome,  # type: ignore[arg-type]  # the table's CHECK allows only these
        reason=s.reason,
        events=s.events,
        messageCount=s.message_count,
        storedBytes=s.stored_bytes,
        truncated=s.truncated,
        remoteAddress=s.remote_address,
        sessionKey=s.session_key,
    )


@api.route(
    "GET",
    "/devices/{device_id}/sessions",
    role="viewer",
    tag="sessions",
    summary="The device's last CWMP sessions",
    responses={200: (O.SessionListOut, "newest first"), 404: (None, "unknown device")},
)
async def list_device_sessions(request: web.Request) -> web.Response:
    """The last ACS_SESSION_LOG_PER_DEVICE sessions, within ACS_SESSION_LOG_MAX_AGE_S."""
    dev_id = request.match_info["device_id"]
    async with services(request).pool.acquire() as conn:
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
        items = await session_logs.list_sessions(conn, dev_id)
    return json_out(O.SessionListOut(device=dev_id, items=[_summary_out(s) for s in items]))


@api.route(
    "GET",
    "/devices/{device_id}/sessions/{session_id}",
    role="viewer",
    tag="sessions",
    summary="One CWMP session with every message in and out",
    responses={200: (O.SessionOut, "the session"), 404: (None, "unknown device or session")},
)
async def get_device_session(request: web.Request) -> web.Response:
    """Bodies as text with passwords, passphrases and keys masked; HTTP headers
    (and so Authorization) are never recorded."""
    dev_id = request.match_info["device_id"]
    session_id = path_id(request, "session_id")
    async with services(request).pool.acquire() as conn:
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
        found = await session_logs.get_session(conn, dev_id, session_id)
    if found is None:
        raise not_found(f"session {session_id} of device {dev_id!r} (it may have been pruned)")
    summary, messages = found
    return json_out(
        O.SessionOut(
            **_summary_out(summary).model_dump(),
            device=dev_id,
            messages=[O.SessionMessageOut(**m) for m in messages],
        )
    )


@api.route(
    "GET",
    "/devices/{device_id}/events",
    role="viewer",
    tag="sessions",
    summary="What the device reported on its own, outside any job",
    responses={200: (O.DeviceEventPageOut, "newest first"), 404: (None, "unknown device")},
)
async def list_device_events(request: web.Request) -> web.Response:
    """AutonomousTransferComplete, AutonomousDUStateChangeComplete, a
    DUStateChangeComplete no job owns, a RequestDownload and what the ACS did
    with it. Page on with ``cursor=<nextCursor>``."""
    dev_id = request.match_info["device_id"]
    q: O.DeviceEventQuery = query_of(request, O.DeviceEventQuery)
    async with services(request).pool.acquire() as conn:
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
        rows = await device_events.list_events(
            conn, dev_id, kind=q.kind, before=q.cursor, limit=q.limit
        )
    return json_out(
        O.DeviceEventPageOut(
            device=dev_id,
            items=[O.DeviceEventOut(id=e.id, at=e.at, kind=e.kind, detail=e.detail) for e in rows],
            nextCursor=rows[-1].id if len(rows) == q.limit else None,
        )
    )


# --------------------------------------------------------------------------- audit


@api.route(
    "GET",
    "/audit",
    role="admin",
    tag="admin",
    summary="Who did what, to which object, when",
    query=O.AuditQuery,
    responses={200: (O.AuditPageOut, "newest first")},
)
async def list_audit(request: web.Request) -> web.Response:
    """Every changing API request of a token (method, route, action, object,
    outcome status). Page on with ``cursor=<nextCursor>``."""
    q: O.AuditQuery = query_of(request, O.AuditQuery)
    async with services(request).pool.acquire() as conn:
        rows = await audit.search(
            conn,
            actor=q.actor,
            object_id=q.object,
            object_type=q.objectType,
            action=q.action,
            since=q.since,
            until=q.until,
            before_id=q.cursor,
            limit=q.limit,
        )
    return json_out(
        O.AuditPageOut(
            items=[
                O.AuditEntryOut(
                    id=r.id,
                    at=r.at,
                    actor=r.actor,
                    role=r.role,
                    method=r.method,
                    route=r.route,
                    action=r.action,
                    objectType=r.object_type,
                    objectId=r.object_id,
                    status=r.status,
                    remote=r.remote,
                    detail=r.detail,
                )
                for r in rows
            ],
            nextCursor=rows[-1].id if len(rows) == q.limit else None,
        )
    )


# --------------------------------------------------------------------------- webhooks


def _hook_out(h: hooks.Webhook, counts: dict[int, dict[str, int]]) -> O.WebhookOut:
    return O.WebhookOut(
        id=h.id,
        url=h.url,
        events=h.events,
        enabled=h.enabled,
        createdBy=h.created_by,
        created=h.created_at,
        deliveries=counts.get(h.id, {}),
    )


@api.route(
    "POST",
    "/webhooks",
    audit="webhook.create",
    audit_object="webhook",
    role="admin",
    tag="webhooks",
    summary="Register a webhook",
    body=O.WebhookIn,
    responses={201: (O.WebhookCreatedOut, "registered; the secret is shown once")},
)
async def create_webhook(request: web.Request) -> web.Response:
    """Each event is POSTed as JSON with ``X-ACS-Event`` and ``X-ACS-Signature:
    sha256=<hex HMAC-SHA256 of the body with the secret>``."""
    body: O.WebhookIn = await body_of(request, O.WebhookIn)
    secret = body.secret or secrets.token_urlsafe(32)
    async with services(request).pool.acquire() as conn:
        hook = await hooks.create(
            conn,
            body.url,
            secret,
            body.events,
            enabled=body.enabled,
            created_by=request[TOKEN].name,
        )
    audit_note(request, object_type="webhook", object_id=str(hook.id), url=hook.url)
    log(logger, logging.INFO, "webhook_created", hook=hook.id, token=request[TOKEN].name)
    out = _hook_out(hook, {})
    return json_out(O.WebhookCreatedOut(**out.model_dump(), secret=secret), 201)


@api.route(
    "GET",
    "/webhooks",
    role="admin",
    tag="webhooks",
    summary="List webhooks",
    responses={200: (O.WebhookListOut, "webhooks (never their secret)")},
)
async def list_webhooks(request: web.Request) -> web.Response:
    """With their deliveries counted by state."""
    async with services(request).pool.acquire() as conn:
        items = await hooks.list_all(conn)
        counts = await hooks.outbox_counts(conn)
    return json_out(O.WebhookListOut(items=[_hook_out(h, counts) for h in items]))


@api.route(
    "DELETE",
    "/webhooks/{webhook_id}",
    audit="webhook.delete",
    role="admin",
    tag="webhooks",
    summary="Delete a webhook",
    responses={204: (None, "deleted"), 404: (None, "unknown webhook")},
)
async def delete_webhook(request: web.Request) -> web.Response:
    """Its undelivered events are dropped with it."""
    hook_id = path_id(request, "webhook_id")
    async with services(request).pool.acquire() as conn:
        if not await hooks.delete(conn, hook_id):
            raise not_found(f"webhook {hook_id}")
    return web.Response(status=204)


@api.route(
    "GET",
    "/webhooks/{webhook_id}/deliveries",
    role="admin",
    tag="webhooks",
    summary="A webhook's deliveries with their attempts and last error",
    query=O.DeliveryQuery,
    responses={200: (O.DeliveryPageOut, "newest first"), 404: (None, "unknown webhook")},
)
async def list_deliveries(request: web.Request) -> web.Response:
    """Pending ones say when they are tried next; abandoned ones why they failed."""
    hook_id = path_id(request, "webhook_id")
    q: O.DeliveryQuery = query_of(request, O.DeliveryQuery)
    async with services(request).pool.acquire() as conn:
        if await hooks.get(conn, hook_id) is None:
            raise not_found(f"webhook {hook_id}")
        rows = await hooks.list_deliveries(
            conn, hook_id, state=q.state, before=q.cursor, limit=q.limit
        )
    return json_out(
        O.DeliveryPageOut(
            items=[
                O.DeliveryOut(
                    id=r.id,
                    eventId=str(r.event_id),
                    event=r.event_type,
                    state=r.state,  # type: ignore[arg-type]
                    attempts=r.attempts,
                    nextAttemptAt=r.next_attempt_at if r.state == "pending" else None,
                    lastStatus=r.last_status,
                    lastError=r.last_error,
                    created=r.created_at,
                    finished=r.finished_at,
                    payload=r.payload,
                )
                for r in rows
            ],
            nextCursor=rows[-1].id if len(rows) == q.limit else None,
        )
    )


@api.route(
    "POST",
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    audit="webhook.redeliver",
    role="admin",
    tag="webhooks",
    summary="Send a delivered or abandoned delivery again",
    responses={
        202: (O.RedeliverOut, "due now; the sender takes it at its next round"),
        404: (None, "unknown webhook or delivery"),
        409: (None, "the delivery is still pending"),
    },
)
async def redeliver(request: web.Request) -> web.Response:
    """With a fresh count of attempts and the same payload: its ``id`` is the
    event's, so a receiver that keeps ids can tell a redelivery."""
    hook_id = path_id(request, "webhook_id")
    delivery_id = path_id(request, "delivery_id")
    async with services(request).pool.acquire() as conn:
        if await hooks.get(conn, hook_id) is None:
            raise not_found(f"webhook {hook_id}")
        before = await hooks.redeliver(conn, hook_id, delivery_id)
    if before is None:
        raise not_found(f"delivery {delivery_id} of webhook {hook_id}")
    if before == "pending":
        raise ApiError(409, "still_pending", "the delivery is pending: the sender tries it anyway")
    audit_note(request, delivery=delivery_id, was=before)
    return json_out(O.RedeliverOut(delivery=delivery_id, was=before), 202)  # type: ignore[arg-type]
