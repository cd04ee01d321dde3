"""The file server CPEs download firmware and configuration files from.

aiohttp's FileResponse answers Range requests and sends ETag and
Last-Modified, so an interrupted CPE download resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web


def files_app(root: Path) -> web.Application:
    root = root.resolve()

    async def serve_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = (root / name).resolve()
        if root not in path.parents or not path.is_file():
            raise web.HTTPNotFound(text=f"no file {name!r}\n")
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{name:[^/]+}", serve_file)  # HEAD is routed with GET
    return app
