"""The file server CPEs download firmware and configuration files from.

aiohttp's FileResponse answers Range and If-Range requests and sends ETag and
Last-Modified (sendfile underneath), so an interrupted CPE download resumes
where it stopped. Only files with a row in the catalog are served: a stray
file left on disk by a crash is invisible. With ACS_FILES_USERNAME/PASSWORD
set, CPEs must authenticate (Basic or Digest), with the credentials the
Download RPC hands them.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from acs.config import Settings
from acs.store import files
from acs.web.cpe_auth import CpeAuthenticator, Credential, ha1_of


def files_app(settings: Settings, pool: asyncpg.Pool) -> web.Application:
    root = settings.files_dir.resolve()
    auth: CpeAuthenticator | None = None
    if settings.files_username and settings.files_password:
        cred = Credential(
            settings.files_username,
            ha1_of(settings.files_username, "files", settings.files_password),
        )

        async def lookup(name: str) -> Credential | None:
            return cred if name == cred.username else None

        auth = CpeAuthenticator("any", "files", lookup)

    async def serve_file(request: web.Request) -> web.StreamResponse:
        if auth is not None:
            verdict = await auth.check(request.method, request.headers.get("Authorization"))
            if not verdict.ok:
                resp = web.Response(status=401, text=f"authentication required: {verdict.reason}\n")
                for challenge in verdict.challenge:
                    resp.headers.add("WWW-Authenticate", challenge)
                return resp
        name = request.match_info["name"]
        try:
            path = files.path_of(root, name)
        except ValueError:
            raise web.HTTPNotFound(text=f"no file {name!r}\n") from None
        async with pool.acquire() as conn:
            record = await files.get_file(conn, name)
        if record is None or not path.is_file():
            raise web.HTTPNotFound(text=f"no file {name!r}\n")
        return web.FileResponse(path, chunk_size=256 * 1024)

    app = web.Application()
    app.router.add_get("/{name}", serve_file)  # HEAD is routed with GET
    return app
