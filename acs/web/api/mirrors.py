"""Routes of an image's region mirrors (issue 18 item 5)."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from acs.core.filters import parse_filter
from acs.core.mirrors import MAX_MIRRORS, MAX_URL, Mirror, MirrorError, parse_mirrors, url_of
from acs.logs import log
from acs.store import mirrors as store
from acs.store.device_query import compile_filter
from acs.web.api.errors import ApiError, not_found
from acs.web.api.plumbing import TOKEN, api, audit_note, body_of, json_out, path_id, services

logger = logging.getLogger("acs.api")


class MirrorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    baseUrl: str = Field(
        min_length=1, max_length=MAX_URL, description="http(s) base URL; the file name is appended"
    )
    tag: str | None = Field(default=None, description="serves the devices with this tag")
    filter: str | None = Field(
        default=None, max_length=4096, description="serves the devices this filter matches"
    )


class MirrorsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mirrors: list[MirrorIn] = Field(
        max_length=MAX_MIRRORS,
        description="in order: the first that fits a device gives its URL; [] removes them all",
    )


class MirrorOut(BaseModel):
    baseUrl: str
    tag: str | None = None
    filter: str | None = None
    example: str = Field(description="the URL of this image's file on the mirror")


class MirrorsOut(BaseModel):
    image: int
    mirrors: list[MirrorOut]
    default: str = Field(description="the URL for devices no mirror fits: the ACS's file server")


async def _answer(request: web.Request, image_id: int, mirrors: list[Mirror]) -> web.Response:
    async with services(request).pool.acquire() as conn:
        name = await store.file_name_of(conn, image_id)
    if name is None:
        raise not_found(f"image {image_id}")
    return json_out(
        MirrorsOut(
            image=image_id,
            mirrors=[
                MirrorOut(
                    baseUrl=m.base_url, tag=m.tag, filter=m.filter, example=url_of(m.base_url, name)
                )
                for m in mirrors
            ],
            default=services(request).settings.files_base_url + name,
        )
    )


@api.route(
    "PUT",
    "/firmware/images/{image_id}/mirrors",
    audit="image.mirrors.set",
    role="admin",
    tag="firmware",
    summary="Set the image's region mirrors",
    body=MirrorsIn,
    responses={
        200: (MirrorsOut, "set"),
        400: (None, "a URL that is not http(s), a bad tag, a filter that does not compile"),
        404: (None, "unknown image"),
    },
)
async def set_mirrors(request: web.Request) -> web.Response:
    """Replaces the list. A device downloads from the first mirror whose tag it
    carries or whose filter matches it, chosen when its Download is sent;
    no mirror fits: the ACS's file server."""
    image_id = path_id(request, "image_id")
    body: MirrorsIn = await body_of(request, MirrorsIn)
    try:
        mirrors = parse_mirrors([m.model_dump() for m in body.mirrors])
        for i, m in enumerate(mirrors):
            if m.filter is not None:
                try:  # parsed, but some filters only the SQL compiler refuses
                    compile_filter(parse_filter(m.filter))
                except ValueError as bad:
                    raise MirrorError(f"mirrors[{i}].filter", str(bad)) from None
    except MirrorError as err:
        raise ApiError(
            400, "invalid_mirror", str(err), [{"path": err.path, "message": err.message}]
        ) from None
    async with services(request).pool.acquire() as conn:
        if not await store.set_mirrors(conn, image_id, mirrors):
            raise not_found(f"image {image_id}")
    audit_note(request, mirrors=len(mirrors))
    log(
        logger,
        logging.INFO,
        "image_mirrors_set",
        image=image_id,
        mirrors=len(mirrors),
        token=request[TOKEN].name,
    )
    return await _answer(request, image_id, mirrors)


@api.route(
    "GET",
    "/firmware/images/{image_id}/mirrors",
    role="viewer",
    tag="firmware",
    summary="The image's region mirrors",
    responses={200: (MirrorsOut, "the mirrors, in order"), 404: (None, "unknown image")},
)
async def get_mirrors(request: web.Request) -> web.Response:
    image_id = path_id(request, "image_id")
    async with services(request).pool.acquire() as conn:
        mirrors = await store.mirrors_of(conn, image_id)
    return await _answer(request, image_id, mirrors)
