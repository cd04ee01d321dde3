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
