"""Diagnostics jobs across their two sessions (acs.core.diagnostics for the rules).

The session driver calls in at three points: when the first session's plan
returns (``park``: the job waits for 8 DIAGNOSTICS COMPLETE), when a session
opens with that event (``read_work``: the plan that reads the results), and
when that plan ends (``record``). ``expire`` is the periodic tick that ends a
test whose results never came. One test per device at a time: ``busy`` holds a
second diagnostics job back while one is waiting (TR-143 objects hold one
test's results; a second Requested would cancel the first).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from acs.core import diagnostics as rules
from acs.core.plans import Plan, PlanFault
from acs.core.secrets import mask_document
from acs.logs import log
from acs.metrics import Metrics
from acs.services import events as notify
from acs.services import jobs
from acs.store import diagnostics as store
from acs.store import tasks as task_store

logger = logging.getLogger("acs.diagnostics")

COMPLETE_EVENT = rules.COMPLETE_EVENT


def waits(result: dict[str, Any] | None) -> bool:
    """Whether a finished first-session plan left the job waiting for its results."""
    return bool(result and result.get("awaitingDiagnosticsComplete"))


async def park(conn: asyncpg.Connection, task: task_store.Task, result: dict[str, Any]) -> None:
    await store.park(conn, task.id, result)
    log(logger, logging.DEBUG, "diagnostics_requested", device=task.device_id, task=task.id)


async def busy(conn: asyncpg.Connection, device_id: str) -> bool:
    return await store.busy(conn, device_id)


async def read_work(pool: asyncpg.Pool, device_id: str) -> tuple[task_store.Task, Plan] | None:
    """The waiting job of a device whose Inform said 8 DIAGNOSTICS COMPLETE, and the
    plan reading its results; None when no test of ours was waiting (one the
    user started on the CPE itself, or one that already timed out)."""
    async with pool.acquire() as conn:
        task = await store.waiting(conn, device_id)
    if task is None or not task.result or "object" not in task.result:
        return None
    return task, rules.read_plan(task.result)


async def record(
    pool: asyncpg.Pool,
    metrics: Metrics,
    task: task_store.Task,
    result: dict[str, Any] | None,
    fault: PlanFault | None,
) -> None:
    """Store the typed result, or fault the job: Error_* states with that state as
    the reason, a refused GetParameterValues with the CPE's fault code."""
    waiting = dict(task.result or {})
    waiting.pop("awaitingDiagnosticsComplete", None)
    if fault is None:
        outcome, failure = mask_document(result or {}), None
    elif isinstance(fault, rules.DiagnosticsFailed):
        outcome, failure = mask_document(fault.detail), (None, fault.string)
    else:
        outcome, failure = waiting, (fault.code, f"{fault.code} {fault.string}")
    async with pool.acquire() as conn, conn.transaction():
        if not await store.finish(conn, task.id, outcome, failure):
            return
        if failure is None:
            await notify.job_closed(conn, task)
        else:
            await notify.job_closed(conn, task, fault_code=failure[0], fault_string=failure[1])
    metrics.job_finished("done" if failure is None else "fault")
    log(
        logger,
        logging.DEBUG,
        "diagnostics_finished",
        device=task.device_id,
        task=task.id,
        state=outcome.get("diagnosticsState"),
        reason=None if failure is None else failure[1],
    )


async def expire(pool: asyncpg.Pool, timeout_s: float, metrics: Metrics | None = None) -> None:
    """The tick: end tests whose 8 DIAGNOSTICS COMPLETE never came."""
    await jobs.close_expired(
        pool,
        lambda conn: store.expire(conn, timeout_s),
        tick="expire_diagnostics",
        event="diagnostics_timeout",
        logger=logger,
        metrics=metrics,
    )


def tick_interval_s(timeout_s: float) -> float:
    """How often to look for timed-out tests: a quarter of the timeout, 1-60 s."""
    return max(1.0, min(60.0, timeout_s / 4))
