"""What every route module of the API shares: the route table, the services,
and reading bodies and queries into models with errors that name the bad field."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ValidationError

from acs.config import Settings
from acs.connreq.http import ConnectionRequester, ConnectionRequestResult
from acs.connreq.udp_sender import UdpConnectionRequester
from acs.connreq.xmpp_client import XmppConnectionRequester
from acs.core import filters
from acs.core.sealing import Sealer
from acs.services import sealing_key
from acs.services.accounts import SignIn
from acs.services.knock import knock as knock_device
from acs.store import tokens
from acs.web.api.errors import ApiError, from_validation
from acs.web.api.routing import Api, parse_id

api = Api("/api/v1")


@dataclass(slots=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    connreq: ConnectionRequester
    udp_connreq: UdpConnectionRequester | None = None  # None: ACS_STUN_ENABLE=false
    xmpp_connreq: XmppConnectionRequester | None = None  # None: no ACS_XMPP_SERVER
    # ACS_DATABASE_READ_URL: a standby for read-only queries that tolerate its lag
    read_pool: asyncpg.Pool | None = None
    # one per process: its throttle and Argon2 gate serve the UI form and the API alike
    sign_in: SignIn = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.sign_in is None:
            self.sign_in = SignIn(self.settings.login_concurrency)

    @property
    def reads(self) -> asyncpg.Pool:
        """Where read-only queries that tolerate a standby's lag go (lists, searches,
        history); everything that writes, or reads what it just wrote, uses ``pool``."""
        return self.read_pool or self.pool

    @property
    def sealer(self) -> Sealer:
        return sealing_key.sealer(self.settings)

    async def knock(self, device_id: str) -> ConnectionRequestResult:
        """A connection request over every channel this process has (HTTP, UDP, XMPP)."""
        return await knock_device(
            self.pool, self.connreq, self.settings, device_id, self.udp_connreq, self.xmpp_connreq
        )


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


# bodies are shallow; deeper ones are refused by an iterative walk before
# pydantic, the task rules or the store recurse into them
MAX_JSON_DEPTH = 32
INT64 = (-(2**63), 2**64 - 1)  # what the store's jsonb encoder (orjson) can write
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _bad_string(text: str) -> str | None:
    found = _BAD_CHARS.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character"
    # a lone surrogate (a JSON "\ud800" escape) has no UTF-8 form: PostgreSQL
    # and every encoder would fail on it later
    return "contains a lone surrogate (an unpaired \\ud800-\\udfff escape)"


def bad_value(data: Any) -> tuple[str, str] | None:
    """(path, reason) of the first value no later layer could take: a string
    with a NUL (PostgreSQL cannot store it) or a lone surrogate, an integer
    beyond 64 bits, a non-finite number, nesting deeper than MAX_JSON_DEPTH.
    Iterative, so a deep document cannot exhaust the stack here either."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            reason = _bad_string(value)
            if reason is not None:
                return path, reason
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not INT64[0] <= value <= INT64[1]:
                return path, "is an integer beyond 64 bits"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return path, "is not a finite number"
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return path, f"nests deeper than {MAX_JSON_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                sub = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and (reason := _bad_string(key)) is not None:
                    return sub, "the key " + reason
                stack.append((item, sub, depth + 1))
    return None


def refuse_bad_text(data: Any, code: str) -> None:
    found = bad_value(data)
    if found is not None:
        path, reason = found
        raise ApiError(
            400, code, f"{path or 'the value'} {reason}", [{"path": path, "message": reason}]
        )


def path_id(request: web.Request, name: str) -> int:
    """A path parameter that names a row by id (the middleware checked it already)."""
    return parse_id(name, request.match_info[name])


def filter_of(text: str) -> filters.Expr | None:
    """A device filter of a request, or a 400 naming its position."""
    try:
        return filters.parse_filter(text)
    except filters.FilterError as err:
        raise ApiError(
            400,
            "invalid_filter",
            str(err),
            [{"path": "filter", "message": f"position {err.position}: {err.message}"}],
        ) from None


def query_of(request: web.Request, model: type[BaseModel]) -> Any:
    refuse_bad_text(dict(request.query), "invalid_query")
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise ApiError(
            400, "invalid_query", "invalid query parameters", from_validation(exc).errors
        ) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def body_of(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        # the C decoder refuses nesting near the interpreter's limit by itself
        raise ApiError(
            400, "invalid_json", f"the body nests deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    refuse_bad_text(data, "invalid_body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


def json_out(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )
