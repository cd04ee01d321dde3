"""The operator API: /api/v1 on the API port, Bearer tokens on every route."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from acs.core.sealing import MaskGiven
from acs.core.tasks import InvalidTask, validate_task
from acs.logs import log
from acs.services import jobs
from acs.services.knock import reach_view
from acs.store import device_query, devices, files, tokens
from acs.store import tasks as task_store
from acs.store.db import UNAVAILABLE
from acs.web.api import auditing
from acs.web.api import models as M
from acs.web.api.errors import ApiError, not_found
from acs.web.api.plumbing import (
    SERVICES,
    TOKEN,
    Services,
    api,
    audit_note,
    body_of,
    filter_of,
    json_out,
    path_id,
    query_of,
    refuse_bad_text,
    services,
)
from acs.web.api.task_views import task_out
from acs.web.ui import session as ui_session

logger = logging.getLogger("acs.api")
TOKEN_CACHE_S = 5.0  # a revoked token stops working within this many seconds
JSON_BODY_LIMIT = 1024 * 1024
RETRY_AFTER_S = "10"


@web.middleware
async def api_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith(api.prefix):
        return await handler(request)
    route = api.find(request.method, request.match_info.route.resource)
    try:
        if route is not None:
            request[TOKEN] = await identify(request)
            require_role(request[TOKEN], route.role)
            refuse_bad_text(dict(request.match_info), "invalid_path")
            route.check_path(request.match_info)
        response = await handler(request)
    except ApiError as err:
        headers = {"WWW-Authenticate": 'Bearer realm="acs"'} if err.status == 401 else None
        response = err.response(headers)
    except UNAVAILABLE as exc:
        # the database is down or restarting: operators' scripts retry a 503, and a
        # 500 would say the ACS is broken when it is waiting for PostgreSQL
        log(
            logger,
            logging.ERROR,
            "database_unavailable",
            path=request.path,
            method=request.method,
            error=repr(exc),
        )
        response = ApiError(
            503, "database_unavailable", f"the database is unavailable, retry later: {exc}"
        ).response({"Retry-After": RETRY_AFTER_S})
    except web.HTTPException as exc:
        if exc.status < 400:
            await auditing.record(request, route, exc.status)
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, "http_error"
        )
        # a 405 says which methods the path has (RFC 9110 15.5.6)
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = ApiError(exc.status, code, exc.reason).response(allow)
    except Exception:
        await auditing.record(request, route, 500)
        raise
    # the one place every changing request is audited, after its outcome is known
    await auditing.record(request, route, response.status)
    return response


_token_cache: dict[str, tuple[float, tokens.ApiToken]] = {}


async def identify(request: web.Request) -> tokens.ApiToken:
    """The request's token, or 401."""
    header = request.headers.get("Authorization", "")
    if not header and ui_session.session_cookie(request) is not None:
        # the web UI's pages and scripts call this API with the user's session
        return await ui_session.api_identity(request)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthenticated",
            "send Authorization: Bearer <token>, or sign in to the web UI at /ui/login",
        )
    token = token.strip()
    if not (token.isascii() and token.isprintable()):
        # header bytes beyond ASCII arrive as lone surrogates: no token of ours
        raise ApiError(401, "unauthenticated", "unknown or revoked token")
    cached = _token_cache.get(token)
    if cached is not None and time.monotonic() - cached[0] < TOKEN_CACHE_S:
        found: tokens.ApiToken | None = cached[1]
    else:
        async with services(request).pool.acquire() as conn:
            found = await tokens.verify_token(conn, token)
        if found is None:
            _token_cache.pop(token, None)
            raise ApiError(401, "unauthenticated", "unknown or revoked token")
        _token_cache[token] = (time.monotonic(), found)
    assert found is not None
    return found


def require_role(token: tokens.ApiToken, needed: str) -> None:
    if not tokens.role_allows(token.role, needed):
        raise ApiError(
            403, "forbidden", f"role {token.role!r} may not do this; it needs {needed!r} or above"
        )


def build_api_app(
    svc: Services, extra: Callable[[web.Application], None] | None = None
) -> web.Application:
    # JSON bodies are small; file uploads stream past this limit to their own
    app = web.Application(middlewares=[api_middleware], client_max_size=JSON_BODY_LIMIT)
    app[SERVICES] = svc
    api.add_to(app)
    if extra is not None:
        extra(app)
    return app


