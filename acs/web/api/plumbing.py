"""What every route module of the API shares: the route table, the services,
and reading bodies and queries into models with errors that name the bad field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ValidationError

from acs.config import Settings
from acs.connreq.http import ConnectionRequester
from acs.store import tokens
from acs.web.api.errors import ApiError, from_validation
from acs.web.api.routing import Api

api = Api("/api/v1")


@dataclass(slots=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    connreq: ConnectionRequester


SERVICES = web.AppKey("services", Services)
TOKEN = web.RequestKey("token", tokens.ApiToken)
AUDIT = web.RequestKey("audit", dict)


def audit_note(
    request: web.Request,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    action: str | None = None,
    **detail: Any,
) -> None:
    """What a handler knows better than its route about the audit entry of this
    request: the object it created (a new job, campaign, token), a different
    action (a dry run), details. Never put a secret in ``detail``."""
    note = request.get(AUDIT) or {}
    if object_type is not None:
        note["object_type"] = object_type
    if object_id is not None:
        note["object_id"] = object_id
    if action is not None:
        note["action"] = action
    if detail:
        note.setdefault("detail", {}).update(detail)
    request[AUDIT] = note


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def query_of(request: web.Request, model: type[BaseModel]) -> Any:
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
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


def json_out(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )
