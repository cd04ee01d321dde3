"""Jobs across the fleet: the Jobs and Faults pages' API.

``GET /tasks`` searches every device's jobs, ``GET /tasks/groups`` counts them
by fault code, job name, product class or firmware, ``GET /faults`` lists the
open faults by code and model; ``POST /tasks/retry``, ``/tasks/cancel`` and
``/faults/dismiss`` act on a selection (ids, or a whole group) in one
statement.
"""

from __future__ import annotations

from aiohttp import web

from acs.core import fault_causes
from acs.store import task_search
from acs.web.api import fleet_jobs_models as F
from acs.web.api.errors import ApiError
from acs.web.api.plumbing import (
    TOKEN,
    api,
    audit_note,
    body_of,
    filter_of,
    json_out,
    query_of,
    services,
)
from acs.web.api.task_views import task_out


def _selection(
    q: F._Narrowing, statuses: list[str] | None, names: list[str] | None
) -> task_search.Selection:
    return task_search.Selection(
        statuses=statuses or None,
        names=names or None,
        fault_code=q.faultCode,
        device_filter=filter_of(q.filter),
        device_id=q.device,
        since=q.since,
        until=q.until,
        open_faults=q.openFaults,
    )


async def _run(request: web.Request, work):  # type: ignore[no-untyped-def]
    """The store call, with a filter the SQL compiler refuses as a 400."""
    try:
        async with services(request).pool.acquire() as conn:
            return await work(conn)
    except ValueError as err:
        raise ApiError(
            400, "invalid_query", str(err), [{"path": "filter", "message": str(err)}]
        ) from None


@api.route(
    "GET",
    "/tasks",
    role="viewer",
    tag="jobs",
    summary="Every device's jobs, newest first",
    query=F.TaskSearchQuery,
    responses={200: (F.TaskPageOut, "a page of jobs with counts per status")},
)
async def search_tasks(request: web.Request) -> web.Response:
    """Filter by status, name, fault code (a 9003's per-parameter codes
    included), device, device filter and creation time; page on with
    ``cursor=<nextCursor>``."""
    q: F.TaskSearchQuery = query_of(request, F.TaskSearchQuery)
    sel = _selection(q, q.statuses(), q.names())
    page = await _run(
        request, lambda conn: task_search.search(conn, sel, limit=q.limit, before_id=q.cursor)
    )
    return json_out(
        F.TaskPageOut(
            items=[task_out(t) for t in page.items],
            total=page.total,
            counts=page.counts,
            nextCursor=page.next_cursor,
        )
    )


def _group_out(g: task_search.Group) -> dict[str, object]:
    return {
        "key": g.key,
        "count": g.count,
        "devices": g.devices,
        "firstSeen": g.first_seen,
        "lastSeen": g.last_seen,
        "example": g.example,
        "causes": fault_causes.common_causes(g.results),
    }


@api.route(
    "GET",
    "/tasks/groups",
    role="viewer",
    tag="jobs",
    summary="Jobs counted by fault code, name, status, product class or firmware",
    query=F.TaskGroupQuery,
    responses={200: (F.TaskGroupsOut, "groups, largest first")},
)
async def group_tasks(request: web.Request) -> web.Response:
    """``by=faultCode,productClass`` groups by both; the same filters as GET /tasks."""
    q: F.TaskGroupQuery = query_of(request, F.TaskGroupQuery)
    sel = _selection(q, q.statuses(), q.names())
    found = await _run(request, lambda conn: task_search.groups(conn, sel, q.keys()))
    return json_out(
        F.TaskGroupsOut(by=q.keys(), groups=[F.TaskGroupOut(**_group_out(g)) for g in found])
    )


@api.route(
    "GET",
    "/faults",
    role="viewer",
    tag="jobs",
    summary="Open faults grouped by fault code and product class",
    query=F.FaultQuery,
    responses={200: (F.FaultGroupsOut, "groups, largest first")},
)
async def list_faults(request: web.Request) -> web.Response:
    """Faulted jobs not dismissed. Drill into a group with
    ``GET /tasks?status=fault&openFaults=true&faultCode=..&filter=DeviceID.ProductClass = ".."``."""
    q: F.FaultQuery = query_of(request, F.FaultQuery)
    sel = _selection(q, None, q.names())
    sel.open_faults = True

    async def work(conn):  # type: ignore[no-untyped-def]
        found = await task_search.groups(conn, sel, ["faultCode", "productClass"])
        return found, await task_search.search(conn, sel, limit=1)

    found, page = await _run(request, work)
    groups = []
    for g in found:
        code = int(g.key["faultCode"]) if g.key["faultCode"] is not None else None
        sample = g.results[0] if g.results else None
        groups.append(
            F.FaultGroupOut(
                **_group_out(g),
                faultCode=code,
                productClass=g.key["productClass"],
                cause=fault_causes.cause(code, g.example, sample),
            )
        )
    return json_out(F.FaultGroupsOut(groups=groups, total=page.total))


def _chosen(body: F.TaskSelectionIn) -> task_search.Selection:
    sel = _selection(body, list(body.status or []), list(body.name or []))
    sel.ids = list(body.ids) if body.ids is not None else None
    return sel


async def _act(request: web.Request, action, done: str) -> web.Response:  # type: ignore[no-untyped-def]
    """One bulk action on the body's selection, in one statement; how many it took."""
    body: F.TaskSelectionIn = await body_of(request, F.TaskSelectionIn)
    sel = _chosen(body)
    n = await _run(request, lambda conn: action(conn, sel))
    audit_note(request, matched=n)
    return json_out(F.SelectionActionOut(matched=n, action=done))  # type: ignore[arg-type]


@api.route(
    "POST",
    "/tasks/retry",
    audit="task.retry_selection",
    audit_object="task",
    role="operator",
    tag="jobs",
    summary="Retry every faulted or expired job of a selection",
    body=F.TaskSelectionIn,
    responses={200: (F.SelectionActionOut, "how many went back to pending")},
)
async def retry_selection(request: web.Request) -> web.Response:
    """Of jobs sharing a unique key only the newest comes back, and none whose
    key already has a pending job."""
    return await _act(request, task_search.retry, "retried")


@api.route(
    "POST",
    "/tasks/cancel",
    audit="task.cancel_selection",
    audit_object="task",
    role="operator",
    tag="jobs",
    summary="Cancel every pending job of a selection",
    body=F.TaskSelectionIn,
    responses={200: (F.SelectionActionOut, "how many were cancelled")},
)
async def cancel_selection(request: web.Request) -> web.Response:
    """Running jobs are left to finish; only pending ones are cancelled."""
    return await _act(request, task_search.cancel, "cancelled")


@api.route(
    "POST",
    "/faults/dismiss",
    audit="fault.dismiss",
    audit_object="task",
    role="operator",
    tag="jobs",
    summary="Take faults of a selection off the open-faults list",
    body=F.TaskSelectionIn,
    responses={200: (F.SelectionActionOut, "how many were dismissed")},
)
async def dismiss_faults(request: web.Request) -> web.Response:
    """The jobs keep their fault; a retry brings one back onto the list if it faults again."""
    who = request[TOKEN].name
    return await _act(request, lambda c, sel: task_search.dismiss(c, sel, who), "dismissed")
