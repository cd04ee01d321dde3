"""A scripted CPE over real HTTP, for tests that need exact control of each message.

It speaks through acs.cwmp's codec and answers ACS requests from a simulator
ParameterTree (or a custom answer function), so tests can also send broken,
out-of-order or quirky messages that a well-behaved simulated CPE never would.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from acs.cwmp import messages as m
from acs.cwmp.soap import CWMP_NS_1_0, Envelope, parse_envelope, serialize_envelope
from cpe_simulator.datamodel import Identity, load_template
from cpe_simulator.faults import CpeFault
from cpe_simulator.tree import ParameterTree


class Reply:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.envelope = parse_envelope(body) if status == 200 or body.startswith(b"<?xml") else None

    @property
    def message(self) -> m.Message | None:
        return self.envelope.body if self.envelope is not None else None


class CpeDouble:
    def __init__(
        self,
        url: str,
        serial: str,
        *,
        model: str = "tr181-gateway",
        cwmp_ns: str = CWMP_NS_1_0,
        auth: aiohttp.BasicAuth | None = None,
        digest: tuple[str, str] | None = None,
        oui: str = "ACDE48",
        product_class: str = "HGW",
        cr_url: str | None = None,
        cr_credentials: tuple[str, str] = ("", ""),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.cwmp_ns = cwmp_ns
        self.identity = Identity.from_serial(serial, oui=oui, product_class=product_class)
        self.tree = ParameterTree(
            load_template(model),
            self.identity,
            acs_url=url,
            connection_request_url=cr_url or f"http://127.0.0.1:1/cr/{serial}",
            connection_request_username=cr_credentials[0],
            connection_request_password=cr_credentials[1],
        )
        middlewares = (aiohttp.DigestAuthMiddleware(*digest),) if digest else ()
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls if tls is not None else True),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            auth=auth,
            middlewares=middlewares,
        )
        self._ids = 0
        self.requests_seen: list[m.Message] = []

    async def close(self) -> None:
        await self.http.close()

    def inform_message(self, events: list[str]) -> m.Inform:
        ident = self.identity
        return m.Inform(
            device_id=m.DeviceIdStruct(
                ident.manufacturer, ident.oui, ident.product_class, ident.serial_number
            ),
            events=[m.EventStruct(e) for e in events],
            max_envelopes=1,
            current_time=datetime.now(UTC),
            retry_count=0,
            parameter_list=self.tree.inform_parameters(),
        )

    async def post_raw(self, body: bytes, headers: dict[str, str] | None = None) -> Reply:
        async with self.http.post(self.url, data=body, headers=headers or {}) as resp:
            return Reply(resp.status, await resp.read(), dict(resp.headers))

    async def post(self, message: m.Message | None, **header: object) -> Reply:
        if message is None:
            return await self.post_raw(b"")
        self._ids += 1
        env = Envelope(
            body=message,
            cwmp_id=str(header.pop("cwmp_id", self._ids)),
            cwmp_ns=self.cwmp_ns,
            **header,
        )  # type: ignore[arg-type]
        return await self.post_raw(serialize_envelope(env))

    def answer(self, request: m.Message) -> m.Message:
        """What a real CPE answers, from the simulator's parameter tree."""
        tree = self.tree
        try:
            if isinstance(request, m.GetParameterNames):
                return m.GetParameterNamesResponse(
                    tree.get_parameter_names(request.parameter_path, request.next_level)
                )
            if isinstance(request, m.GetParameterValues):
                return m.GetParameterValuesResponse(
                    tree.get_parameter_values(request.parameter_names)
                )
            if isinstance(request, m.SetParameterValues):
                return m.SetParameterValuesResponse(
                    tree.set_parameter_values(request.parameter_list, request.parameter_key)
                )
            if isinstance(request, m.GetParameterAttributes):
                return m.GetParameterAttributesResponse(
                    tree.get_parameter_attributes(request.parameter_names)
                )
            if isinstance(request, m.SetParameterAttributes):
                tree.set_parameter_attributes(request.parameter_list)
                return m.SetParameterAttributesResponse()
            if isinstance(request, m.AddObject):
                return m.AddObjectResponse(
                    tree.add_object(request.object_name, request.parameter_key), 0
                )
            if isinstance(request, m.DeleteObject):
                tree.delete_object(request.object_name, request.parameter_key)
                return m.DeleteObjectResponse(0)
            if isinstance(request, m.Reboot):
                return m.RebootResponse()
            if isinstance(request, m.GetRPCMethods):
                return m.GetRPCMethodsResponse(tree.get_rpc_methods())
        except CpeFault as fault:
            return m.Fault(fault.code, fault.string, list(fault.set_parameter_values_faults))
        return m.Fault(9000, "Method not supported")

    async def session(
        self,
        events: list[str],
        *,
        answer: Callable[[m.Message], m.Message] | None = None,
        before_empty: list[m.Message] | None = None,
    ) -> list[m.Message]:
        """Run one whole session; returns the ACS requests it carried out."""
        reply = await self.post(self.inform_message(events))
        assert reply.status == 200, (reply.status, reply.body[:300])
        assert isinstance(reply.message, m.InformResponse), reply.message
        for own in before_empty or []:
            r = await self.post(own)
            assert r.status == 200 and r.message is not None and r.message.is_response, r.body
        seen: list[m.Message] = []
        reply = await self.post(None)
        while reply.status == 200:
            request = reply.message
            assert request is not None and not request.is_response, reply.body[:300]
            seen.append(request)
            self.requests_seen.append(request)
            reply = await self.post(
                (answer or self.answer)(request),
                cwmp_id=reply.envelope.cwmp_id if reply.envelope else None,
            )
        assert reply.status == 204, (reply.status, reply.body[:300])
        return seen


class ConnectionRequestListener:
    """A CPE's connection-request server: Digest-checked GET, then a session.

    It checks credentials with the ACS's own Digest implementation (the same
    RFC 7616 rules hold on both ends), and runs ``on_request`` in the background
    after answering, as a CPE opens its session after the 200.
    """

    def __init__(self, username: str, password: str, on_request: Callable[[], Any]) -> None:
        from acs.web.cpe_auth import CpeAuthenticator, Credential, ha1_of

        cred = Credential(username, ha1_of(username, "cpe", password))

        async def lookup(name: str) -> Credential | None:
            return cred if name == username else None

        self.auth = CpeAuthenticator("digest", "cpe", lookup)
        self.on_request = on_request
        self.knocks = 0
        self.sessions: list[asyncio.Task[Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/cr", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/cr"
        return self.url

    async def _handle(self, request: web.Request) -> web.Response:
        verdict = await self.auth.check(
            "GET", request.headers.get("Authorization"), request.raw_path
        )
        if not verdict.ok:
            resp = web.Response(status=401)
            for challenge in verdict.challenge:
                resp.headers.add("WWW-Authenticate", challenge)
            return resp
        self.knocks += 1
        self.sessions.append(asyncio.ensure_future(self.on_request()))
        return web.Response(status=200)

    async def stop(self) -> None:
        for task in self.sessions:
            await task
        if self.runner is not None:
            await self.runner.cleanup()
