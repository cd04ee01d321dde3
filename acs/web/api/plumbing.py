"""What every route module of the API shares: the route table, the services,
and reading bodies and queries into models with errors that name the bad field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ValidationError

from acs.config import Settings
from acs.connreq.http import ConnectionRequester
from acs.connreq.udp_sender import UdpConnectionRequester
from acs.core.sealing import Sealer
from acs.services import sealing_key
from acs.services.accounts import SignIn
from acs.store import tokens
from acs.web.api.errors import ApiError, from_validation
from acs.web.api.routing import Api

api = Api("/api/v1")


@dataclass(slots=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    connreq: ConnectionRequester
    udp_connreq: UdpConnectionRequester | None = None  # None: ACS_STUN_ENABLE=false
    # one per process: its throttle and Argon2 gate serve the UI form and the API alike
    sign_in: SignIn = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.sign_in is None:
            self.sign_in = SignIn(self.settings.login_concurrency)

    @property
    def sealer(self) -> Sealer:
        return sealing_key.sealer(self.settings)


SERVICES = web.AppKey("services", Services)
TOKEN = web.RequestKey("token", tokens.ApiToken)
AUDIT = web.RequestKey("audit", dict)


def audit_note(
    request: web.Request,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    dry_run: bool = False,
    **detail: Any,
) -> None:
    """What a handler knows better than its route about the audit entry of this
    request: the object it created (a new job, campaign, token), that it is a
    dry run (recorded under the route's dry-run action), details. Never put a
    secret in ``detail``."""
    note = request.get(AUDIT) or {}
    if object_type is not None:
        note["object_type"] = object_type
    if object_id is not None:
        note["object_id"] = object_id
    if dry_run:
        note["dry_run"] = True
    if detail:
        note.setdefault("detail", {}).update(detail)
    request[AUDIT] = note


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


BIGINT_MAX = 2**63 - 1  # ids and cursors beyond it cannot name a row


def _nul_path(data: Any, path: str = "") -> str | None:
    """The path of the first string holding a NUL character, which PostgreSQL
    cannot store or compare: refused up front instead of failing in the query."""
    if isinstance(data, str):
        return path if "\x00" in data else None
    if isinstance(data, dict):
        items: Any = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        sub = f"{path}.{key}" if path else str(key)
        found = _nul_path(key, sub) if isinstance(key, str) else None
        found = found or _nul_path(value, sub)
        if found is not None:
            return found
    return None


def refuse_nul(data: Any, code: str) -> None:
    where = _nul_path(data)
    if where is not None:
        raise ApiError(
            400,
            code,
            "NUL characters are not allowed",
            [{"path": where, "message": "contains a NUL character"}],
        )


def query_of(request: web.Request, model: type[BaseModel]) -> Any:
    refuse_nul(dict(request.query), "invalid_query")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise ApiError(
            400, "invalid_query", "invalid query parameters", from_validation(exc).errors
        ) from None


async def body_of(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        data = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    refuse_nul(data, "invalid_body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


def json_out(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )
