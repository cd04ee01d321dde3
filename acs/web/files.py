"""The file server CPEs download firmware and configuration files from.

GET and HEAD /{name}. Only files with a row in the catalog are served, so a
stray file left on disk by a crash is invisible. The ETag is the file's
SHA-256 from the catalog, so it names the content, not the disk's mtime: a
CPE resuming an interrupted download (Range + If-Range) after the file was
replaced gets the whole new file instead of a splice of old and new bytes.

We do not use aiohttp's FileResponse: its ETag is mtime-size, its If-Range
understands only dates (an ETag there is ignored and the range served anyway),
and it serves a sibling ``name.gz`` with Content-Encoding when the client
accepts gzip, which for an arbitrary catalog would send the wrong file. The
body still goes out with sendfile (loop.sendfile), so large images cost no
copies through Python.

With a username and password configured (ACS_FILES_USERNAME/PASSWORD), CPEs
must authenticate with Basic or Digest, using the credentials the Download
RPC hands them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import IO

import asyncpg
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from acs.config import Settings
from acs.logs import log
from acs.store import blobs, files
from acs.store.db import UNAVAILABLE
from acs.web.cpe_auth import (
    THROTTLED_TEXT,
    UNAUTHORIZED_TEXT,
    CpeAuthenticator,
    Credential,
    ha1_of,
)
from acs.web.proxy import client_address

logger = logging.getLogger("acs.files")

FILES_REALM = "files"
CHUNK = 256 * 1024
_RANGE = re.compile(r"bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE | re.ASCII)


@dataclass(slots=True, frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class Unsatisfiable(Exception):
    pass


_HUGE = str(2**63)


def _clamp(digits: str) -> str:
    value = digits.lstrip("0") or digits[:1]  # "" stays "" (no number given)
    return _HUGE if len(value) > len(_HUGE) else value


def parse_range(header: str, size: int) -> ByteRange | None:
    """The single byte range asked for, or None to send the whole file.

    RFC 9110 14.2: a header we cannot parse, or one with several ranges, may be
    ignored (we serve the whole file; CPEs resume with one range). Raises
    Unsatisfiable when the range lies wholly past the end (416).
    """
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None
    # a number longer than any file is clamped: int() refuses more than 4300
    # digits, and a range past the end is 416 (or clipped) whatever its length
    first, last = _clamp(m.group(1)), _clamp(m.group(2))
    if not first:  # suffix range: the last N bytes
        if not last:
            return None
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored, not 416
    if start >= size:
        raise Unsatisfiable
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end)


def _etag_list(header: str) -> list[str]:
    """The entity tags of an If-None-Match / If-Match value, with W/ kept."""
    return [t.strip() for t in header.split(",") if t.strip()]


def _weak_match(etag: str, header: str) -> bool:
    tags = _etag_list(header)
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def _strong_match(etag: str, header: str) -> bool:
    tags = _etag_list(header)
    return "*" in tags or etag in tags


class _FileBody(web.StreamResponse):
    """Headers already decided; sends [offset, offset+count) of an open file."""

    def __init__(
        self,
        fobj: IO[bytes] | None,
        offset: int,
        count: int,
        *,
        status: int,
        headers: dict[str, str],
    ) -> None:
        super().__init__(status=status, headers=headers)
        self._fobj = fobj
        self._offset = offset
        self._count = count

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            writer = await super().prepare(request)
            if self._fobj is None or self._count == 0 or request.method == "HEAD":
                return writer
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("the CPE went away")
            loop = asyncio.get_running_loop()
            try:
                await loop.sendfile(transport, self._fobj, self._offset, self._count)
            except NotImplementedError:  # e.g. a TLS transport on an old loop
                await self._copy(self._fobj)
            await super().write_eof()
            return writer
        finally:
            if self._fobj is not None:
                await asyncio.to_thread(self._fobj.close)

    async def _copy(self, fobj: IO[bytes]) -> None:
        fobj.seek(self._offset)
        left = self._count
        while left > 0:
            chunk = await asyncio.to_thread(fobj.read, min(CHUNK, left))
            if not chunk:
                break
            await self.write(chunk)
            left -= len(chunk)


def _open_regular(path: Path) -> tuple[IO[bytes], os.stat_result]:
    """Open without following a symlink, and only a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(path)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


