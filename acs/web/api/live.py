"""Server-sent events: the web UI's live updates (issue 20 item 6).

A stream says only *which* topic changed ("device:ABC", "jobs"); the page
re-fetches its part from the API as the signed-in user, so an event can
carry nothing its listener may not read. The process's one LISTEN connection
(acs/services/live.py) feeds every stream; the writes announce themselves
in their own transaction (migration 0025).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from acs.core import live as rules
from acs.logs import log
from acs.store import tokens, users
from acs.web.api.errors import ApiError
from acs.web.api.plumbing import TOKEN, api, query_of, services
from acs.web.ui import session as ui_session

logger = logging.getLogger("acs.live")

# how long a new stream waits for the process's listener before it says so
CONNECT_WAIT_S = 10.0


class LiveQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topics: str = Field(
        min_length=1,
        max_length=2000,
        description="comma-separated: overview, devices, jobs, faults, campaigns, bulk-jobs,"
        " device:<id>, campaign:<n>, bulk:<n>",
    )


def parse_topics(raw: str) -> list[str]:
    """The asked topics, each once, or a 400 naming the bad one."""
    topics = list(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    if not topics:
        raise ApiError(
            400,
            "invalid_query",
            "name at least one topic",
            [{"path": "topics", "message": "name at least one topic"}],
        )
    if len(topics) > rules.MAX_TOPICS:
        message = f"at most {rules.MAX_TOPICS} topics per stream"
        raise ApiError(400, "invalid_query", message, [{"path": "topics", "message": message}])
    for topic in topics:
        problem = rules.topic_problem(topic)
        if problem is not None:
            raise ApiError(400, "invalid_query", problem, [{"path": "topics", "message": problem}])
    return topics


@api.route(
    "GET",
    "/events",
    role="viewer",
    tag="observability",
    summary="Live updates as server-sent events: which topics changed",
    query=LiveQuery,
    responses={
        200: (
            None,
            "text/event-stream: event 'ready', then 'change' (data: the topic)"
            " or 'resync' (re-fetch everything); a comment line as heartbeat",
        ),
        503: (None, "live updates are not available in this process"),
    },
)
async def live_events(request: web.Request) -> web.StreamResponse:
    """Each topic is sent at most once a second (changes in between are folded
    into one). After a reconnect (the browser sends Last-Event-ID) or when the
    ACS lost its own database listener, a 'resync' event says that changes may
    have been missed. The stream ends when the session or token does."""
    topics = parse_topics(query_of(request, LiveQuery).topics)
    hub = services(request).live
    if hub is None or not hub.available:
        raise ApiError(503, "live_unavailable", "live updates are not available: reload the page")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            # nginx and friends would hold the events back in a buffer
            "X-Accel-Buffering": "no",
        }
    )
    sub = hub.subscribe(topics)
    try:
        await response.prepare(request)
        await response.write(f"retry: {rules.RETRY_MS}\n\n".encode())
        try:
            await asyncio.wait_for(hub.connected.wait(), CONNECT_WAIT_S)
        except TimeoutError:
            log(logger, logging.WARNING, "live_not_listening", waited_s=CONNECT_WAIT_S)
        if request.headers.get("Last-Event-ID"):
            sub.offer(rules.RESYNC)  # we keep no history to replay: re-fetch
        await response.write(_event("ready", ",".join(topics), hub.next_id()))
        while True:
            try:
                first = await asyncio.wait_for(sub.queue.get(), rules.HEARTBEAT_S)
            except TimeoutError:
                if not await _still_allowed(request):
                    break
                await response.write(b": heartbeat\n\n")
                continue
            if first == rules.CLOSED:
                break
            for topic in sub.take_all(first):
                if topic == rules.RESYNC:
                    await response.write(_event("resync", "", hub.next_id()))
                else:
                    await response.write(_event("change", topic, hub.next_id()))
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    finally:
        hub.unsubscribe(sub)
    return response


def _event(name: str, data: str, ident: int) -> bytes:
    # topics are printable without newlines (topic_problem), so one data line
    return f"id: {ident}\nevent: {name}\ndata: {data}\n\n".encode()


async def _still_allowed(request: web.Request) -> bool:
    """The session or token the stream was opened with still works: a signed-out
    or revoked listener stops hearing even what little a topic name says."""
    cookie = ui_session.session_cookie(request)
    async with services(request).pool.acquire() as conn:
        if cookie is not None and not request.headers.get("Authorization"):
            return await users.session_alive(conn, cookie)
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        found = await tokens.verify_token(conn, token.strip())
    return found is not None and found.name == request[TOKEN].name