def openapi_document() -> dict[str, Any]:
    doc = api.openapi("ACS operator API", "1")
    # the web UI's session works on every route too; say so, with its CSRF rule
    doc["components"]["securitySchemes"][ui_session.COOKIE] = {
        "type": "apiKey",
        "in": "cookie",
        "name": ui_session.COOKIE,
        "description": "a web UI session (sign in at /ui/login); requests other than"
        f" GET/HEAD/OPTIONS must also send the session's {ui_session.CSRF_HEADER} header",
    }
    for operations in doc["paths"].values():
        for op in operations.values():
            op["security"].append({ui_session.COOKIE: []})
    return doc


# --------------------------------------------------------------------------- devices


def device_out(
    dev: devices.DeviceRecord, params: dict[str, devices.ParameterRecord] | None = None
) -> M.DeviceOut:
    return M.DeviceOut(
        id=dev.id,
        oui=dev.oui,
        productClass=dev.product_class,
        serialNumber=dev.serial_number,
        manufacturer=dev.manufacturer,
        registered=dev.created_at,
        lastInform=dev.last_inform,
        lastBoot=dev.last_boot,
        lastBootstrap=dev.last_bootstrap,
        lastEvents=dev.last_events,
        remoteAddress=dev.remote_address,
        connectionRequestUrl=dev.connection_request_url,
        softwareVersion=dev.software_version,
        hardwareVersion=dev.hardware_version,
        provisioningCode=dev.provisioning_code,
        cwmpVersion=dev.cwmp_version,
        tags=dev.tags,
        parameterCount=dev.parameter_count,
        parameters=None
        if params is None
        else {
            path: M.ParameterOut(
                value=p.value,  # a secret's is the mask: the store keeps it sealed
                type=p.xsd_type,
                writable=p.writable,
                notification=p.notification,
                accessList=p.access_list,
                valueAt=p.value_at,
                object=p.object,
            )
            for path, p in sorted(params.items())
        },
    )


@api.route(
    "GET",
    "/devices",
    role="viewer",
    tag="devices",
    summary="Find devices",
    query=M.DeviceListQuery,
    responses={200: (M.DevicePageOut, "a page of devices")},
)
async def list_devices(request: web.Request) -> web.Response:
    """Filter with the filter language, sort, page with cursors, project parameters."""
    q: M.DeviceListQuery = query_of(request, M.DeviceListQuery)
    expr = filter_of(q.filter)
    projection = [p.strip() for p in q.projection.split(",") if p.strip()]
    try:
        async with services(request).reads.acquire() as conn:  # a standby may answer
            page = await device_query.list_devices(
                conn,
                expr,
                sort=q.sort,
                descending=q.order == "desc",
                limit=q.limit,
                cursor=q.cursor,
                projection=projection or None,
            )
    except ValueError as err:
        field = err.field if isinstance(err, device_query.InvalidParameter) else "filter"
        raise ApiError(
            400, "invalid_query", str(err), [{"path": field, "message": str(err)}]
        ) from None
    return json_out(
        M.DevicePageOut(items=page.items, total=page.total, nextCursor=page.next_cursor)
    )


@api.route(
    "GET",
    "/devices/{device_id}",
    role="viewer",
    tag="devices",
    summary="One device with its parameter tree",
    query=M.DeviceQuery,
    responses={200: (M.DeviceOut, "the device"), 404: (None, "unknown device")},
)
async def get_device(request: web.Request) -> web.Response:
    """The whole tree, or the subtree under ``prefix`` (e.g. ``Device.WiFi.``)."""
    q: M.DeviceQuery = query_of(request, M.DeviceQuery)
    dev_id = request.match_info["device_id"]
    async with services(request).pool.acquire() as conn:
        dev = await devices.get_device(conn, dev_id)
        if dev is None:
            raise not_found(f"device {dev_id!r}")
        params = await devices.get_parameters(conn, dev_id, q.prefix)
    return json_out(device_out(dev, params))


@api.route(
    "DELETE",
    "/devices/{device_id}",
    audit="device.delete",
    role="operator",
    tag="devices",
    summary="Delete a device (it registers again at its next Inform)",
    responses={204: (None, "deleted"), 404: (None, "unknown device")},
)
async def delete_device(request: web.Request) -> web.Response:
    """Removes the device, its tree and its jobs."""
    dev_id = request.match_info["device_id"]
    async with services(request).pool.acquire() as conn:
        if not await devices.delete_device(conn, dev_id):
            raise not_found(f"device {dev_id!r}")
    log(logger, logging.INFO, "device_deleted", device=dev_id, token=request[TOKEN].name)
    return web.Response(status=204)