@web.middleware
async def _database_unavailable(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The catalog is in PostgreSQL: while it is down, a CPE is told to come back
    later (503; its Download ends in fault 9015 and is retried), never given a 500."""
    try:
        return await handler(request)
    except UNAVAILABLE as exc:
        log(
            logger,
            logging.ERROR,
            "database_unavailable",
            peer=request.remote,
            path=request.path,
            error=repr(exc),
        )
        return web.Response(
            status=503,
            text="database unavailable, retry later\n",
            headers={"Retry-After": "10"},
        )


def _not_found(name: str) -> web.Response:
    return web.Response(status=404, text=f"no file {name!r}\n")


def files_app(
    settings: Settings,
    pool: asyncpg.Pool,
    *,
    username: str | None = None,
    password: str | None = None,
) -> web.Application:
    """The file server app. Credentials: the arguments, else ACS_FILES_USERNAME/PASSWORD."""
    root = settings.files_dir.resolve()
    username = username if username is not None else settings.files_username
    password = password if password is not None else settings.files_password
    auth: CpeAuthenticator | None = None
    if username and password:
        cred = Credential(username, ha1_of(username, FILES_REALM, password))

        async def lookup(name: str) -> Credential | None:
            return cred if name == cred.username else None

        # "any": CPE download clients differ; Digest is offered first
        auth = CpeAuthenticator("any", FILES_REALM, lookup)

    async def serve_file(request: web.Request) -> web.StreamResponse:
        if auth is not None:
            verdict = await auth.check(
                request.method,
                request.headers.get("Authorization"),
                request.raw_path,
                client_address(request),
            )
            if not verdict.ok:
                if not verdict.first_leg:
                    log(
                        logger,
                        logging.INFO,
                        "file_auth_failed",
                        client=client_address(request),
                        user=verdict.username,
                        reason=verdict.reason,
                    )
                if verdict.retry_after is not None:
                    return web.Response(
                        status=503,
                        text=THROTTLED_TEXT,
                        headers={"Retry-After": str(verdict.retry_after)},
                    )
                resp = web.Response(status=401, text=UNAUTHORIZED_TEXT)
                for challenge in verdict.challenge:
                    resp.headers.add("WWW-Authenticate", challenge)
                return resp
        name = request.match_info["name"]
        try:
            # one path segment of the allowed characters: '..', '/' (even as
            # %2F) and dot-files never reach the file system
            path = files.path_of(root, name)
        except ValueError:
            return _not_found(name)
        async with pool.acquire() as conn:
            record = await files.get_file(conn, name)
        if record is None:
            return _not_found(name)
        if cache_dir is not None:
            return await _from_cache(request, record)
        try:
            fobj, st = await asyncio.to_thread(_open_regular, path)
        except OSError:
            log(logger, logging.WARNING, "file_missing_on_disk", file=name, path=str(path))
            return _not_found(name)
        if st.st_size != record.size:
            # a replace interrupted between rename and commit, or a file changed
            # behind our back: its bytes do not match the ETag we would send
            await asyncio.to_thread(fobj.close)
            log(
                logger,
                logging.WARNING,
                "file_size_mismatch",
                file=name,
                disk=st.st_size,
                catalog=record.size,
            )
            return web.Response(
                status=503,
                text=f"file {name!r} on disk does not match its catalog; upload it again\n",
            )
        return _respond(request, record, fobj, st.st_size)

    cache_dir = settings.files_cache_dir.resolve() if settings.shared_files else None

    async def _from_cache(request: web.Request, record: files.FileRecord) -> web.StreamResponse:
        """ACS_FILE_STORE=postgres: this host's copy, filled from PostgreSQL on the
        first request (acs/store/blobs.py); then served like a local file."""
        assert cache_dir is not None
        try:
            fobj, filled = await blobs.open_cached(
                pool, cache_dir, record.id, record.size, record.sha256
            )
        except blobs.Corrupt as err:
            log(logger, logging.WARNING, "file_corrupt", file=record.name, error=str(err))
            return web.Response(
                status=503,
                text=f"file {record.name!r} in the database does not match its catalog;"
                " upload it again\n",
            )
        if filled:
            log(logger, logging.INFO, "file_cached", file=record.name, size=record.size)
        return _respond(request, record, fobj, record.size)

    app = web.Application(middlewares=[_database_unavailable])
    app.router.add_get("/{name}", serve_file)  # HEAD is routed with GET
    return app


def _respond(
    request: web.Request, record: files.FileRecord, fobj: IO[bytes], size: int
) -> web.StreamResponse:
    etag = f'"{record.sha256}"'
    last_modified = record.updated_at
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(last_modified, usegmt=True),
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-cache",  # revalidate: a name may be replaced
    }

    def bodyless(status: int) -> web.StreamResponse:
        resp = _FileBody(None, 0, 0, status=status, headers=headers)
        if status != 304:  # a 304 carries no Content-Length of its own
            resp.content_length = 0
        return resp

    if_match = request.headers.get("If-Match")
    if if_match is not None and not _strong_match(etag, if_match):
        fobj.close()
        return bodyless(412)
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and _weak_match(etag, if_none_match):
        fobj.close()
        return bodyless(304)

    byte_range: ByteRange | None = None
    range_header = request.headers.get("Range")
    # RFC 9110 14.2: Range is defined for GET only; HEAD describes the whole file
    if (
        range_header is not None
        and request.method == "GET"
        and _if_range_holds(request.headers.get("If-Range"), etag, last_modified.timestamp())
    ):
        try:
            byte_range = parse_range(range_header, size)
        except Unsatisfiable:
            fobj.close()
            resp = bodyless(416)
            resp.headers["Content-Range"] = f"bytes */{size}"
            return resp

    if byte_range is None:
        resp = _FileBody(fobj, 0, size, status=200, headers=headers)
        resp.content_length = size
    else:
        resp = _FileBody(fobj, byte_range.start, byte_range.length, status=206, headers=headers)
        resp.headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
        resp.content_length = byte_range.length
    resp.content_type = "application/octet-stream"
    return resp


def _if_range_holds(if_range: str | None, etag: str, modified: float) -> bool:
    """Whether a Range may be honoured (RFC 9110 13.1.5): no If-Range, or it still matches.

    An entity tag must match strongly; a date must equal Last-Modified exactly.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return int(when.timestamp()) == int(modified)
