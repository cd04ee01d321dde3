"""Routes of the firmware catalog, campaigns and the firmware explanation."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiohttp import web

from acs.core import campaigns as campaign_rules
from acs.core.firmware import Image, Region, Scheme
from acs.core.versions import VersionError
from acs.logs import log
from acs.services import campaigns as engine
from acs.services import knock_waiting, soak
from acs.services.explain import explain
from acs.services.mirrors import Source
from acs.store import campaigns as campaign_store
from acs.store import firmware as catalog
from acs.web.api import firmware_models as F
from acs.web.api.errors import ApiError, not_found
from acs.web.api.models import KnockWaitingOut
from acs.web.api.plumbing import (
    TOKEN,
    api,
    audit_note,
    body_of,
    json_out,
    path_id,
    query_of,
    services,
)

logger = logging.getLogger("acs.api")

# --------------------------------------------------------------------------- catalog


def image_out(request: web.Request, image: Image) -> F.ImageOut:
    region = image.region
    return F.ImageOut(
        id=image.id,
        file=image.file_name,
        url=services(request).settings.files_base_url + image.file_name,
        size=image.file_size,
        sha256=image.sha256,
        oui=image.oui,
        productClass=image.product_class,
        hardwareVersions=list(image.hardware_versions),
        version=image.version,
        channel=image.channel,
        region=None
        if region is None
        else F.RegionOut(
            name=region.name,
            source=region.source,
            values=list(region.values),
            parameter=region.parameter,
        ),
        minVersion=image.min_version,
        allowDowngrade=image.allow_downgrade,
        releaseNotes=image.release_notes,
    )


@api.route(
    "PUT",
    "/firmware/products/{oui}/{product_class}",
    audit="product.version_scheme.set",
    audit_object="product:{oui}/{product_class}",
    role="admin",
    tag="firmware",
    summary="Set how a product's version strings compare",
    body=F.SchemeIn,
    responses={200: (F.SchemeOut, "stored")},
)
async def put_scheme(request: web.Request) -> web.Response:
    """Schemes: auto (vendor strings such as V1.0.0B05), semver, numeric, regex."""
    body: F.SchemeIn = await body_of(request, F.SchemeIn)
    oui, product = request.match_info["oui"], request.match_info["product_class"]
    async with services(request).pool.acquire() as conn:
        await catalog.set_scheme(
            conn, oui, product, Scheme(body.versionScheme, body.versionPattern)
        )
    return json_out(
        F.SchemeOut(
            oui=oui,
            productClass=product,
            versionScheme=body.versionScheme,
            versionPattern=body.versionPattern,
        )
    )


@api.route(
    "POST",
    "/firmware/images",
    audit="image.create",
    audit_object="image",
    role="admin",
    tag="firmware",
    summary="Add an image to the catalog",
    body=F.ImageIn,
    responses={
        201: (F.ImageOut, "added"),
        400: (None, "a version the product's scheme cannot parse"),
        404: (None, "unknown file"),
    },
)
async def add_image(request: web.Request) -> web.Response:
    """The file must already be on the file server (PUT /files/{name})."""
    body: F.ImageIn = await body_of(request, F.ImageIn)
    svc = services(request)
    async with svc.pool.acquire() as conn:
        scheme = await catalog.get_scheme(conn, body.oui, body.productClass)
        for field, text in (("version", body.version), ("minVersion", body.minVersion)):
            if text is None:
                continue
            try:
                scheme.parse(text)
            except VersionError as err:
                raise ApiError(
                    400,
                    "invalid_version",
                    f"{field}: {err}",
                    [{"path": field, "message": str(err)}],
                ) from None
        region = body.region
        image = await catalog.add_image(
            conn,
            file_name=body.file,
            oui=body.oui,
            product_class=body.productClass,
            hardware_versions=body.hardwareVersions,
            version=body.version,
            channel=body.channel,
            region=None
            if region is None
            else Region(region.name, region.source, tuple(region.values), region.parameter),
            min_version=body.minVersion,
            allow_downgrade=body.allowDowngrade,
            release_notes=body.releaseNotes,
        )
    if image is None:
        raise ApiError(
            404,
            "unknown_file",
            f"no file {body.file!r}: upload it first",
            [{"path": "file", "message": "no such file"}],
        )
    audit_note(request, object_type="image", object_id=str(image.id), version=image.version)
    log(
        logger,
        logging.INFO,
        "image_added",
        image=image.id,
        version=image.version,
        token=request[TOKEN].name,
    )
    return json_out(image_out(request, image), 201)


@api.route(
    "GET",
    "/firmware/images",
    role="viewer",
    tag="firmware",
    summary="List the catalog",
    responses={200: (F.ImageListOut, "images")},
)
async def list_images(request: web.Request) -> web.Response:
    """Every image with the hardware, region and versions it fits."""
    async with services(request).pool.acquire() as conn:
        images = await catalog.list_images(conn)
    return json_out(F.ImageListOut(items=[image_out(request, i) for i in images]))


@api.route(
    "DELETE",
    "/firmware/images/{image_id}",
    audit="image.delete",
    role="admin",
    tag="firmware",
    summary="Remove an image from the catalog",
    responses={204: (None, "removed"), 404: (None, "unknown"), 409: (None, "a campaign uses it")},
)
async def delete_image(request: web.Request) -> web.Response:
    """Refused while a campaign names the image."""
    image_id = path_id(request, "image_id")
    try:
        async with services(request).pool.acquire() as conn:
            gone = await catalog.delete_image(conn, image_id)
    except (asyncpg.ForeignKeyViolationError, asyncpg.RestrictViolationError):
        raise ApiError(
            409, "in_use", "a campaign uses this image; delete the campaign first"
        ) from None
    if not gone:
        raise not_found(f"image {image_id}")
    return web.Response(status=204)


# --------------------------------------------------------------------------- campaigns


async def campaign_out(conn: asyncpg.Connection, c: campaign_store.Campaign) -> F.CampaignOut:
    progress = {p.stage: p for p in await engine.progress(conn, c)}
    return F.CampaignOut(
        id=c.id,
        name=c.name,
        status=c.status,
        statusReason=c.status_reason,
        awaitingApproval=campaign_rules.awaits_approval(c.status, c.status_reason),
        image=c.image_id,
        channel=c.channel,
        filter=c.filter,
        membership=c.membership,
        currentStage=c.current_stage + 1,
        stages=[
            F.StageOut(
                stage=i + 1,
                size=str(s["size"]),
                successThreshold=str(s.get("successThreshold", "100%")),
                failureThreshold=str(s.get("failureThreshold", "10%")),
                onSuccess=s.get("onSuccess", "next"),
                onFailure=s.get("onFailure", "pause"),
                soak=int(s.get("soak") or 0),
                devices=progress[i].devices if i in progress else 0,
                states=progress[i].by_state if i in progress else {},
            )
            for i, s in enumerate(c.stages)
        ],
        startAt=c.start_at,
        windows=c.windows,
        maxInFlight=c.max_in_flight,
        startsPerMinute=c.starts_per_minute,
        maxAttempts=c.max_attempts,
        retryBackoffS=c.retry_backoff_s,
        verifyTimeoutS=c.verify_timeout_s,
        rollback=c.rollback,
        connectionRequest=c.connection_request,
        priority=c.priority,
        transfer=c.transfer,
        audience=c.audience,
        totals=await campaign_store.state_totals(conn, c.id),
        health=await soak.view(conn, c),
        createdBy=c.created_by,
        created=c.created_at,
        started=c.started_at,
        finished=c.finished_at,
    )


def _spec(body: F.CampaignIn, who: str) -> dict[str, Any]:
    return {
        "name": body.name,
        "image_id": body.image,
        "channel": body.channel,
        "filter": body.filter,
        "membership": body.membership,
        "stages": [s.model_dump() for s in body.stages],
        "start_at": body.startAt,
        "windows": [w.model_dump() for w in body.windows],
        "max_in_flight": body.maxInFlight,
        "starts_per_minute": body.startsPerMinute,
        "max_attempts": body.maxAttempts,
        "retry_backoff_s": body.retryBackoffS,
        "verify_timeout_s": body.verifyTimeoutS,
        "rollback": body.rollback,
        "connection_request": body.connectionRequest,
        "priority": body.priority,
        "transfer": body.transfer,
        "created_by": who,
    }


@api.route(
    "POST",
    "/campaigns",
    audit="campaign.create",
    audit_dry_run="campaign.dry_run",
    audit_object="campaign",
    role="operator",
    tag="campaigns",
    summary="Create a campaign (a draft), or preview it with dryRun=true",
    body=F.CampaignIn,
    query=F.CampaignQuery,
    responses={
        201: (F.CampaignOut, "created as a draft; start it with POST .../start"),
        200: (F.DryRunOut, "dryRun: the devices each stage would take, written nowhere"),
        404: (None, "unknown image"),
        409: (None, "name taken"),
    },
)
async def create_campaign(request: web.Request) -> web.Response:
    """Stage sizes are cumulative shares (or counts) of the eligible audience."""
    q: F.CampaignQuery = query_of(request, F.CampaignQuery)
    if q.dryRun:
        audit_note(request, dry_run=True)
    body: F.CampaignIn = await body_of(request, F.CampaignIn)
    svc = services(request)
    async with svc.pool.acquire() as conn:
        if body.image is not None and await catalog.get_image(conn, body.image) is None:
            raise ApiError(
                404,
                "unknown_image",
                f"no catalog image {body.image}",
                [{"path": "image", "message": "no such image"}],
            )
        spec = _spec(body, request[TOKEN].name)
        if q.dryRun:
            audit_note(request, name=body.name)
            preview = await engine.preview(conn, campaign_store.unsaved(spec))
            return json_out(_dry_run_out(preview))
        try:
            async with conn.transaction():  # the campaign and its health, or neither
                campaign = await campaign_store.create(conn, spec)
                health = None if body.health is None else body.health.model_dump()
                await soak.define(conn, campaign.id, health)
        except asyncpg.UniqueViolationError:
            raise ApiError(409, "exists", f"a campaign named {body.name!r} exists") from None
        out = await campaign_out(conn, campaign)
    audit_note(request, object_type="campaign", object_id=str(out.id), name=out.name)
    log(logger, logging.INFO, "campaign_created", campaign=out.id, token=request[TOKEN].name)
    return json_out(out, 201)


def _dry_run_out(p: engine.Preview) -> F.DryRunOut:
    return F.DryRunOut(
        audience=sum(len(s) for s in p.stages) + len(p.beyond),
        stages=[
            F.DryRunStageOut(stage=i + 1, devices=len(ids), sample=ids[:100])
            for i, ids in enumerate(p.stages)
        ],
        outsideStages=len(p.beyond),
        skipped=dict(p.skipped),
        skippedSamples=p.skipped_samples,
        overlapping={str(k): v for k, v in p.overlapping.items()},
    )


def _campaign_id(request: web.Request) -> int:
    return path_id(request, "campaign_id")


@api.route(
    "GET",
    "/campaigns",
    role="viewer",
    tag="campaigns",
    summary="List campaigns with their progress",
    responses={200: (F.CampaignListOut, "campaigns")},
)
async def list_campaigns(request: web.Request) -> web.Response:
    """Newest first."""
    async with services(request).pool.acquire() as conn:
        items = [await campaign_out(conn, c) for c in reversed(await campaign_store.list_all(conn))]
    return json_out(F.CampaignListOut(items=items))


@api.route(
    "GET",
    "/campaigns/{campaign_id}",
    role="viewer",
    tag="campaigns",
    summary="A campaign and its progress per stage",
    responses={200: (F.CampaignOut, "the campaign"), 404: (None, "unknown")},
)
async def get_campaign(request: web.Request) -> web.Response:
    """Stages with device counts per state; totals over the whole campaign."""
    cid = _campaign_id(request)
    async with services(request).pool.acquire() as conn:
        c = await campaign_store.get(conn, cid)
        if c is None:
            raise not_found(f"campaign {cid}")
        return json_out(await campaign_out(conn, c))


@api.route(
    "DELETE",
    "/campaigns/{campaign_id}",
    audit="campaign.delete",
    role="operator",
    tag="campaigns",
    summary="Delete a draft or finished campaign",
    responses={204: (None, "deleted"), 404: (None, "unknown"), 409: (None, "still running")},
)
async def delete_campaign(request: web.Request) -> web.Response:
    """Running and paused campaigns must be cancelled first."""
    cid = _campaign_id(request)
    async with services(request).pool.acquire() as conn:
        c = await campaign_store.get(conn, cid)
        if c is None:
            raise not_found(f"campaign {cid}")
        if not await campaign_store.delete(conn, cid):
            raise ApiError(409, "conflict", f"campaign {cid} is {c.status}; cancel it first")
    return web.Response(status=204)


@api.route(
    "GET",
    "/campaigns/{campaign_id}/devices",
    role="viewer",
    tag="campaigns",
    summary="The campaign's devices and their states",
    query=F.MemberQuery,
    responses={200: (F.MemberPageOut, "a page of devices"), 404: (None, "unknown")},
)
async def list_members(request: web.Request) -> web.Response:
    """Filter by state and stage; failed devices carry their reason and fault code."""
    cid = _campaign_id(request)
    q: F.MemberQuery = query_of(request, F.MemberQuery)
    async with services(request).pool.acquire() as conn:
        if await campaign_store.get(conn, cid) is None:
            raise not_found(f"campaign {cid}")
        rows = await campaign_store.list_members(
            conn,
            cid,
            state=q.state,
            stage=None if q.stage is None else q.stage - 1,
            after=q.after,
            limit=q.limit,
        )
    items = [
        F.MemberOut(
            device=m.device_id,
            stage=None if m.stage is None else m.stage + 1,
            state=m.state,
            rollback=m.rollback,
            fromVersion=m.from_version,
            targetVersion=m.target_version,
            attempts=m.attempts,
            nextAttemptAt=m.next_attempt_at,
            reason=m.reason,
            code=m.code,
            faultCode=m.fault_code,
            started=m.started_at,
            finished=m.finished_at,
            job=m.task_id,
        )
        for m in rows
    ]
    return json_out(
        F.MemberPageOut(items=items, next=rows[-1].device_id if len(rows) == q.limit else None)
    )


def _control_route(path: str, summary: str, action: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        cid = _campaign_id(request)
        async with services(request).pool.acquire() as conn:
            try:
                c = await action(conn, cid, request[TOKEN].name)
            except LookupError:
                raise not_found(f"campaign {cid}") from None
            except engine.ControlError as err:
                raise ApiError(409, "conflict", str(err)) from None
            log(logger, logging.INFO, "campaign_" + path, campaign=cid, token=request[TOKEN].name)
            if isinstance(c, int):
                return json_out(F.RetryOut(retried=c))
            return json_out(await campaign_out(conn, c))

    handler.__doc__ = summary
    handler.__name__ = "campaign_" + path.replace("-", "_")  # the OpenAPI operationId
    response: type = F.RetryOut if path == "retry-failed" else F.CampaignOut
    api.route(
        "POST",
        f"/campaigns/{{campaign_id}}/{path}",
        role="operator",
        tag="campaigns",
        summary=summary,
        audit="campaign." + path.replace("-", "_"),
        responses={
            200: (response, "done"),
            404: (None, "unknown"),
            409: (None, "not possible in the campaign's state"),
        },
    )(handler)


async def _start(conn: asyncpg.Connection, cid: int, _who: str) -> campaign_store.Campaign:
    return await engine.start(conn, cid)


_control_route("start", "Start a draft: admit its audience into stages", _start)
_control_route("pause", "Pause: no new Downloads (those in flight finish)", engine.pause)
_control_route("resume", "Resume a paused campaign at its stage", engine.resume)
_control_route("approve", "Start the next stage now", engine.approve)
_control_route("cancel", "Cancel: pending devices are skipped", engine.cancel)
_control_route("retry-failed", "Give failed devices another round of attempts", engine.retry_failed)


# --------------------------------------------------------------------------- explanation


@api.route(
    "GET",
    "/devices/{device_id}/firmware",
    role="viewer",
    tag="firmware",
    summary="Why the device is, or is not, offered each image and campaign",
    responses={200: (F.FirmwareExplainOut, "the explanation"), 404: (None, "unknown device")},
)
async def device_firmware(request: web.Request) -> web.Response:
    """Codes: offered, hardware_mismatch, region_mismatch, not_newer, same_version,
    needs_stepping_stone, campaign_paused, outside_window, stage_not_reached,
    rate_limited, precedence, retry_backoff, device_faulted, filter_mismatch..."""
    dev_id = request.match_info["device_id"]
    async with services(request).pool.acquire() as conn:
        found = await explain(conn, dev_id)
    if found is None:
        raise not_found(f"device {dev_id!r}")
    d = found.device
    return json_out(
        F.FirmwareExplainOut(
            device=d.id,
            softwareVersion=d.software_version,
            parsedVersion=found.parsed_version,
            versionScheme=found.scheme.name,
            hardwareVersion=d.hardware_version,
            provisioningCode=d.provisioning_code,
            lastInform=d.last_inform,
            images=[
                F.ImageVerdictOut(
                    image=i.id,
                    version=i.version,
                    channel=i.channel,
                    offered=v.ok,
                    code=v.code,
                    reason=v.reason,
                    downloadUrl=_url(request, i, found.image_sources.get(i.id)),
                )
                for i, v in found.images
            ],
            campaigns=[
                F.CampaignVerdictOut(
                    campaign=c.id,
                    name=c.name,
                    status=c.status,
                    state=m.state if m else None,
                    stage=None if m is None or m.stage is None else m.stage + 1,
                    code=v.code,
                    reason=v.reason,
                    downloadUrl=_url(request, *found.campaign_sources.get(c.id, (None, None))),
                )
                for c, m, v in found.campaigns
            ],
        )
    )


def _url(request: web.Request, image: Image | None, source: Source | None) -> str | None:
    """A region mirror's URL, or the ACS's file server's for the image."""
    if image is None or source is None:
        return None
    return source.url or services(request).settings.files_base_url + image.file_name


@api.route(
    "POST",
    "/campaigns/{campaign_id}/knock",
    audit="campaign.knock",
    role="operator",
    tag="campaigns",
    summary="Knock the devices whose Download is still owed",
    responses={
        200: (
            KnockWaitingOut,
            "how many were knocked, by channel and outcome, who was not reached",
        ),
        404: (None, "unknown"),
        409: (None, "the campaign is not running"),
    },
)
async def campaign_knock(request: web.Request) -> web.Response:
    """A connection request to each pending device of a started stage (or owed a
    rollback), at most ``ACS_KNOCK_WAITING_RATE_PER_S`` started a second and
    ``ACS_KNOCK_WAITING_MAX`` per call, whatever the campaign's
    ``connectionRequest``; their sessions take the Download inside the
    campaign's windows and rate limits, as always."""
    cid = _campaign_id(request)
    svc = services(request)
    try:
        r = await knock_waiting.campaign(svc.pool, svc.settings, cid, svc.knock)
    except LookupError:
        raise not_found(f"campaign {cid}") from None
    except engine.ControlError as err:
        raise ApiError(409, "conflict", str(err)) from None
    log(logger, logging.INFO, "campaign_knock", campaign=cid, knocked=r.knocked, reached=r.reached)
    audit_note(request, knocked=r.knocked, reached=r.reached)
    return json_out(KnockWaitingOut.of(r))