@api.route(
    "POST",
    "/devices/{device_id}/tags",
    audit="device.tag.add",
    role="operator",
    tag="devices",
    summary="Add tags",
    body=M.TagsIn,
    responses={200: (M.DeviceOut, "the device"), 404: (None, "unknown device")},
)
async def add_tags(request: web.Request) -> web.Response:
    """Tags are 1-64 characters of letters, digits and ``_.:-``."""
    return await _change_tags(request, add=True)


@api.route(
    "DELETE",
    "/devices/{device_id}/tags/{tag}",
    audit="device.tag.remove",
    role="operator",
    tag="devices",
    summary="Remove a tag",
    responses={200: (M.DeviceOut, "the device"), 404: (None, "unknown device")},
)
async def remove_tag(request: web.Request) -> web.Response:
    """Removing a tag the device does not have is not an error."""
    return await _change_tags(request, add=False)


async def _change_tags(request: web.Request, *, add: bool) -> web.Response:
    dev_id = request.match_info["device_id"]
    if add:
        body: M.TagsIn = await body_of(request, M.TagsIn)
        tags = body.tags
    else:
        tags = [request.match_info["tag"]]
    audit_note(request, tags=tags)
    async with services(request).pool.acquire() as conn:
        try:
            change = device_query.add_tags if add else device_query.remove_tags
            if not await change(conn, dev_id, tags):
                raise not_found(f"device {dev_id!r}")
        except ValueError as err:
            raise ApiError(
                400, "invalid_tag", str(err), [{"path": "tags", "message": str(err)}]
            ) from None
        dev = await devices.get_device(conn, dev_id)
    assert dev is not None
    return json_out(device_out(dev))


# --------------------------------------------------------------------------- jobs


@api.route(
    "POST",
    "/devices/{device_id}/tasks",
    audit="device.task.create",
    role="operator",
    tag="jobs",
    summary="Queue a job for a device (optionally knock and wait)",
    body=M.TaskIn,
    query=M.TaskQuery,
    responses={
        200: (M.TaskOut, "the job ran (connection_request=true)"),
        201: (M.TaskOut, "queued"),
        202: (M.TaskOut, "queued; the device did not come in time"),
        404: (None, "unknown device, or a download's file is not on the file server"),
        409: (None, "the device can never run the job (a FOTA-only terminal)"),
        504: (M.TaskOut, "the connection request failed; the job stays queued"),
    },
)
async def create_task(request: web.Request) -> web.Response:
    """GenieACS NBI shapes, e.g.
    ``{"name": "setParameterValues", "parameterValues": [[path, value, type?]]}``."""
    q: M.TaskQuery = query_of(request, M.TaskQuery)
    body: M.TaskIn = await body_of(request, M.TaskIn)
    args = dict(body.model_extra or {})
    try:
        validate_task(body.name, args)
    except InvalidTask as bad:
        raise ApiError(400, "invalid_task", bad.reason, bad.errors) from None
    dev_id = request.match_info["device_id"]
    svc = services(request)
    try:
        sealed = svc.sealer.seal_args(args)  # a password set by a job is kept sealed
    except MaskGiven as bad:
        errors = [{"path": p, "message": str(bad)} for p in bad.paths]
        raise ApiError(400, "invalid_task", str(bad), errors) from None
    expires = datetime.now(UTC) + timedelta(seconds=body.expiry) if body.expiry else None
    try:
        async with svc.pool.acquire() as conn:
            task = await jobs.queue(
                conn,
                dev_id,
                body.name,
                args,
                stored=sealed,
                not_before=body.timestamp,
                expires_at=expires,
                unique_key=body.uniqueKey,
            )
    except jobs.UnknownDevice:
        raise not_found(f"device {dev_id!r}") from None
    except jobs.UnknownFile as err:
        raise unknown_file(err) from None
    except jobs.NeverRuns as err:
        raise ApiError(409, "never_runs", err.reason) from None
    except InvalidTask as bad:  # checked again by the device's own parameter types
        raise ApiError(400, "invalid_task", bad.reason, bad.errors) from None
    audit_note(request, job=task.id, name=task.name)
    log(
        logger,
        logging.INFO,
        "task_queued",
        device=dev_id,
        task=task.id,
        name=task.name,
        token=request[TOKEN].name,
    )
    if not q.connection_request:
        return json_out(task_out(task), 201)
    cr = await svc.knock(dev_id)
    if not cr.ok:
        return json_out(task_out(task, cr), 504)
    deadline = time.monotonic() + q.timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        async with svc.pool.acquire() as conn:
            current = await task_store.get_task(conn, task.id)
        assert current is not None
        if current.status in ("done", "fault", "expired", "cancelled"):
            return json_out(task_out(current, cr), 200)
        task = current
    return json_out(task_out(task, cr), 202)


