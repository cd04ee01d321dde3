"""The ceiling: an aiohttp server that reads a POST and answers 200, nothing else.

Run as its own process (`python -m bench.bare --port N`) so that it gets a
core to itself exactly as an ACS worker does; bench.loadgen drives it with the
same client and the same Inform bytes as the ACS.
"""

from __future__ import annotations

import argparse

from aiohttp import web

_ANSWER = b'<?xml version="1.0"?><ok/>'


async def handle(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_ANSWER, content_type="text/xml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    app = web.Application()
    app.router.add_post("/", handle)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
