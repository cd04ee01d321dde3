"""The audit log's one writer: the API middleware calls ``record`` after every
changing request of an authenticated token, whatever its outcome."""

from __future__ import annotations

import logging

import asyncpg
from aiohttp import web

from acs.logs import log
from acs.store import audit
from acs.web.api.plumbing import AUDIT, TOKEN, services
from acs.web.api.routing import READ_ONLY, Route

logger = logging.getLogger("acs.audit")

DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


async def record(request: web.Request, route: Route | None, status: int) -> None:
    if route is None or request.method in READ_ONLY:
        return
    token = request.get(TOKEN)
    if token is None:
        # no actor to name: unauthenticated requests are in the structured
        # log, and keeping them here would let anyone fill the table
        return
    note = request.get(AUDIT) or {}
    found = route.object_of(dict(request.match_info))
    object_type = note.get("object_type", found[0] if found else None)
    object_id = note.get("object_id", found[1] if found else None)
    action = route.action
    if note.get("dry_run"):
        assert route.audit_dry_run is not None, f"{route.path} declares no dry-run action"
        action = route.audit_dry_run
    if object_id is not None:
        # a refused path may hold what PostgreSQL cannot store; keep the entry
        object_id = object_id.replace("\x00", "\ufffd")
    try:
        async with services(request).pool.acquire() as conn:
            await audit.record(
                conn,
                actor=token.name,
                role=token.role,
                method=request.method,
                route=route.path,
                action=action,
                object_type=object_type,
                object_id=object_id,
                status=status,
                remote=request.remote,
                detail=note.get("detail"),
            )
    except DB_ERRORS as exc:
        # the change itself is committed; failing its answer now would only
        # make the client retry something that happened
        log(
            logger,
            logging.ERROR,
            "audit_failed",
            actor=token.name,
            action=action,
            object=object_id,
            status=status,
            error=exc,
        )