def unknown_file(err: jobs.UnknownFile) -> ApiError:
    return ApiError(404, "unknown_file", str(err), [{"path": err.field, "message": str(err)}])


@api.route(
    "POST",
    "/devices/{device_id}/connection-request",
    audit="device.connection_request",
    role="operator",
    tag="jobs",
    summary="Ask the device to open a session now",
    responses={
        200: (M.ConnectionRequestOut, "outcome of the request"),
        404: (None, "unknown device"),
    },
)
async def connection_request(request: web.Request) -> web.Response:
    """The outcome says why a request failed (timeout, refused, wrong credentials...)."""
    dev_id = request.match_info["device_id"]
    svc = services(request)
    async with svc.pool.acquire() as conn:
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
    r = await svc.knock(dev_id)
    return json_out(
        M.ConnectionRequestOut(
            ok=r.ok,
            status=r.status,
            reason=r.reason,
            elapsedS=r.elapsed_s,
            channel=r.channel,
            channels=r.channels,
        )
    )


@api.route(
    "GET",
    "/devices/{device_id}/connection-request",
    role="viewer",
    tag="jobs",
    summary="How the device can be reached: its channels and their last outcomes",
    responses={
        200: (M.ReachOut, "channels, STUN binding, last outcome per channel"),
        404: (None, "unknown device"),
    },
)
async def connection_request_channels(request: web.Request) -> web.Response:
    """HTTP (ConnectionRequestURL) and UDP (STUN binding, UDPConnectionRequestAddress):
    which would be tried, in which order, why one would not, and how each last went."""
    dev_id = request.match_info["device_id"]
    svc = services(request)
    view = await reach_view(
        svc.pool,
        svc.settings,
        dev_id,
        udp_on=svc.udp_connreq is not None,
        xmpp=svc.xmpp_connreq,
    )
    if view is None:
        raise not_found(f"device {dev_id!r}")
    return json_out(M.ReachOut(**view))


@api.route(
    "GET",
    "/devices/{device_id}/tasks",
    role="viewer",
    tag="jobs",
    summary="A device's jobs, oldest first",
    responses={200: (M.TaskListOut, "jobs"), 404: (None, "unknown device")},
)
async def list_tasks(request: web.Request) -> web.Response:
    """Every job of the device with its state, result and fault."""
    dev_id = request.match_info["device_id"]
    async with services(request).pool.acquire() as conn:
        if await devices.get_device(conn, dev_id) is None:
            raise not_found(f"device {dev_id!r}")
        items = await task_store.list_tasks(conn, dev_id)
    return json_out(M.TaskListOut(items=[task_out(t) for t in items]))


def _task_id(request: web.Request) -> int:
    return path_id(request, "task_id")


@api.route(
    "GET",
    "/tasks/{task_id}",
    role="viewer",
    tag="jobs",
    summary="One job",
    responses={200: (M.TaskOut, "the job"), 404: (None, "unknown job")},
)
async def get_task(request: web.Request) -> web.Response:
    """State, result, CPE fault code and string."""
    async with services(request).pool.acquire() as conn:
        task = await task_store.get_task(conn, _task_id(request))
    if task is None:
        raise not_found("such job")
    return json_out(task_out(task))


@api.route(
    "DELETE",
    "/tasks/{task_id}",
    audit="task.cancel",
    role="operator",
    tag="jobs",
    summary="Cancel a pending job",
    responses={
        200: (M.TaskOut, "cancelled"),
        404: (None, "unknown job"),
        409: (None, "the job is not pending"),
    },
)
async def cancel_task(request: web.Request) -> web.Response:
    """Only a job that has not started can be cancelled."""
    task_id = _task_id(request)
    async with services(request).pool.acquire() as conn:
        if not await task_store.cancel(conn, task_id):
            task = await task_store.get_task(conn, task_id)
            if task is None:
                raise not_found("such job")
            raise ApiError(
                409, "not_pending", f"the job is {task.status}; only pending jobs can be cancelled"
            )
        task = await task_store.get_task(conn, task_id)
    assert task is not None
    return json_out(task_out(task))


