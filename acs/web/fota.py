"""FOTA check-in for terminals that do not speak TR-069 (USB modems, hotspots, phones).

Such a terminal cannot receive a Download RPC, so it asks instead:
``POST /fota/v1/check`` says who it is and what build it runs, and the answer
is an image to fetch from the file server or the reason there is none;
``POST /fota/v1/report`` tells how the download and the install went. The same
catalog and campaigns serve it as serve CWMP devices, with the same proof of
success: the terminal must come back (its next check) on the target build.

The endpoints live on the CWMP port and authenticate exactly as CPEs do,
because terminals are provisioned with the same credentials as CPEs and
operators expose one port to devices.

Two checks of one terminal take turns on the device row's lock (taken by the
check's upsert, or explicitly by a report), so a terminal that retries
impatiently never starts one download twice or counts an attempt twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any, Literal, TypeVar

import asyncpg
from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from acs.config import Settings
from acs.logs import log
from acs.services import fota as service
from acs.services import rollout
from acs.store import terminals
from acs.store.db import UNAVAILABLE
from acs.store.ids import device_id as make_device_id
from acs.web.cpe_auth import THROTTLED_TEXT, UNAUTHORIZED_TEXT, CpeAuthenticator
from acs.web.proxy import client_address

logger = logging.getLogger("acs.fota")

CHECK_PATH = "/fota/v1/check"
REPORT_PATH = "/fota/v1/report"
# A check or report is a few short strings; anything bigger is not a terminal.
MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_S = "10"
DB_ERRORS = UNAVAILABLE
M = TypeVar("M", bound=BaseModel)


# --------------------------------------------------------------------------- bodies


def _printable(text: str) -> str:
    # PostgreSQL text cannot hold NUL, and control characters in an identity
    # or a version are always a client bug: refuse them as bad input here
    # rather than let the database turn them into a 503.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("control characters are not allowed")
    if not text.strip():
        raise ValueError("must not be blank")
    return text


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise ValueError("NUL characters are not allowed")
    return text


# Lengths follow TR-181's DeviceInfo strings (64); a build may be as long as a
# catalog image's version (128), since the two are compared.
Ident = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_printable)]
Build = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)]
Oui = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_printable)]


class CheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: Ident = Field(description="IMEI or serial number")
    oui: Oui = "000000"
    product: Ident = Field(description="ProductClass")
    hardware: Ident = Field(description="HardwareVersion")
    build: Build = Field(description="the installed SoftwareVersion")
    region: Ident | None = Field(default=None, description="stored as the ProvisioningCode")
    manufacturer: Ident | None = None


class ReportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: Ident
    oui: Oui = "000000"
    product: Ident
    campaign: int = Field(ge=1, le=2**63 - 1)
    result: Literal["downloaded", "download_failed", "installed", "install_failed"]
    code: int | None = Field(default=None, ge=0, le=2**31 - 1, description="error code")
    message: Annotated[str, Field(max_length=1000), AfterValidator(_no_nul)] | None = None


# --------------------------------------------------------------------------- answers


class FotaError(Exception):
    """A request refused with a status, a stable code and a sentence to act on."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        self.headers = headers or []

    def response(self) -> web.Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            error["errors"] = self.errors
        resp = web.json_response({"error": error}, status=self.status)
        for name, value in self.headers:
            resp.headers.add(name, value)  # add, not set: one WWW-Authenticate per scheme
        return resp


# --------------------------------------------------------------------------- HTTP


