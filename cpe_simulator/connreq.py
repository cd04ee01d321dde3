"""One HTTP server answering connection requests for every simulated CPE.

Each CPE's ConnectionRequestURL is ``http://HOST:PORT/cr/<serial>``. A request
must carry valid Digest credentials (the CPE's ConnectionRequestUsername and
Password); a CPE then opens a session with "6 CONNECTION REQUEST". Following
TR-069 3.2.2, a CPE limits how many requests it accepts in a period: past
``burst`` in ``window_s`` it answers 503.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from aiohttp import web

from cpe_simulator.auth import DigestChecker

if TYPE_CHECKING:
    from cpe_simulator.fleet import Fleet


class ConnectionRequestServer:
    def __init__(self, fleet: Fleet, *, burst: int = 3, window_s: float = 10.0) -> None:
        self.fleet = fleet
        self.digest = DigestChecker()
        self.burst = burst
        self.window_s = window_s
        self._recent: dict[str, deque[float]] = {}
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/cr/{serial}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def admit(self, serial: str) -> bool:
        """Whether the CPE takes one more connection request now (HTTP or UDP alike)."""
        now = time.monotonic()
        recent = self._recent.setdefault(serial, deque())
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        if len(recent) >= self.burst:
            return False
        recent.append(now)
        return True

    async def handle(self, request: web.Request) -> web.Response:
        cpe = self.fleet.devices.get(request.match_info["serial"])
        if cpe is None or cpe.state != "up":
            raise web.HTTPNotFound()  # an offline CPE does not answer at all, in effect
        tree = cpe.tree
        if not self.digest.check(
            "GET",
            request.headers.get("Authorization"),
            tree.connection_request_username,
            tree.connection_request_password,
        ):
            self.fleet.count("connection_request", "401")
            return web.Response(status=401, headers={"WWW-Authenticate": self.digest.challenge()})
        if not self.admit(cpe.serial):
            self.fleet.count("connection_request", "503")
            return web.Response(status=503, headers={"Retry-After": str(int(self.window_s))})
        self.fleet.count("connection_request", "accepted")
        cpe.add_event("6 CONNECTION REQUEST")
        if not cpe.in_session:  # one in progress picks the event up when it ends
            self.fleet.wake(cpe)
        return web.Response(status=200)