@api.route(
    "POST",
    "/tasks/{task_id}/retry",
    audit="task.retry",
    role="operator",
    tag="jobs",
    summary="Retry a faulted or expired job",
    responses={
        200: (M.TaskOut, "pending again"),
        404: (None, "unknown job"),
        409: (None, "the job did not fault"),
    },
)
async def retry_task(request: web.Request) -> web.Response:
    """The job goes back to pending and runs at the device's next session."""
    task_id = _task_id(request)
    async with services(request).pool.acquire() as conn:
        task = await task_store.retry(conn, task_id)
        if task is None:
            existing = await task_store.get_task(conn, task_id)
            if existing is None:
                raise not_found("such job")
            raise ApiError(
                409,
                "not_faulted",
                f"the job is {existing.status}; only faulted or expired jobs can be retried",
            )
    return json_out(task_out(task))


# --------------------------------------------------------------------------- files


def file_out(svc: Services, f: files.FileRecord) -> M.FileOut:
    return M.FileOut(
        name=f.name,
        size=f.size,
        sha256=f.sha256,
        fileType=f.file_type,
        oui=f.oui,
        productClass=f.product_class,
        version=f.version,
        hardwareVersions=f.hardware_versions,
        metadata=f.metadata,
        created=f.created_at,
        url=svc.settings.files_base_url + f.name,
    )


@api.route(
    "PUT",
    "/files/{name}",
    audit="file.upload",
    role="admin",
    tag="files",
    summary="Upload a file (streamed) with its metadata",
    query=M.FileQuery,
    raw_body="application/octet-stream",
    responses={
        201: (M.FileOut, "stored"),
        409: (None, "name taken (use replace=true)"),
        413: (None, "over the size limit"),
        507: (None, "the file could not be stored"),
    },
)
async def upload_file(request: web.Request) -> web.Response:
    """The body is the file itself; metadata come as query parameters."""
    q: M.FileQuery = query_of(request, M.FileQuery)
    name = request.match_info["name"]
    svc = services(request)
    try:
        files.validate_name(name)
    except ValueError as err:
        raise ApiError(400, "invalid_name", str(err)) from None
    limit = svc.settings.api_max_upload_bytes
    if not request.body_exists:
        # the document requires a body; an empty PUT is a mistake, not a file
        raise ApiError(
            400, "empty_body", "send the file as the body", [{"path": "body", "message": "empty"}]
        )
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"the file exceeds the limit of {limit} bytes")
    hw = [h.strip() for h in q.hardwareVersions.split(",") if h.strip()]
    try:
        async with svc.pool.acquire() as conn:
            record = await files.store_file(
                conn,
                svc.settings.files_dir,
                name,
                request.content.iter_chunked(256 * 1024),
                max_bytes=limit,
                file_type=q.fileType,
                oui=q.oui,
                product_class=q.productClass,
                version=q.version,
                hardware_versions=hw,
                replace=q.replace,
            )
    except files.FileExists:
        raise ApiError(409, "exists", f"a file named {name!r} exists; add replace=true") from None
    except files.FileTooLarge:
        raise ApiError(413, "too_large", f"the file exceeds the limit of {limit} bytes") from None
    except OSError as err:
        raise ApiError(507, "storage_error", f"the file could not be stored: {err}") from None
    log(logger, logging.INFO, "file_stored", file=name, size=record.size, token=request[TOKEN].name)
    return json_out(file_out(svc, record), 201)


@api.route(
    "GET",
    "/files",
    role="viewer",
    tag="files",
    summary="List files",
    responses={200: (M.FileListOut, "files")},
)
async def list_files(request: web.Request) -> web.Response:
    """Every stored file with its metadata and download URL."""
    svc = services(request)
    async with svc.pool.acquire() as conn:
        items = await files.list_files(conn)
    return json_out(M.FileListOut(items=[file_out(svc, f) for f in items]))


@api.route(
    "GET",
    "/files/{name}",
    role="viewer",
    tag="files",
    summary="One file's metadata",
    responses={200: (M.FileOut, "the file"), 404: (None, "unknown file")},
)
async def get_file(request: web.Request) -> web.Response:
    """Metadata only; the bytes are on the file server."""
    svc = services(request)
    async with svc.pool.acquire() as conn:
        record = await files.get_file(conn, request.match_info["name"])
    if record is None:
        raise not_found(f"file {request.match_info['name']!r}")
    return json_out(file_out(svc, record))