class FotaEndpoint:
    """The two routes, mounted on the CWMP application (see CwmpEndpoint.app)."""

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, authenticator: CpeAuthenticator
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.auth = authenticator

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(CHECK_PATH, self.check)
        router.add_post(REPORT_PATH, self.report)

    async def check(self, request: web.Request) -> web.Response:
        try:
            body, bound = await self._admit(request, CheckBody)
            dev_id = make_device_id(body.oui, body.product, body.serial)
            self._authorize(request, bound, dev_id)
            check = terminals.CheckIn(
                device_id=dev_id,
                oui=body.oui,
                product_class=body.product,
                serial_number=body.serial,
                hardware_version=body.hardware,
                software_version=body.build,
                provisioning_code=body.region,
                manufacturer=body.manufacturer,
                remote_address=client_address(request),
                at=rollout.utcnow(),
            )
            async with self.pool.acquire() as conn:
                answer = await service.check_in(conn, check)
        except FotaError as refused:
            return self._refused(request, refused)
        except DB_ERRORS as exc:
            return self._unavailable(request, exc)
        log(
            logger,
            logging.INFO,
            "fota_check",
            device=dev_id,
            build=body.build,
            remote=client_address(request),
            update=isinstance(answer, service.Offer),
            code=answer.code if isinstance(answer, service.NoUpdate) else None,
            version=answer.image.version if isinstance(answer, service.Offer) else None,
        )
        if isinstance(answer, service.NoUpdate):
            return web.json_response(
                {"update": False, "code": answer.code, "reason": answer.reason}
            )
        image = answer.image
        return web.json_response(
            {
                "update": True,
                "image": {
                    "version": image.version,
                    "url": answer.url or self.settings.files_base_url + image.file_name,
                    "size": image.file_size,
                    "sha256": image.sha256,
                    "releaseNotes": image.release_notes,
                },
                "campaign": answer.campaign_id,
                "reportUrl": REPORT_PATH,
            }
        )

    async def report(self, request: web.Request) -> web.Response:
        try:
            report_body, bound = await self._admit(request, ReportBody)
            dev_id = make_device_id(report_body.oui, report_body.product, report_body.serial)
            self._authorize(request, bound, dev_id)
            async with self.pool.acquire() as conn:
                member = await service.report(
                    conn,
                    dev_id,
                    report_body.campaign,
                    report_body.result,
                    report_body.code,
                    report_body.message,
                )
        except service.ReportRefused as refused:
            status = 409 if refused.conflict else 404
            return self._refused(request, FotaError(status, refused.code, refused.message))
        except FotaError as refused:
            return self._refused(request, refused)
        except DB_ERRORS as exc:
            return self._unavailable(request, exc)
        return web.json_response(
            {"campaign": member.campaign_id, "state": member.state, "reason": member.reason}
        )

    # ------------------------------------------------------------ helpers

    async def _admit(self, request: web.Request, model: type[M]) -> tuple[M, str | None]:
        """Read a bounded body, check the credentials, and only then parse: an
        unauthenticated client learns nothing about what a valid body is.
        Returns the body and the device the credential is bound to, if any."""
        raw = await self._read_body(request)
        verdict = await self.auth.check(
            request.method,
            request.headers.get("Authorization"),
            request.raw_path,
            client_address(request),
        )
        if not verdict.ok:
            if not verdict.first_leg:
                log(
                    logger,
                    logging.WARNING,
                    "cpe_auth_failed",
                    remote=client_address(request),
                    username=verdict.username,
                    reason=verdict.reason,
                )
            if verdict.retry_after is not None:
                raise FotaError(
                    503,
                    "throttled",
                    THROTTLED_TEXT.strip(),
                    headers=[("Retry-After", str(verdict.retry_after))],
                )
            raise FotaError(
                401,
                "unauthenticated",
                UNAUTHORIZED_TEXT.strip(),  # the same whatever failed: the log says what
                headers=[("WWW-Authenticate", c) for c in verdict.challenge],
            )
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge ints
            raise FotaError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise FotaError(400, "invalid_body", "the body must be a JSON object")
        try:
            return model.model_validate(data), verdict.device_id
        except ValidationError as exc:
            errors = [
                {"path": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
                for e in exc.errors()
            ]
            summary = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
            raise FotaError(
                400, "invalid_body", f"the request body is invalid: {summary}", errors=errors
            ) from None

    @staticmethod
    def _authorize(request: web.Request, bound: str | None, dev_id: str) -> None:
        """A per-device credential speaks for its own device only."""
        if bound is not None and bound != dev_id:
            log(
                logger,
                logging.WARNING,
                "cpe_auth_failed",
                device=dev_id,
                remote=client_address(request),
                reason=f"credential belongs to {bound}",
            )
            raise FotaError(403, "forbidden", "this credential belongs to another device")

    @staticmethod
    async def _read_body(request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise FotaError(413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
        # a chunked body has no Content-Length: stop reading once past the limit
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise FotaError(
                        413, "body_too_large", f"the body exceeds {MAX_BODY_BYTES} bytes"
                    )
        except (ConnectionError, asyncio.IncompleteReadError):
            raise FotaError(
                400, "incomplete_body", "connection dropped while reading the body"
            ) from None
        return b"".join(chunks)

    @staticmethod
    def _refused(request: web.Request, refused: FotaError) -> web.Response:
        if refused.status != 401:  # the first leg of every Digest handshake is a 401
            log(
                logger,
                logging.WARNING,
                "fota_rejected",
                path=request.path,
                remote=client_address(request),
                status=refused.status,
                code=refused.code,
                reason=refused.message,
            )
        return refused.response()

    @staticmethod
    def _unavailable(request: web.Request, exc: BaseException) -> web.Response:
        log(
            logger,
            logging.ERROR,
            "database_unavailable",
            path=request.path,
            remote=client_address(request),
            error=repr(exc),
        )
        return FotaError(
            503,
            "unavailable",
            "database unavailable, retry later",
            headers=[("Retry-After", RETRY_AFTER_S)],
        ).response()
