"""Software modules: what the ACS does with a CPE's DU state reports.

DUStateChangeComplete closes the ``changeDUState`` job its CommandKey belongs
to, with each operation's result; one no job owns, and every
AutonomousDUStateChangeComplete (a module the device installed or removed on
its own), is kept as a device event. Either way the device's modules changed,
so the session re-reads its SoftwareModules subtree (the caller's part).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from acs.config import Settings
from acs.core import software as rules
from acs.cwmp import messages as m
from acs.logs import log
from acs.services import events as notify
from acs.store import device_events, devices, files
from acs.store import tasks as task_store

logger = logging.getLogger("acs.cwmp")


async def du_state_change_complete(
    conn: asyncpg.Connection, device_id: str, report: m.DUStateChangeComplete
) -> tuple[str, int | None]:
    """Close the job or record the event, in the caller's transaction.

    Returns ("done" | "fault" | "event", the job's id or None)."""
    results = [rules.op_result(r) for r in report.results]
    task = await task_store.find_awaiting_transfer(
        conn, device_id, report.command_key, rules.AWAITS, ("changeDUState",)
    )
    if task is None:
        # a CommandKey no job of ours has: another ACS's, or a job already closed
        # (its timeout came first); the support desk still sees what happened
        await device_events.record(
            conn,
            device_id,
            "DUStateChangeComplete",
            {"commandKey": report.command_key, "results": results},
        )
        log(
            logger,
            logging.INFO,
            "du_state_change_unowned",
            device=device_id,
            command_key=report.command_key,
        )
        return "event", None
    result = dict(task.result or {})
    result.pop("awaiting" + rules.AWAITS, None)
    result.pop("awaits", None)
    result["results"] = results
    failed = rules.outcome(results)
    if failed is None:
        await task_store.mark_done(conn, task.id, result)
        await notify.job_closed(conn, task)
        return "done", task.id
    code, string = failed
    await task_store.mark_fault(conn, task.id, code, string, result)
    await notify.fault_raised(conn, task, code, string)
    await notify.job_closed(conn, task, fault_code=code, fault_string=string)
    return "fault", task.id


async def autonomous_du_state_change_complete(
    conn: asyncpg.Connection, device_id: str, report: m.AutonomousDUStateChangeComplete
) -> None:
    await device_events.record(
        conn,
        device_id,
        "AutonomousDUStateChangeComplete",
        {"results": [rules.op_result(r) for r in report.results]},
    )


async def resolve_files(
    conn: asyncpg.Connection, settings: Settings, args: dict[str, Any]
) -> dict[str, Any] | str:
    """A changeDUState's Installs by file name, given the file server's URL and
    credentials; resolved when the job runs, so the job row never holds the
    file server's password. The unknown file's name when one is gone."""
    urls: dict[str, str | None] = {}
    for name, _path in rules.files_of(args):
        record = await files.get_file(conn, name)
        urls[name] = None if record is None else settings.files_base_url + record.name
    return rules.resolve_files(
        args, urls.get, settings.files_username or "", settings.files_password or ""
    )


async def inventory(conn: asyncpg.Connection, device_id: str) -> dict[str, Any] | None:
    """The device's deployment and execution units as its stored tree has them;
    None for an unknown device."""
    device = await devices.get_device(conn, device_id)
    if device is None:
        return None
    found: dict[str, Any] = {"modules": [], "executionEnvironments": []}
    for root in ("Device.", "InternetGatewayDevice."):
        params = await devices.get_parameters(conn, device_id, f"{root}SoftwareModules.")
        if params:
            found = rules.inventory(root, ((k, v.value) for k, v in params.items()))
            break
    return found