@api.route(
    "DELETE",
    "/files/{name}",
    audit="file.delete",
    role="admin",
    tag="files",
    summary="Delete a file",
    responses={
        204: (None, "deleted"),
        404: (None, "unknown file"),
        409: (None, "the firmware catalog offers the file"),
    },
)
async def delete_file(request: web.Request) -> web.Response:
    """Removes the row and the bytes."""
    svc = services(request)
    try:
        async with svc.pool.acquire() as conn:
            gone = await files.delete_file(conn, svc.settings.files_dir, request.match_info["name"])
    except (asyncpg.ForeignKeyViolationError, asyncpg.RestrictViolationError):
        raise ApiError(
            409, "in_use", "the firmware catalog offers this file; remove its images first"
        ) from None
    if not gone:
        raise not_found(f"file {request.match_info['name']!r}")
    return web.Response(status=204)


# --------------------------------------------------------------------------- tokens


def token_out(t: tokens.ApiToken) -> M.TokenOut:
    return M.TokenOut(
        name=t.name,
        role=t.role,
        created=t.created_at,
        lastUsed=t.last_used_at,
        revoked=t.revoked_at,
    )


@api.route(
    "GET",
    "/tokens",
    role="admin",
    tag="admin",
    summary="List API tokens",
    responses={200: (M.TokenListOut, "tokens (never their secret)")},
)
async def list_api_tokens(request: web.Request) -> web.Response:
    """Names, roles and use; the secrets themselves are not kept."""
    async with services(request).pool.acquire() as conn:
        items = await tokens.list_tokens(conn)
    return json_out(M.TokenListOut(items=[token_out(t) for t in items]))


@api.route(
    "POST",
    "/tokens",
    audit="token.create",
    audit_object="token",
    role="admin",
    tag="admin",
    summary="Create an API token",
    body=M.TokenIn,
    responses={201: (M.TokenCreatedOut, "the token, shown once"), 409: (None, "name taken")},
)
async def create_api_token(request: web.Request) -> web.Response:
    """The response is the only time the token is shown."""
    body: M.TokenIn = await body_of(request, M.TokenIn)
    audit_note(request, object_type="token", object_id=body.name, role=body.role)
    async with services(request).pool.acquire() as conn:
        try:
            secret = await tokens.create_token(conn, body.name, body.role)
        except ValueError as err:
            raise ApiError(409, "exists", str(err)) from None
        created = next(t for t in await tokens.list_tokens(conn) if t.name == body.name)
    return json_out(M.TokenCreatedOut(**token_out(created).model_dump(), token=secret), 201)


@api.route(
    "DELETE",
    "/tokens/{name}",
    audit="token.revoke",
    role="admin",
    tag="admin",
    summary="Revoke an API token",
    responses={204: (None, "revoked"), 404: (None, "unknown or already revoked")},
)
async def revoke_api_token(request: web.Request) -> web.Response:
    """Takes effect within a few seconds on every worker."""
    async with services(request).pool.acquire() as conn:
        if not await tokens.revoke_token(conn, request.match_info["name"]):
            raise not_found(f"active token {request.match_info['name']!r}")
    _token_cache.clear()
    return web.Response(status=204)


@api.route(
    "GET",
    "/openapi.json",
    role="viewer",
    tag="meta",
    summary="This API's OpenAPI document",
    responses={200: (None, "OpenAPI 3.1")},
)
async def openapi_json(request: web.Request) -> web.Response:
    """Generated from the route declarations and their pydantic models."""
    return web.json_response(openapi_document())


# the other route modules register themselves on the same table
from acs.web.api import accounts as _account_routes  # noqa: E402, F401
from acs.web.api import backups as _backup_routes  # noqa: E402, F401
from acs.web.api import bulk as _bulk_routes  # noqa: E402, F401
from acs.web.api import campaign_report as _report_routes  # noqa: E402, F401
from acs.web.api import firmware as _firmware_routes  # noqa: E402, F401
from acs.web.api import fleet_jobs as _fleet_job_routes  # noqa: E402, F401
from acs.web.api import history as _history_routes  # noqa: E402, F401
from acs.web.api import mirrors as _mirror_routes  # noqa: E402, F401
from acs.web.api import observability as _observability_routes  # noqa: E402, F401
from acs.web.api import overview as _overview_routes  # noqa: E402, F401
from acs.web.api import policies as _policy_routes  # noqa: E402, F401
from acs.web.api import secrets as _secret_routes  # noqa: E402, F401
from acs.web.api import software as _software_routes  # noqa: E402, F401
