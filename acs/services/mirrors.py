"""Which URL a device downloads an image from: the first of the image's region
mirrors that fits it (by tag, or by filter), else the ACS's own file server.
Chosen when the Download is sent, so a device retagged since admission gets
the mirror of its region now; the explanation asks the same function."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from acs.core.campaigns import IN_FLIGHT_STATES
from acs.core.filters import parse_filter
from acs.core.firmware import DeviceFacts, Image
from acs.core.mirrors import Mirror, url_of
from acs.services.catalog import CatalogView
from acs.store import mirrors as store
from acs.store import tasks as task_store
from acs.store.campaigns import Campaign, Member
from acs.store.device_query import compile_filter


@dataclass(frozen=True, slots=True)
class Source:
    """A mirror's URL, or None: the ACS's file server (its URL is the web layer's,
    from ACS_FILES_BASE_URL)."""

    url: str | None
    mirror: Mirror | None = None
    position: int | None = None

    def describe(self, default_base: str | None, file_name: str) -> str:
        if self.mirror is None:
            where = "the ACS's file server"
            return f"{url_of(default_base, file_name)} ({where})" if default_base else where
        return f"{self.url} (mirror {self.position} for {self.mirror.describe()})"


async def _fits(conn: asyncpg.Connection, m: Mirror, device_id: str, facts: DeviceFacts) -> bool:
    if m.tag is not None:
        return m.tag in facts.tags
    assert m.filter is not None
    try:
        where, params = compile_filter(parse_filter(m.filter), first_param=2)
    except ValueError:  # refused when the mirror was set (acs.web.api.mirrors)
        return False
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM devices d LEFT JOIN device_parameters dp"
        f" ON dp.device_id = d.id WHERE d.id = $1 AND ({where}))",
        device_id,
        *params,
    )
    return bool(found)


async def source_for(
    conn: asyncpg.Connection, image: Image, device_id: str, facts: DeviceFacts
) -> Source:
    for position, mirror in enumerate(await store.mirrors_of(conn, image.id)):
        if await _fits(conn, mirror, device_id, facts):
            return Source(url_of(mirror.base_url, image.file_name), mirror, position)
    return Source(None)


def download_args(
    image: Image, source: Source, file_type: str, command_key: str
) -> dict[str, object]:
    """The Download job's arguments: our file server's file by name (the session
    fills in its URL, size and credentials), or the mirror's URL with the size."""
    if source.url is None:
        return {"fileName": image.file_name, "fileType": file_type, "commandKey": command_key}
    return {
        "url": source.url,
        "fileSize": image.file_size,
        "fileType": file_type,
        "commandKey": command_key,
    }


async def of_member(
    conn: asyncpg.Connection,
    campaign: Campaign,
    member: Member,
    view: CatalogView,
    facts: DeviceFacts,
) -> tuple[Image, Source] | None:
    """For the explanation: the URL a campaign's device was given (its Download
    sent) or would be given (pending), with the image; None when there is none."""
    if member.state in IN_FLIGHT_STATES or member.state in ("succeeded", "rolled_back"):
        image = view.by_id(member.image_id)
        if image is None:
            return None
        task = None if member.task_id is None else await task_store.get_task(conn, member.task_id)
        if task is not None:
            url = task.args.get("url")
            return image, Source(str(url)) if url else Source(None)
        return image, await source_for(conn, image, member.device_id, facts)  # a FOTA offer
    if member.state != "pending":
        return None
    if member.rollback:
        owed = (
            None
            if member.target_version is None
            else view.previous_image(facts, member.target_version)
        )
    else:
        owed, _ = view.target_for(campaign, facts)
    if owed is None:
        return None
    return owed, await source_for(conn, owed, member.device_id, facts)
