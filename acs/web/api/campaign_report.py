"""Routes of a campaign's report: per stage and per device, as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

import asyncpg
from aiohttp import web

from acs.core import campaign_report as report_csv
from acs.core.health import soak_of
from acs.store import campaigns as campaign_store
from acs.store import health as health_store
from acs.web.api import health_models as R
from acs.web.api.errors import not_found
from acs.web.api.plumbing import api, json_out, path_id, query_of, services

CSV_PAGE = 5000


def _device(r: asyncpg.Record) -> R.ReportDeviceOut:
    signals = r["signals"]
    if isinstance(signals, str):
        signals = json.loads(signals)
    soaked = r["role"] == "soak"
    return R.ReportDeviceOut(
        device=r["device_id"],
        stage=None if r["stage"] is None else r["stage"] + 1,
        state=r["state"],
        rollback=r["rollback"],
        started=r["started_at"],
        finished=r["finished_at"],
        # a rollback swaps the two: before is what the device had before this campaign
        versionBefore=r["target_version"] if r["rollback"] else r["from_version"],
        versionAfter=r["from_version"] if r["rollback"] else r["target_version"],
        health=r["verdict"] if soaked else None,
        soakStarted=r["soak_started"] if soaked else None,
        soakFinished=r["soak_finished"] if soaked else None,
        signals=list(signals or []) if soaked else [],
        tripped=list(r["tripped"] or []) if soaked else [],
        note=r["note"],
        failureCode=r["code"],
        faultCode=r["fault_code"],
        reason=r["reason"],
    )


async def _campaign(conn: asyncpg.Connection, request: web.Request) -> campaign_store.Campaign:
    cid = path_id(request, "campaign_id")
    campaign = await campaign_store.get(conn, cid)
    if campaign is None:
        raise not_found(f"campaign {cid}")
    return campaign


async def _stages(conn: asyncpg.Connection, c: campaign_store.Campaign) -> list[R.ReportStageOut]:
    counts = await campaign_store.stage_counts(conn, c.id)
    health: dict[int, dict[str, int]] = {}
    for r in await health_store.stage_rows(conn, c.id):
        health.setdefault(r["stage"], {})[r["verdict"]] = r["n"]
    return [
        R.ReportStageOut(
            stage=i + 1,
            size=str(s["size"]),
            soak=soak_of(s),
            devices=counts[i].total if i in counts else 0,
            states=dict(counts[i].by_state) if i in counts else {},
            health=health.get(i, {}),
        )
        for i, s in enumerate(c.stages)
    ]


@api.route(
    "GET",
    "/campaigns/{campaign_id}/report",
    role="viewer",
    tag="campaigns",
    summary="The campaign's report: per stage, and per device with its health",
    query=R.ReportQuery,
    responses={200: (R.ReportOut, "the report (a page of devices)"), 404: (None, "unknown")},
)
async def campaign_report(request: web.Request) -> web.Response:
    """Each device: start, finish, version before and after, health verdict and
    signals, failure code. Devices in id order; ``next`` pages on."""
    q: R.ReportQuery = query_of(request, R.ReportQuery)
    async with services(request).pool.acquire() as conn:
        c = await _campaign(conn, request)
        rows = await health_store.report_rows(conn, c.id, after=q.after, limit=q.limit)
        stages = await _stages(conn, c)
    return json_out(
        R.ReportOut(
            campaign=c.id,
            name=c.name,
            status=c.status,
            statusReason=c.status_reason,
            stages=stages,
            devices=[_device(r) for r in rows],
            next=rows[-1]["device_id"] if len(rows) == q.limit else None,
        )
    )


@api.route(
    "GET",
    "/campaigns/{campaign_id}/report.csv",
    role="viewer",
    tag="campaigns",
    summary="The campaign's report per device, as a CSV download",
    responses={200: (None, "text/csv, one row per device"), 404: (None, "unknown")},
)
async def campaign_report_csv(request: web.Request) -> web.StreamResponse:
    """Columns: device, stage, state, rollback, started, finished, version_before,
    version_after, health, soak_started, soak_finished, signals, tripped, note,
    failure_code, fault_code, reason."""
    async with services(request).pool.acquire() as conn:
        c = await _campaign(conn, request)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="campaign-{c.id}-report.csv"',
            }
        )
        await response.prepare(request)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(report_csv.COLUMNS)
        after: str | None = None
        while True:
            rows = await health_store.report_rows(conn, c.id, after=after, limit=CSV_PAGE)
            for r in rows:
                writer.writerow(report_csv.row(_device(r).model_dump(mode="json")))
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
            if len(rows) < CSV_PAGE:
                break
            after = rows[-1]["device_id"]
    await response.write_eof()
    return response
