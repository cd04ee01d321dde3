"""Routes declared once, with their models: the aiohttp router and the OpenAPI
3.1 document are both generated from the same declarations, so the document
cannot drift from what the server accepts."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from acs.web.api.bounds import BIGINT_MAX
from acs.web.api.errors import ApiError, ErrorResponse

Handler = Callable[..., Awaitable[web.StreamResponse]]

# path parameters naming a row by its bigserial id: integers in the document,
# checked before a handler runs, so 2**63 is a 400 and not PostgreSQL's overflow
ID_PARAMS = frozenset(
    {
        "task_id",
        "bulk_id",
        "campaign_id",
        "policy_id",
        "image_id",
        "webhook_id",
        "session_id",
        "delivery_id",
        "backup_id",
    }
)
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
# other path parameters with a rule of their own (the store's tag rule)
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "tag": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
}


def parse_id(name: str, raw: str) -> int:
    """The id in a path parameter, or a 400 naming the parameter."""
    # isascii: str.isdigit() also takes digits int() refuses, such as "²"
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= BIGINT_MAX:
        return int(raw)
    message = f"must be a number from 1 to {BIGINT_MAX}"
    raise ApiError(
        400,
        "invalid_id",
        f"{name} {message}, got {raw[:40]!r}",
        [{"path": name, "message": message}],
    )


@dataclass(slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    role: str
    summary: str
    body: type[BaseModel] | None = None
    raw_body: str | None = None  # media type of a streamed, non-JSON body
    query: type[BaseModel] | None = None
    responses: dict[int, tuple[type[BaseModel] | None, str]] = field(default_factory=dict)
    tag: str = ""
    # the audit log's stable action for a changing request ("policy.create"),
    # the one recorded instead when the handler says the request is a dry run,
    # and its object as "type:{path_param}" or, for a create whose id the
    # handler reports, "type" (default: the first path parameter, typed by the
    # collection it follows: /tasks/{task_id} is a task)
    audit: str | None = None
    audit_dry_run: str | None = None
    audit_object: str | None = None

    @property
    def mutating(self) -> bool:
        return self.method not in READ_ONLY

    @property
    def action(self) -> str:
        assert self.audit is not None, f"{self.method} {self.path} declares no audit action"
        return self.audit

    @property
    def object_type(self) -> str | None:
        template = self.audit_object or _default_object(self.path)
        return None if template is None else template.partition(":")[0]

    def object_of(self, match_info: dict[str, str]) -> tuple[str, str | None] | None:
        """(type, id) of the object the request acts on, from its path."""
        template = self.audit_object or _default_object(self.path)
        if template is None:
            return None
        kind, _, ident = template.partition(":")
        if not ident:
            return kind, None  # made by the request: the handler names it
        try:
            return kind, ident.format_map(match_info)
        except KeyError:  # a template naming a parameter the path lacks: a bug, not a 500
            return kind, ident

    def check_path(self, match_info: dict[str, str]) -> None:
        for name in _path_params(self.path):
            if name in ID_PARAMS and name in match_info:
                parse_id(name, match_info[name])


class Api:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        role: str,
        summary: str,
        tag: str,
        body: type[BaseModel] | None = None,
        raw_body: str | None = None,
        query: type[BaseModel] | None = None,
        responses: dict[int, tuple[type[BaseModel] | None, str]] | None = None,
        audit: str | None = None,
        audit_dry_run: str | None = None,
        audit_object: str | None = None,
    ) -> Callable[[Handler], Handler]:
        for action in (audit, audit_dry_run):
            if action is not None and not _ACTION.match(action):
                raise ValueError(f"{method} {path}: audit action {action!r} is not noun.verb")
        if method not in READ_ONLY and audit is None:
            # every change is audited under a name that clients can filter on
            raise ValueError(f"{method} {path} changes state and declares no audit action")

        def register(handler: Handler) -> Handler:
            self.routes.append(
                Route(
                    method,
                    self.prefix + path,
                    handler,
                    role,
                    summary,
                    body,
                    raw_body,
                    query,
                    responses or {},
                    tag,
                    audit,
                    audit_dry_run,
                    audit_object,
                )
            )
            return handler

        return register

    def add_to(self, app: web.Application) -> None:
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler)

    def find(self, method: str, resource: web.AbstractResource | None) -> Route | None:
        canonical = resource.canonical if resource is not None else None
        for r in self.routes:
            if r.path == canonical and r.method == method:
                return r
        return None

    # ------------------------------------------------------------ OpenAPI

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        # every model in one pass: pydantic then gives two models of the same
        # name (policy and campaign DryRunOut, device and policy TagsIn) distinct
        # component names, where one would otherwise overwrite the other
        models: set[type[BaseModel]] = {ErrorResponse}
        for r in self.routes:
            models.update(m for m, _ in r.responses.values() if m is not None)
            if r.body is not None:
                models.add(r.body)
        ordered = sorted(models, key=lambda m: (m.__module__, m.__qualname__))
        refs, top = models_json_schema(
            [(m, "validation") for m in ordered], ref_template="#/components/schemas/{model}"
        )
        schemas: dict[str, Any] = top.get("$defs", {})

        def ref(model: type[BaseModel]) -> dict[str, Any]:
            return refs[(model, "validation")]

        paths: dict[str, Any] = {}
        for r in self.routes:
            op: dict[str, Any] = {
                "summary": r.summary,
                "operationId": r.handler.__name__,
                "tags": [r.tag],
                "description": (inspect.getdoc(r.handler) or "") + f"\n\nRequires role: {r.role}.",
                "security": [{"bearerAuth": []}],
                "parameters": [],
                "responses": {},
            }
            for name in _path_params(r.path):
                if name in ID_PARAMS:
                    schema = ID_SCHEMA
                else:
                    schema = PATH_SCHEMAS.get(name, {"type": "string", "minLength": 1})
                op["parameters"].append(
                    {"name": name, "in": "path", "required": True, "schema": schema}
                )
            if r.query is not None:
                for name, info in r.query.model_fields.items():
                    alias = info.alias or name
                    schema = r.query.model_json_schema()["properties"][alias]
                    op["parameters"].append(
                        {
                            "name": alias,
                            "in": "query",
                            "required": info.is_required(),
                            "description": info.description or "",
                            "schema": schema,
                        }
                    )
            if r.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref(r.body)}},
                }
            elif r.raw_body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {r.raw_body: {"schema": {"type": "string", "format": "binary"}}},
                }
            for status, (model, description) in sorted(r.responses.items()):
                resp: dict[str, Any] = {"description": description}
                if model is None and status >= 400:
                    model = ErrorResponse  # every error answers in the API's error format
                if model is not None:
                    resp["content"] = {"application/json": {"schema": ref(model)}}
                op["responses"][str(status)] = resp
            defaults = [
                (400, "invalid request"),
                (401, "no or bad token"),
                (403, "role not allowed"),
                (503, "the database is unavailable; retry after Retry-After seconds"),
            ]
            if r.body is not None:
                defaults.append((413, "the body is over the size limit"))
            for status, description in defaults:
                op["responses"].setdefault(
                    str(status),
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ref(ErrorResponse)}},
                    },
                )
            if r.mutating:
                # what the audit log records for this operation (x- extensions are OpenAPI's)
                audit: dict[str, Any] = {"action": r.action, "objectType": r.object_type}
                if r.audit_dry_run is not None:
                    audit["dryRunAction"] = r.audit_dry_run
                op["x-audit"] = audit
            paths.setdefault(r.path, {})[r.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            },
        }


READ_ONLY = frozenset({"GET", "HEAD", "OPTIONS"})
#: audit actions: the object type, then what was done to it ("device.task.create")
_ACTION = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")

# collection segment -> the object type its items are called by in the audit log
_OBJECT_TYPES = {
    "devices": "device",
    "tasks": "task",
    "files": "file",
    "tokens": "token",
    "campaigns": "campaign",
    "images": "image",
    "webhooks": "webhook",
    "policies": "policy",
    "bulk-jobs": "bulk_job",
    "users": "user",
    "backups": "backup",
}


def _default_object(path: str) -> str | None:
    parts = path.split("/")
    for previous, part in zip(parts, parts[1:], strict=False):
        if part.startswith("{") and part.endswith("}"):
            kind = _OBJECT_TYPES.get(previous, previous.rstrip("s"))
            return f"{kind}:{part}"
    return None


def _path_params(path: str) -> list[str]:
    out = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            out.append(part[1:-1].split(":")[0])
    return out
