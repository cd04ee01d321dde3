"""Routes of bulk jobs: one task for every device a filter matches, at a rate."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from acs.core import bulk_schedule
from acs.core.sealing import MaskGiven
from acs.core.secrets import mask_document
from acs.core.tasks import InvalidTask, validate_task
from acs.services import bulk_jobs as engine
from acs.services import jobs, knock_waiting
from acs.store import bulk_jobs as bulk_store
from acs.web.api import bulk_models as B
from acs.web.api.errors import ApiError, not_found
from acs.web.api.models import KnockWaitingOut
from acs.web.api.plumbing import (
    TOKEN,
    api,
    audit_note,
    body_of,
    filter_of,
    json_out,
    path_id,
    query_of,
    services,
)


def _masked(task_name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": task_name, **mask_document(args)}


async def job_out(conn: asyncpg.Connection, job: bulk_store.BulkJob) -> B.BulkJobOut:
    return B.BulkJobOut(
        id=job.id,
        name=job.name,
        task=_masked(job.task_name, job.task_args),
        filter=job.filter,
        ratePerMinute=job.rate_per_minute,
        connectionRequest=job.connection_request,
        expiry=job.expiry_s,
        status=job.status,
        reason=job.reason,
        total=job.total,
        queued=job.queued,
        progress=await engine.progress(conn, job.id),
        createdBy=job.created_by,
        created=job.created_at,
        started=job.started_at,
        finished=job.finished_at,
        startAt=job.start_at,
        windows=job.windows,
        waiting=engine.held(job),
    )


def _bulk_id(request: web.Request) -> int:
    return path_id(request, "bulk_id")


@api.route(
    "POST",
    "/bulk-jobs",
    audit="bulk_job.create",
    audit_dry_run="bulk_job.dry_run",
    audit_object="bulk_job",
    role="operator",
    tag="bulk jobs",
    summary="Apply a job to every device matching a filter, or preview it with dryRun=true",
    body=B.BulkJobIn,
    query=B.BulkJobQuery,
    responses={
        201: (B.BulkJobOut, "created and running; its devices are queued at its rate"),
        200: (B.BulkDryRunOut, "dryRun: how many devices it would take, written nowhere"),
        404: (None, "a download's file is not on the file server"),
    },
)
async def create_bulk_job(request: web.Request) -> web.Response:
    """The devices are those matching the filter now (a snapshot, in device id
    order); later matches do not join. The task takes GenieACS NBI's shape,
    e.g. ``{"name": "setParameterValues", "parameterValues": [[path, value]]}``."""
    q: B.BulkJobQuery = query_of(request, B.BulkJobQuery)
    if q.dryRun:
        audit_note(request, dry_run=True)
    body: B.BulkJobIn = await body_of(request, B.BulkJobIn)
    args = dict(body.task.model_extra or {})
    try:
        validate_task(body.task.name, args)
    except InvalidTask as bad:
        # the task's own paths are relative to it; the body nests it under "task"
        errors = [{**e, "path": ".".join(p for p in ("task", e["path"]) if p)} for e in bad.errors]
        raise ApiError(400, "invalid_task", bad.reason, errors) from None
    try:
        sealed = services(request).sealer.seal_args(args)  # kept sealed, opened per session
    except MaskGiven as bad:
        errors = [{"path": f"task.{p}", "message": str(bad)} for p in bad.paths]
        raise ApiError(400, "invalid_task", str(bad), errors) from None
    expr = filter_of(body.filter)
    try:
        schedule = bulk_schedule.check_schedule(
            body.startAt, [w.model_dump() for w in body.windows], datetime.now(UTC)
        )
    except bulk_schedule.ScheduleError as err:
        raise ApiError(
            400, "invalid_schedule", str(err), [{"path": err.path, "message": err.message}]
        ) from None
    who = request[TOKEN].name
    try:
        async with services(request).pool.acquire() as conn:
            if q.dryRun:
                preview = await engine.preview(conn, expr, body.task.name, args)
                audit_note(request, name=body.name, devices=preview.total)
                return json_out(B.BulkDryRunOut(devices=preview.total, sample=preview.sample))
            job = await engine.create(
                conn,
                expr,
                name=body.name,
                task_name=body.task.name,
                task_args=sealed,
                filter_text=body.filter,
                rate_per_minute=body.ratePerMinute,
                connection_request=body.connectionRequest,
                expiry_s=body.expiry,
                created_by=who,
                schedule=schedule,
            )
            out = await job_out(conn, job)
        audit_note(request, object_id=str(job.id), name=body.name, task=body.task.name)
    except engine.InvalidFilter as err:
        raise ApiError(
            400, "invalid_filter", str(err), [{"path": "filter", "message": str(err)}]
        ) from None
    except jobs.UnknownFile as err:
        raise ApiError(
            404, "unknown_file", str(err), [{"path": f"task.{err.field}", "message": str(err)}]
        ) from None
    return json_out(out, 201)


@api.route(
    "GET",
    "/bulk-jobs",
    role="viewer",
    tag="bulk jobs",
    summary="List bulk jobs with their progress",
    query=B.BulkJobListQuery,
    responses={200: (B.BulkJobListOut, "a page of jobs, newest first")},
)
async def list_bulk_jobs(request: web.Request) -> web.Response:
    """Newest first; page with ``before``."""
    q: B.BulkJobListQuery = query_of(request, B.BulkJobListQuery)
    async with services(request).pool.acquire() as conn:
        jobs = await bulk_store.list_jobs(conn, limit=q.limit, before=q.before)
        items = [await job_out(conn, j) for j in jobs]
    more = len(jobs) == q.limit
    return json_out(B.BulkJobListOut(items=items, next=jobs[-1].id if more else None))


@api.route(
    "GET",
    "/bulk-jobs/{bulk_id}",
    role="viewer",
    tag="bulk jobs",
    summary="A bulk job and its progress",
    responses={200: (B.BulkJobOut, "the job"), 404: (None, "unknown bulk job")},
)
async def get_bulk_job(request: web.Request) -> web.Response:
    """Progress counts the devices not queued yet and the queued tasks by status."""
    bulk_id = _bulk_id(request)
    async with services(request).pool.acquire() as conn:
        job = await bulk_store.get(conn, bulk_id)
        if job is None:
            raise not_found(f"bulk job {bulk_id}")
        return json_out(await job_out(conn, job))


@api.route(
    "GET",
    "/bulk-jobs/{bulk_id}/devices",
    role="viewer",
    tag="bulk jobs",
    summary="The job's devices with their task, status and fault",
    query=B.BulkDeviceQuery,
    responses={200: (B.BulkDevicePageOut, "a page of devices"), 404: (None, "unknown bulk job")},
)
async def list_bulk_devices(request: web.Request) -> web.Response:
    """In device id order; ``status=fault`` lists the faulted ones with the CPE's fault."""
    bulk_id = _bulk_id(request)
    q: B.BulkDeviceQuery = query_of(request, B.BulkDeviceQuery)
    async with services(request).pool.acquire() as conn:
        if await bulk_store.get(conn, bulk_id) is None:
            raise not_found(f"bulk job {bulk_id}")
        rows = await bulk_store.list_devices(
            conn, bulk_id, state=q.status, after=q.after, limit=q.limit
        )
    items = [
        B.BulkDeviceOut(
            device=r.device_id,
            status=r.state,
            task=r.task_id,
            queued=r.queued_at,
            finished=r.finished_at,
            fault=None
            if r.fault_code is None and r.fault_string is None
            else {"code": r.fault_code, "message": r.fault_string},
            connectionRequest=None
            if r.knocked_at is None
            else {"at": r.knocked_at, "ok": r.knock_error is None, "reason": r.knock_error},
            reason=r.skip_reason,
        )
        for r in rows
    ]
    more = len(rows) == q.limit
    return json_out(B.BulkDevicePageOut(items=items, next=rows[-1].device_id if more else None))


def _control_route(path: str, summary: str, action: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        bulk_id = _bulk_id(request)
        async with services(request).pool.acquire() as conn:
            try:
                job = await action(conn, bulk_id, request[TOKEN].name)
            except LookupError:
                raise not_found(f"bulk job {bulk_id}") from None
            except engine.ControlError as err:
                raise ApiError(409, "conflict", str(err)) from None
            return json_out(await job_out(conn, job))

    handler.__doc__ = summary
    handler.__name__ = f"bulk_job_{path}"  # the OpenAPI operationId
    api.route(
        "POST",
        f"/bulk-jobs/{{bulk_id}}/{path}",
        role="operator",
        tag="bulk jobs",
        summary=summary,
        audit=f"bulk_job.{path}",
        responses={
            200: (B.BulkJobOut, "done"),
            404: (None, "unknown bulk job"),
            409: (None, "not possible in the job's status"),
        },
    )(handler)


_control_route("cancel", "Cancel: queue no more, withdraw the tasks still pending", engine.cancel)
_control_route("pause", "Pause: queue no more until resumed (queued tasks still run)", engine.pause)
_control_route("resume", "Resume queuing at the job's rate", engine.resume)


@api.route(
    "POST",
    "/bulk-jobs/{bulk_id}/knock",
    audit="bulk_job.knock",
    role="operator",
    tag="bulk jobs",
    summary="Knock the devices whose task of the job still waits",
    responses={
        200: (
            KnockWaitingOut,
            "how many were knocked, by channel and outcome, who was not reached",
        ),
        404: (None, "unknown bulk job"),
        409: (None, "the job is finished"),
    },
)
async def bulk_job_knock(request: web.Request) -> web.Response:
    """A connection request to each device whose task is still pending, at most
    ``ACS_KNOCK_WAITING_RATE_PER_S`` started a second and ``ACS_KNOCK_WAITING_MAX``
    per call; the outcome is kept on the device's row of ``/devices``."""
    bulk_id = _bulk_id(request)
    svc = services(request)
    try:
        r = await knock_waiting.bulk_job(svc.pool, svc.settings, bulk_id, svc.knock)
    except LookupError:
        raise not_found(f"bulk job {bulk_id}") from None
    except engine.ControlError as err:
        raise ApiError(409, "conflict", str(err)) from None
    audit_note(request, knocked=r.knocked, reached=r.reached)
    return json_out(KnockWaitingOut.of(r))
