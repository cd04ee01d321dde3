"""Per-job transfers on the file server: a CPE's upload (config backup) and a restore.

``/transfers/{token}``, the URL an upload job or a restore's download job was
given when it ran (acs/services/backups.py). Each URL takes only the
credential made for its job, so for one device: the shared file-server
account, another job's credential or another device's are 401.

- PUT (TR-069 A.4.1.5), or POST as some CPEs send it (a raw body or a
  multipart form whose first file part is the file): the body streams to disk
  with its SHA-256 computed as it comes and is recorded in the device's backup
  history with the firmware the device runs. 413 past ACS_BACKUP_MAX_BYTES
  (at once when Content-Length says so), 409 when the job is not waiting for
  it (finished, cancelled, or its file already came); in every refusal
  nothing stays on disk and no row is written.
- GET/HEAD: the backup a restore job downloads, to the target device only,
  while the job waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
from aiohttp import web

from acs.config import Settings
from acs.logs import log
from acs.services.backups import TRANSFER_REALM
from acs.store import backups, blobs
from acs.web.cpe_auth import THROTTLED_TEXT, UNAUTHORIZED_TEXT, AuthResult, CpeAuthenticator
from acs.web.cpe_auth import Credential as CpeCredential
from acs.web.files import CHUNK, _FileBody
from acs.web.proxy import client_address

logger = logging.getLogger("acs.files")

ROUTE = "/transfers/{token}"


def _refusal(verdict: AuthResult) -> web.Response:
    if verdict.retry_after is not None:
        return web.Response(
            status=503, text=THROTTLED_TEXT, headers={"Retry-After": str(verdict.retry_after)}
        )
    resp = web.Response(status=401, text=UNAUTHORIZED_TEXT)
    for challenge in verdict.challenge:
        resp.headers.add("WWW-Authenticate", challenge)
    return resp


async def _raw_body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk


async def _form_file(request: web.Request) -> AsyncIterator[bytes]:
    """The first file part of a multipart/form-data POST (how some CPEs upload)."""
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            raise ValueError("a multipart upload without a file part")
        if isinstance(part, aiohttp.BodyPartReader) and part.filename is not None:
            break
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


def with_transfers(app: web.Application, settings: Settings, pool: asyncpg.Pool) -> web.Application:
    """The file server's app, serving ``/transfers/{token}`` too."""
    root = settings.backups_dir

    async def lookup(username: str) -> CpeCredential | None:
        async with pool.acquire() as conn:
            grant = await backups.grant_by_username(conn, username)
        return None if grant is None else CpeCredential(username, grant.ha1, grant.device_id)

    auth = CpeAuthenticator("any", TRANSFER_REALM, lookup)

    async def authorized(request: web.Request) -> backups.Grant | web.Response:
        """The request's grant, once its credential is the one made for this URL."""
        remote = client_address(request)
        verdict = await auth.check(
            request.method, request.headers.get("Authorization"), request.raw_path, remote
        )
        grant = None
        if verdict.ok and verdict.username is not None:
            async with pool.acquire() as conn:
                grant = await backups.grant_by_username(conn, verdict.username)
            if grant is None or grant.token != request.match_info["token"]:
                # a good credential, of another job (and so maybe another device)
                verdict = AuthResult(
                    ok=False,
                    username=verdict.username,
                    reason="the credential of another transfer",
                    challenge=auth.challenge(),
                )
                grant = None
        if grant is None:
            if not verdict.first_leg:
                log(
                    logger,
                    logging.INFO,
                    "transfer_auth_failed",
                    client=remote,
                    user=verdict.username,
                    reason=verdict.reason,
                )
            return _refusal(verdict)
        return grant

    def not_waiting(grant: backups.Grant, why: str) -> web.Response:
        log(
            logger,
            logging.INFO,
            "transfer_refused",
            device=grant.device_id,
            task=grant.task_id,
            reason=why,
        )
        return web.Response(status=409, text=f"job {grant.task_id} {why}\n")

    async def receive(request: web.Request) -> web.StreamResponse:
        grant = await authorized(request)
        if isinstance(grant, web.Response):
            return grant
        if grant.direction != "upload":
            return web.Response(
                status=405, text="this URL serves a download\n", headers={"Allow": "GET, HEAD"}
            )
        if grant.used_at is not None:
            return not_waiting(grant, "has its file already")
        if grant.task_status != "running":
            return not_waiting(grant, f"is {grant.task_status}, not waiting for an upload")
        limit = settings.backup_max_bytes
        if request.content_length is not None and request.content_length > limit:
            return web.Response(status=413, text=f"over the limit of {limit} bytes\n")
        multipart = request.method == "POST" and request.content_type == "multipart/form-data"
        chunks = _form_file(request) if multipart else _raw_body(request)
        try:
            # the body first, with no database connection held while a slow CPE sends
            received = await backups.receive(root, chunks, max_bytes=limit)
            try:
                async with pool.acquire() as conn:
                    backup = await backups.commit(
                        conn, root, grant, received, in_database=settings.shared_files
                    )
            finally:
                await backups.discard(received)  # nothing once it is in place
        except backups.TooLarge as err:
            return web.Response(status=413, text=f"{err}\n")
        except backups.NotWaiting as err:
            return not_waiting(grant, str(err).removeprefix("the job "))
        except ValueError as err:  # a multipart body that does not parse
            return web.Response(status=400, text=f"malformed upload: {err}\n")
        except OSError as err:
            if isinstance(err, ConnectionError):
                raise  # the CPE or the database went away, not a full store
            # a full disk, or a PostgreSQL without room for the chunks: nothing was kept
            log(logger, logging.ERROR, "backup_not_stored", device=grant.device_id, error=str(err))
            return web.Response(status=507, text=f"the upload could not be stored: {err}\n")
        log(
            logger,
            logging.INFO,
            "backup_uploaded",
            device=grant.device_id,
            task=grant.task_id,
            backup=backup.id,
            size=backup.size,
            sha256=backup.sha256,
        )
        return web.Response(status=201, text=f"stored {backup.size} bytes\n")

    async def serve(request: web.Request) -> web.StreamResponse:
        grant = await authorized(request)
        if isinstance(grant, web.Response):
            return grant
        if grant.direction != "download" or grant.backup_id is None:
            return web.Response(
                status=405, text="this URL takes an upload\n", headers={"Allow": "PUT, POST"}
            )
        if grant.task_status != "running":
            return not_waiting(grant, f"is {grant.task_status}, not waiting for a download")
        async with pool.acquire() as conn:
            backup = await backups.get_backup(conn, grant.backup_id)
            if backup is None:
                return web.Response(status=404, text="the backup is gone\n")
            if request.method == "HEAD":
                fobj = None  # headers only: no copy out of PostgreSQL for nothing
            else:
                try:
                    fobj = await backups.open_content(
                        conn, root, backup, in_database=settings.shared_files
                    )
                except blobs.Corrupt as err:
                    log(logger, logging.WARNING, "backup_corrupt", backup=backup.id, error=str(err))
                    return web.Response(
                        status=503, text="the backup's stored bytes do not match its digest\n"
                    )
                if fobj is None:
                    log(logger, logging.WARNING, "backup_missing_on_disk", backup=backup.id)
                    return web.Response(status=404, text="the backup is gone\n")
        headers = {"ETag": f'"{backup.sha256}"', "Cache-Control": "no-cache"}
        resp = _FileBody(fobj, 0, backup.size, status=200, headers=headers)
        resp.content_length = backup.size
        resp.content_type = "application/octet-stream"
        return resp

    app.router.add_put(ROUTE, receive)
    app.router.add_post(ROUTE, receive)
    app.router.add_get(ROUTE, serve)  # HEAD is routed with GET
    return app
