"""The one route that shows a secret in clear: admin-only, and every read audited."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import BaseModel, Field

from acs.logs import log
from acs.services.device_secrets import NotASecret, read_secret
from acs.store import audit, devices
from acs.web.api.errors import ApiError, not_found
from acs.web.api.plumbing import TOKEN, api, json_out, services

logger = logging.getLogger("acs.api")

ROUTE = "/devices/{device_id}/secrets/{path}"


class SecretOut(BaseModel):
    device: str
    path: str
    value: str = Field(description="in clear: this read is in the audit log")
    source: str = Field(description="tree (the parameter) or connection-request (the knock's copy)")


@api.route(
    "GET",
    ROUTE,
    role="admin",
    tag="devices",
    summary="Read one secret parameter in clear (audited)",
    responses={
        200: (SecretOut, "the value"),
        400: (None, "the path is not a secret parameter"),
        404: (None, "unknown device, or the ACS holds no value for that secret"),
    },
)
async def get_secret(request: web.Request) -> web.Response:
    """Everywhere else secrets read ``********``; the ACS holds them sealed."""
    dev_id = request.match_info["device_id"]
    path = request.match_info["path"]
    svc = services(request)
    who = request[TOKEN]
    async with svc.pool.acquire() as conn:
        status = 500  # until the read is known to have gone right or been refused
        try:
            if await devices.get_device(conn, dev_id) is None:
                status = 404
                raise not_found(f"device {dev_id!r}")
            try:
                found = await read_secret(conn, svc.sealer, dev_id, path)
            except NotASecret as err:
                status = 400
                raise ApiError(
                    400,
                    "not_a_secret",
                    str(err),
                    [{"path": "path", "message": "not a secret parameter"}],
                ) from None
            if found is None:
                status = 404
                raise not_found(f"a value of {path!r} on device {dev_id!r}")
            status = 200
        finally:
            # reads are not audited by the middleware; this one must be, even refused
            await audit.record(
                conn,
                actor=who.name,
                role=who.role,
                method="GET",
                route=api.prefix + ROUTE,
                action="device.secret.read",
                object_type="device",
                object_id=dev_id.replace("\x00", "\ufffd"),
                status=status,
                remote=request.remote,
                detail={"path": path.replace("\x00", "\ufffd")},
            )
    log(logger, logging.WARNING, "secret_read", device=dev_id, path=path, token=who.name)
    return json_out(SecretOut(device=dev_id, path=path, value=found.value, source=found.source))
