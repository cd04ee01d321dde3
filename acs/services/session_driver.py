"""One live CWMP session on the ACS: the pure session machine plus the device's work.

The driver owns what the ACS does between HTTP exchanges: record what the CPE
said, then pick the next request from the device's work — discovery first
when the tree is unknown, then its queued tasks in order. Each piece of work
is an RPC plan (acs.core.plans); every CPE response is written to the store
before the plan sees it, so a crash mid-session loses at most the exchange
in flight, and the task it belonged to goes back to pending.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from acs.config import Settings
from acs.core import policies as policy_rules
from acs.core import tasks as task_rules
from acs.core import transfers as transfer_rules
from acs.core.plans import Plan, PlanFault, discover, root_of
from acs.core.secrets import mask_document
from acs.core.session_log import QUIET_EVENTS, Transcript, elided, is_quiet
from acs.core.times import rfc3339_or_none
from acs.cwmp import messages as m
from acs.cwmp.session import AcsSession
from acs.logs import log
from acs.metrics import Metrics
from acs.services import backups, cpe_requests, diagnostics, provisioning, rollout, transfer_jobs
from acs.services import events as notify
from acs.services import software as software_svc
from acs.services.sealing_key import sealer
from acs.services.session_ends import LOG_REFUSED, SessionEnds
from acs.services.session_opens import SessionOpens
from acs.store import campaigns as campaign_store
from acs.store import credentials, devices, files, nat, session_logs, sessions
from acs.store import tasks as task_store
from acs.store import transfers as transfer_store

logger = logging.getLogger("acs.cwmp")

# Packed bytes of held GetParameterNames/Values answers (devices.PendingReads)
# past which they are written before the plan ends: a discovery of a ~1,400-entry
# tree holds about 30 KB and is written once; only a tree of tens of thousands
# of entries (or a CPE answering without end) is written in parts
READ_BUFFER_LIMIT = 1 << 20

# What we answer to a CPE's GetRPCMethods: the ACS methods we implement.
ACS_RPC_METHODS = [
    "Inform",
    "GetRPCMethods",
    "TransferComplete",
    "AutonomousTransferComplete",
    "RequestDownload",
    "Kicked",
    "DUStateChangeComplete",
    "AutonomousDUStateChangeComplete",
]


# the session log's reason for a session ended by its device's new Inform
SUPERSEDED = "superseded by a new Inform of the device"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Work:
    """The plan in progress and what it belongs to (a task, or discovery)."""

    plan: Plan
    task: task_store.Task | None = None
    label: str = ""
    outstanding: m.Message | None = None
    # GetParameterNames/Values answers not yet written, packed: a discovery's
    # names and values go to the tree in one write when the plan ends
    reads: devices.PendingReads = field(default_factory=devices.PendingReads)
    policy_run: provisioning.SessionRun | None = None
    # a diagnostics job whose results this plan reads (8 DIAGNOSTICS COMPLETE); it
    # stays waiting, not requeued, if the session dies before they are read
    diagnostics: task_store.Task | None = None


@dataclass(slots=True)
class LiveSession:
    session_id: str
    device_id: str
    remote: str | None
    acs: AcsSession
    root: str
    needs_discovery: bool
    may_have_tasks: bool
    # the device is in an unfinished firmware campaign: a Download may be due,
    # or one in flight is to be verified when the session ends
    in_campaign: bool = False
    campaign_member: bool = False
    events: list[str] = field(default_factory=list)
    # the device is new to this ACS (its data model never learned): first
    # contact, whether or not it said 0 BOOTSTRAP
    first_contact: bool = False
    policies_checked: bool = False
    diagnostics_checked: bool = False
    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    busy: int = 0  # requests of this session being handled now (never reaped then)
    transports: set[Any] = field(default_factory=set)  # the connections it came on
    last_renewal: float = field(default_factory=time.monotonic)
    work: Work | None = None
    rpcs_sent: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # RPC name -> times sent
    tasks_done: int = 0
    cpe_faults: int = 0
    policies_applied: list[str] = field(default_factory=list)
    # for the session's one log line: what the Inform said and who presented it
    cwmp_version: str | None = None
    cert: str | None = None
    # jobs put off in this session (transient CPE fault): not again before it ends
    deferred: list[int] = field(default_factory=list)
    # every message in and out, masked, written once when the session ends;
    # None when session logs are off (ACS_SESSION_LOG_PER_DEVICE=0)
    transcript: Transcript | None = None
    # the CPE username that authenticated the Inform (None: authentication off); a
    # cookie-less request on a new connection joins the session only as that user
    username: str | None = None
    # a DU state change was reported: re-read SoftwareModules. in this session
    refresh_software: bool = False

    @property
    def policy_events(self) -> list[str]:
        """The events the policies go by: a first contact is a bootstrap too."""
        return policy_rules.session_events(self.events, self.first_contact)

    @property
    def bootstrap(self) -> bool:
        """A bootstrap session for the policies: once they ran, later ones are not."""
        return policy_rules.BOOTSTRAP in self.policy_events


class SessionDriver:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.pool = pool
        # secrets the CPE reports or the ACS sets are sealed before they are stored
        self.sealer = sealer(settings)
        self.policies = provisioning.PolicyBook(sealer=self.sealer)
        self.metrics = metrics or Metrics()
        # quiet sessions' ends written together (None: each alone, ACS_SESSION_END_BATCH_MS=0)
        self.ends = (
            SessionEnds(
                pool,
                settings.session_log_per_device,
                settings.session_end_batch_ms / 1000,
                settings.session_end_batch_max,
            )
            if settings.session_end_batch_ms > 0
            else None
        )
        # periodic Informs that change nothing opened together (None: each alone)
        self.opens = (
            SessionOpens(
                pool,
                settings.session_timeout_s,
                settings.session_open_batch_ms / 1000,
                settings.session_open_batch_max,
            )
            if settings.session_open_batch_max > 1
            else None
        )

    # ------------------------------------------------------------ CPE requests

    async def open(self, record: devices.InformRecord, session_id: str) -> sessions.Opened | None:
        """Store the Inform and take the device's session lease; None while another
        session of the device holds it (the CPE gets 8005 and retries).

        A known device with its lease free costs one round trip and no
        transaction; on first contact the device is created and
        ``device.registered`` raised in the same transaction."""
        # a secret in an Inform (a value change the CPE was told to report) is sealed
        record.parameters = self.sealer.seal_values(record.device_id, record.parameters)
        # only a periodic Inform may change nothing: any other event is recorded
        if self.opens is not None and frozenset(record.events) == QUIET_EVENTS:
            opened = await self.opens.open(record, session_id)
            if opened is not None:
                return opened
        ttl = self.settings.session_timeout_s
        async with self.pool.acquire() as conn:
            opened = await sessions.open_session(conn, record, session_id, ttl)
            if opened is None:  # first contact, or another session holds the lease
                async with conn.transaction():
                    opened = await self._open_the_long_way(conn, record, session_id)
        return opened

    async def _open_the_long_way(
        self, conn: asyncpg.Connection, record: devices.InformRecord, session_id: str
    ) -> sessions.Opened | None:
        """Create the device on first contact, then take its lease; None if it is held."""
        dev_id, ttl = record.device_id, self.settings.session_timeout_s
        try:
            locked = await sessions.acquire_session(conn, dev_id, session_id, ttl)
        except LookupError:  # first contact: create the device, then lock it
            device, is_new = await devices.upsert_from_inform(conn, record)
            if is_new:
                await notify.device_registered(conn, device)
            locked = await sessions.acquire_session(conn, dev_id, session_id, ttl)
        if not locked:
            return None
        await devices.upsert_from_inform(conn, record)
        requeued = await task_store.requeue_running(conn, dev_id)
        if policy_rules.BOOTSTRAP in record.events:
            owed = await sessions.owe_bootstrap(conn, dev_id)
        else:
            owed = await sessions.bootstrap_owed(conn, dev_id)
        return sessions.Opened(
            may_have_tasks=requeued > 0 or await task_store.has_pending(conn, dev_id),
            in_campaign=await campaign_store.has_open_work(conn, dev_id),
            tree_unknown=await devices.tree_is_empty(conn, dev_id),
            bootstrap_owed=owed,
        )

    async def answer_cpe_request(self, live: LiveSession, request: m.Message) -> m.Message:
        """The ACS's answer to one of the CPE's own requests."""
        if isinstance(request, m.TransferComplete):
            await self._transfer_complete(live, request)
            return m.TransferCompleteResponse()
        answered = await cpe_requests.answer(
            self.pool, self.settings, live.device_id, live.root, request
        )
        if answered is not None:  # RequestDownload, Kicked, AutonomousTransferComplete
            live.may_have_tasks = live.may_have_tasks or answered.queued
            return answered.response
        if isinstance(request, m.GetRPCMethods):
            return m.GetRPCMethodsResponse(method_list=list(ACS_RPC_METHODS))
        if isinstance(request, m.DUStateChangeComplete | m.AutonomousDUStateChangeComplete):
            await self._du_state_changed(live, request)
            return (
                m.DUStateChangeCompleteResponse()
                if isinstance(request, m.DUStateChangeComplete)
                else m.AutonomousDUStateChangeCompleteResponse()
            )
        log(
            logger,
            logging.WARNING,
            "cpe_request_refused",
            device=live.device_id,
            method=request.element_name,
            reason="not an ACS method",
        )
        return m.Fault(8000, f"Method not supported: {request.element_name}")

    async def _transfer_complete(self, live: LiveSession, tc: m.TransferComplete) -> None:
        """Close the Download/Upload job this CommandKey belongs to, if it is ours."""
        outcome: dict[str, Any] = {
            "commandKey": tc.command_key,
            "faultCode": tc.fault.fault_code,
            "faultString": tc.fault.fault_string,
            "startTime": rfc3339_or_none(tc.start_time),
            "completeTime": rfc3339_or_none(tc.complete_time),
        }
        log(
            logger,
            logging.DEBUG,
            "transfer_complete",
            device=live.device_id,
            command_key=tc.command_key,
            fault=tc.fault.fault_code or None,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            task = await task_store.find_awaiting_transfer(conn, live.device_id, tc.command_key)
            if task is None:
                if not tc.fault.fault_code and await rollout.late_transfer_complete(
                    conn, live.device_id, tc.command_key, outcome
                ):
                    live.campaign_member = True  # verified when the session ends
                return
            result = dict(task.result or {})
            result.pop("awaitingTransferComplete", None)
            result["transferComplete"] = outcome
            if tc.fault.fault_code:
                code, string = tc.fault.fault_code, tc.fault.fault_string
                await task_store.mark_fault(conn, task.id, code, string, result)
                await notify.fault_raised(conn, task, code, string)
                await notify.job_closed(conn, task, fault_code=code, fault_string=string)
            else:
                await task_store.mark_done(conn, task.id, result)
                task.status = "done"
                await rollout.transfer_complete(conn, live.device_id, task)
                await notify.job_closed(conn, task)
        self.metrics.job_finished("fault" if tc.fault.fault_code else "done")

    async def _du_state_changed(
        self,
        live: LiveSession,
        report: m.DUStateChangeComplete | m.AutonomousDUStateChangeComplete,
    ) -> None:
        """Close the changeDUState job (or keep a device event); refresh the inventory."""
        async with self.pool.acquire() as conn, conn.transaction():
            if isinstance(report, m.DUStateChangeComplete):
                closed, _job = await software_svc.du_state_change_complete(
                    conn, live.device_id, report
                )
            else:
                await software_svc.autonomous_du_state_change_complete(conn, live.device_id, report)
                closed = "event"
        if closed != "event":
            live.tasks_done += 1
            self.metrics.job_finished(closed)
        live.refresh_software = True

    # ------------------------------------------------------------ ACS requests

    async def next_request(self, live: LiveSession, response: m.Message | None) -> m.Message | None:
        """Record ``response`` (to our last request), then choose what to send next.

        None means there is nothing more to do: end the session.
        """
        if response is not None and live.work is not None:
            request = live.work.outstanding
            assert request is not None
            await self._record(live, request, response)
            return await self._advance(live, response)
        return await self._advance(live, None)

    async def _advance(self, live: LiveSession, response: m.Message | None) -> m.Message | None:
        while True:
            if live.work is None:
                live.work = await self._next_work(live)
                if live.work is None:
                    return None
                response = None
            work = live.work
            try:
                request = next(work.plan) if response is None else work.plan.send(response)
            except StopIteration as done:
                await self._finish(live, work, done.value or {}, None)
                live.work, response = None, None
                continue
            except PlanFault as fault:
                await self._finish(live, work, None, fault)
                live.work, response = None, None
                continue
            except Exception as err:
                if work.policy_run is None:
                    raise
                # the engine is pure: what breaks it is operator data, which must
                # fault the policies, not end the device's session in a 500
                log(logger, logging.ERROR, "policy_engine_failed", device=live.device_id, error=err)
                fault = PlanFault(8002, f"internal error applying the policies: {err!r}")
                await self._finish(live, work, None, fault)
                live.work, response = None, None
                continue
            work.outstanding = request
            live.rpcs_sent += 1
            live.sent[request.rpc] += 1
            self.metrics.rpc_sent(request.rpc)
            return request

    async def _next_work(self, live: LiveSession) -> Work | None:
        """Discovery when the tree is unknown, then the operator's jobs, then the
        provisioning policies, then what a firmware campaign owes the device."""
        if live.needs_discovery:
            live.needs_discovery = False
            log(logger, logging.DEBUG, "discovery_started", device=live.device_id, root=live.root)
            plan = discover(
                live.root, self.settings.gpv_batch_size, batch_bytes=self.settings.gpv_batch_bytes
            )
            if transfer_rules.asks_rpc_methods(live.acs.cwmp_ns):
                plan = transfer_rules.with_rpc_methods(plan)  # for campaigns' transfer: auto
            return Work(plan, label="discovery")
        if not live.diagnostics_checked and diagnostics.COMPLETE_EVENT in live.events:
            live.diagnostics_checked = True  # results first: a second test may be queued
            found = await diagnostics.read_work(self.pool, live.device_id)
            if found is not None:
                return Work(found[1], label="diagnostics", diagnostics=found[0])
        if live.refresh_software:
            live.refresh_software = False
            subtree = live.root + "SoftwareModules."
            plan = discover(
                subtree, self.settings.gpv_batch_size, batch_bytes=self.settings.gpv_batch_bytes
            )
            return Work(plan, label="software")
        if live.may_have_tasks:
            work = await self._next_task(live)
            if work is not None:
                return work
        if not live.policies_checked:
            live.policies_checked = True
            events = live.policy_events
            if self.policies.surely_nothing_for(events, now()):
                await self._bootstrap_settled(live)
                return await self._campaign_work(live)
            unusable = False
            try:
                async with self.pool.acquire() as conn:
                    found = await provisioning.session_plan(
                        conn,
                        self.policies,
                        live.device_id,
                        live.root,
                        events,
                        now(),
                        self.settings.gpv_batch_size,
                        self.sealer,
                    )
            except provisioning.OPERATOR_DATA_ERRORS as err:
                # the session's other work goes on without the policies; a bootstrap
                # stays owed, for the session after the operator's fix
                log(logger, logging.ERROR, "policies_unusable", device=live.device_id, error=err)
                found, unusable = None, True
            if found is not None:
                plan, run = found
                return Work(plan, label="policies", policy_run=run)
            if not unusable:
                await self._bootstrap_settled(live)
        return await self._campaign_work(live)

    async def _bootstrap_settled(self, live: LiveSession) -> None:
        """A bootstrap session's policies had nothing to do: later sessions are not bootstraps."""
        if live.bootstrap:
            async with self.pool.acquire() as conn:
                await sessions.bootstrap_settled(conn, live.device_id)

    async def _campaign_work(self, live: LiveSession) -> Work | None:
        """The Download a firmware campaign owes the device, once per session."""
        if live.in_campaign:
            live.in_campaign = False  # once per session
            async with self.pool.acquire() as conn, conn.transaction():
                queued = await rollout.queue_download(conn, live.device_id)
            if queued is not None:
                live.may_have_tasks = True
                return await self._next_work(live)
        return None

    async def _next_task(self, live: LiveSession) -> Work | None:
        async with self.pool.acquire() as conn, conn.transaction():
            task = await task_store.next_pending(conn, live.device_id, live.deferred)
            while (
                task is not None
                and task.name == "diagnostics"
                and await diagnostics.busy(conn, live.device_id)
            ):
                live.deferred.append(task.id)  # one test at a time: this one waits its turn
                task = await task_store.next_pending(conn, live.device_id, live.deferred)
            if task is None:
                live.may_have_tasks = False
                return None
            await task_store.mark_running(conn, task.id, live.session_id)
            types: dict[str, str] = {}
            if task.name in task_rules.NEEDS_TYPES:
                params = await devices.get_parameters(conn, live.device_id)
                types = {k: v.xsd_type for k, v in params.items() if v.xsd_type}
            # the clear values of secrets exist only in the RPC built from these
            args: dict[str, Any] | None = self.sealer.open_args(task.args)
            missing: str | None = None  # a changeDUState's Install of a file gone since
            refused = ""
            if backups.needs_grant(task.name, task.args):  # a config backup or restore
                args, refused = await backups.grant_args(
                    conn, self.settings, self.sealer, task, args
                )
            elif task.name in ("download", "scheduleDownload") and not task.args.get("url"):
                args = await self._resolve_file(conn, args)
            elif task.name == "changeDUState" and args is not None:
                resolved = await software_svc.resolve_files(conn, self.settings, args)
                missing, args = (resolved, None) if isinstance(resolved, str) else (None, resolved)
        try:
            if args is None:
                named = missing or task.args.get("fileName") or task.args.get("file")
                raise task_rules.InvalidTask(refused or f"unknown file {named!r}")
            if task.name == "changeDUState":
                why = task_rules.software.unsupported(live.cwmp_version)
                if why is not None:  # never sent: no schema of its version has the RPC
                    raise task_rules.InvalidTask(why, code=9000)
            too_new = transfer_rules.refused_by_namespace(task.name, live.acs.cwmp_ns)
            if too_new is not None:
                raise task_rules.InvalidTask(too_new, code=9000)
            plan = task_rules.plan_for(
                task.id,
                task.name,
                args,
                type_of=types.get,
                batch_size=self.settings.gpv_batch_size,
                root=live.root,
                # attempts counts the sessions that took the job before this one;
                # restarts those whose attempt was given back (the CPE restarted),
                # which may have accepted a transfer all the same
                sent_before=task.attempts > 0 or task.restarts > 0,
            )
        except task_rules.InvalidTask as bad:
            reason = bad.reason + "".join(f"; {e['path']}: {e['message']}" for e in bad.errors)
            async with self.pool.acquire() as conn, conn.transaction():
                await task_store.mark_fault(conn, task.id, bad.code, reason)
                await notify.job_closed(conn, task, fault_code=bad.code, fault_string=reason)
            self.metrics.job_finished("fault")
            return await self._next_task(live)
        log(
            logger,
            logging.DEBUG,
            "task_started",
            device=live.device_id,
            task=task.id,
            name=task.name,
        )
        return Work(plan, task=task, label=task.name)

    async def _resolve_file(
        self, conn: asyncpg.Connection, args: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A download by file name: our file server's URL, the file's size, its credentials.

        Resolved when the job runs, so the job row never holds the password.
        """
        name = args.get("fileName") or args.get("file")
        record = await files.get_file(conn, str(name)) if name else None
        if record is None:
            return None
        resolved = {k: v for k, v in args.items() if k not in ("fileName", "file")}
        resolved["url"] = self.settings.files_base_url + record.name
        resolved["fileSize"] = record.size
        resolved.setdefault("fileType", record.file_type)
        if self.settings.files_username and self.settings.files_password:
            resolved["username"] = self.settings.files_username
            resolved["password"] = self.settings.files_password
        return resolved

    async def _finish(
        self, live: LiveSession, work: Work, result: dict[str, Any] | None, fault: PlanFault | None
    ) -> None:
        await self.flush_reads(live, work)
        if work.policy_run is not None:
            await self._policies_done(live, work.policy_run, result, fault)
            return
        if work.diagnostics is not None:
            await diagnostics.record(self.pool, self.metrics, work.diagnostics, result, fault)
            return
        task = work.task
        if task is None:
            log(
                logger,
                logging.DEBUG,
                "discovery_finished",
                device=live.device_id,
                **({"fault": fault.code} if fault else (result or {}) | {"values": None}),
            )
            return
        async with self.pool.acquire() as conn, conn.transaction():
            if fault is None and diagnostics.waits(result):
                assert result is not None
                await diagnostics.park(conn, task, result)
            elif fault is None and result and result.get("status") == 1 and "commandKey" in result:
                # accepted, finishes later: TransferComplete (DUStateChangeComplete for
                # a ChangeDUState; the plan says which) or the timeout closes it
                awaits = "awaiting" + result.pop("awaits", "TransferComplete")
                await task_store.await_transfer(
                    conn, task.id, result["commandKey"], result | {awaits: True}
                )
                log(
                    logger,
                    logging.DEBUG,
                    "task_awaiting_transfer",
                    device=live.device_id,
                    task=task.id,
                    command_key=result["commandKey"],
                )
            elif fault is None:
                result = await transfer_jobs.job_done(conn, live.device_id, task, result or {})
                # a job's result is for operators: a password the CPE read back is masked
                await task_store.mark_done(conn, task.id, mask_document(result))
                await notify.job_closed(conn, task)
                live.tasks_done += 1
                self.metrics.job_finished("done")
                log(
                    logger,
                    logging.DEBUG,
                    "task_done",
                    device=live.device_id,
                    task=task.id,
                    name=task.name,
                )
            elif (
                fault.code in task_rules.TRANSIENT_CPE_FAULTS
                and task.attempts + 1 < self.settings.max_task_attempts
            ):
                # a busy CPE: try again in a later session, backing off
                delay = min(3600.0, self.settings.task_retry_base_s * 2**task.attempts)
                await task_store.defer(conn, task.id, delay, f"{fault.code} {fault.string}")
                await notify.fault_raised(
                    conn, task, fault.code, fault.string, detail=fault.detail, retrying=True
                )
                live.deferred.append(task.id)
                log(
                    logger,
                    logging.DEBUG,
                    "task_deferred",
                    device=live.device_id,
                    task=task.id,
                    fault=fault.code,
                    retry_in_s=delay,
                )
            else:
                await task_store.mark_fault(
                    conn, task.id, fault.code, fault.string, fault.detail or None
                )
                self.metrics.job_finished("fault")
                code, string = fault.code, fault.string
                await notify.fault_raised(conn, task, code, string, detail=fault.detail)
                await notify.job_closed(conn, task, fault_code=code, fault_string=string)
                log(
                    logger,
                    logging.DEBUG,
                    "task_fault",
                    device=live.device_id,
                    task=task.id,
                    name=task.name,
                    fault=fault.code,
                    reason=fault.string,
                )

    async def _policies_done(
        self,
        live: LiveSession,
        run: provisioning.SessionRun,
        result: dict[str, Any] | None,
        fault: PlanFault | None,
    ) -> None:
        outcome = result or {}
        if fault is not None:  # a refusal the plan could not handle (it handles most)
            outcome = {
                "faults": [
                    {
                        "policy": p.policy.id,
                        "name": p.row.name,
                        "path": "",
                        "reason": f"{fault.code} {fault.string}",
                    }
                    for p in run.applied
                ]
            }
        async with self.pool.acquire() as conn, conn.transaction():
            if await provisioning.record(conn, run, outcome, now()):
                live.may_have_tasks = True  # a policy's file: download it in this session
            # ran to its end, faults and all (they are in the results): a session cut
            # before here leaves the bootstrap owed to the next one
            if live.bootstrap:
                await sessions.bootstrap_settled(conn, run.device_id)
        live.policies_applied.extend(p.row.name for p in run.applied)
        log(
            logger,
            logging.DEBUG,
            "policies_applied",
            device=live.device_id,
            policies=",".join(p.row.name for p in run.applied) or None,
            set=len(outcome.get("set", {})),
            faults=len(outcome.get("faults", [])),
            rounds=outcome.get("rounds"),
        )

    async def _record(self, live: LiveSession, request: m.Message, response: m.Message) -> None:
        """Write what a response teaches us about the device into its stored tree."""
        if isinstance(response, m.Fault):
            live.cpe_faults += 1
            self.metrics.cpe_fault(request.rpc, response.fault_code)
            log(
                logger,
                logging.DEBUG,
                "cpe_fault",
                device=live.device_id,
                method=request.rpc,
                fault=response.fault_code,
                reason=response.fault_string,
            )
            return
        work = live.work
        assert work is not None
        if isinstance(response, m.GetParameterNamesResponse):
            assert isinstance(request, m.GetParameterNames)
            work.reads.add_names(
                request.parameter_path, request.next_level, response.parameter_list
            )
            if work.reads.size >= READ_BUFFER_LIMIT:
                await self.flush_reads(live, work)
            return
        if isinstance(response, m.GetParameterValuesResponse):
            # sealed now: a held secret is never in clear, even in memory
            work.reads.add_values(self.sealer.seal_values(live.device_id, response.parameter_list))
            if work.reads.size >= READ_BUFFER_LIMIT:
                await self.flush_reads(live, work)
            return
        await self.flush_reads(live, work)  # keep reads and writes in the CPE's order
        at = now()
        dev = live.device_id
        async with self.pool.acquire() as conn, conn.transaction():
            if isinstance(response, m.GetParameterAttributesResponse):
                await devices.merge_parameter_attributes(conn, dev, response.parameter_list, at)
            elif isinstance(response, m.GetRPCMethodsResponse):  # for campaigns' transfer: auto
                await transfer_store.remember_rpc_methods(conn, dev, list(response.method_list))
            elif isinstance(response, m.SetParameterValuesResponse):
                assert isinstance(request, m.SetParameterValues)
                values = self.sealer.seal_values(dev, request.parameter_list)
                await devices.merge_parameter_values(conn, dev, values, at)
                if any(
                    v.name.endswith(credentials.CONNECTION_REQUEST_PARAMETERS)
                    for v in request.parameter_list
                ):
                    await credentials.remember_connection_request_credentials(conn, dev, live.root)
                names = [v.name for v in request.parameter_list]
                if any(n.endswith(nat.STUN_CREDENTIAL_PARAMETERS) for n in names):
                    await nat.remember_stun_credentials(conn, dev, live.root)
            elif isinstance(response, m.AddObjectResponse):
                assert isinstance(request, m.AddObject)
                await devices.add_object_instance(
                    conn, dev, request.object_name, response.instance_number, at
                )
            elif isinstance(response, m.DeleteObjectResponse):
                assert isinstance(request, m.DeleteObject)
                await devices.delete_object(conn, dev, request.object_name)
            elif isinstance(response, m.SetParameterAttributesResponse):
                assert isinstance(request, m.SetParameterAttributes)
                changed = [
                    m.ParameterAttributeStruct(s.name, s.notification, s.access_list)
                    for s in request.parameter_list
                    if s.notification_change
                ]
                if changed:
                    await devices.merge_parameter_attributes(conn, dev, changed, at)

    async def flush_reads(self, live: LiveSession, work: Work) -> None:
        """Write the held names and values in the order they came, as one tree write."""
        if not work.reads:
            return
        held = work.reads.take()
        async with self.pool.acquire() as conn, conn.transaction():
            await devices.merge_pending_reads(conn, live.device_id, held, now())

    # ------------------------------------------------------------ lifecycle

    async def keep_lock(self, live: LiveSession) -> bool:
        """Renew the device lock when a third of its lease is gone; False if we lost it."""
        t = time.monotonic()
        live.last_activity = t
        if t - live.last_renewal < self.settings.session_timeout_s / 3:
            return True
        live.last_renewal = t
        async with self.pool.acquire() as conn:
            return await sessions.renew_session(
                conn, live.device_id, live.session_id, self.settings.session_timeout_s
            )

    async def lease_holder(self, device_id: str) -> str | None:
        """The session holding the device's lease now (None: free)."""
        async with self.pool.acquire() as conn:
            return await sessions.lease_holder(conn, device_id)

    async def close(
        self, live: LiveSession, *, abandoned: bool, reason: str = "", superseded: bool = False
    ) -> None:
        """End a session: give the device lock back; an abandoned one requeues its job.

        ``superseded``: the device's new Inform proved this session dead (the CPE
        restarted); its job in flight goes back without spending the attempt."""
        if abandoned:
            live.acs.abandon()
        task = live.work.task if abandoned and live.work is not None else None
        record = self._log_record(live, abandoned, reason)
        given_up = False
        if task is None and record is not None and record.elided is not None and self.ends:
            # a quiet session: its log row and lock go with other sessions' ends
            if not await self._end_quietly(record):
                async with self.pool.acquire() as conn:
                    await sessions.release_session(conn, live.device_id, live.session_id)
        elif task is None:
            async with self.pool.acquire() as conn:
                # the session log and the lock in one statement
                if not await self._insert_log(conn, record, release_lock=True):
                    await sessions.release_session(conn, live.device_id, live.session_id)
        else:
            given_up = await self._give_back(live, task, record, superseded, reason)
        if given_up:
            self.metrics.job_finished("fault")
        if live.campaign_member:
            # verify what this session showed: TransferComplete, the version after a boot
            async with self.pool.acquire() as conn:
                await rollout.settle_device(conn, live.device_id)
        log(
            logger,
            logging.INFO if not abandoned else logging.WARNING,
            "session",
            device=live.device_id,
            session=live.session_id,
            remote=live.remote,
            events=",".join(live.events),
            cwmp=live.cwmp_version,
            rpcs=live.rpcs_sent,
            sent=",".join(
                name if count == 1 else f"{name}:{count}" for name, count in live.sent.items()
            )
            or None,
            tasks=live.tasks_done,
            cpe_faults=live.cpe_faults or None,
            policies=",".join(live.policies_applied) or None,
            outcome="abandoned" if abandoned else "completed",
            reason=reason or None,
            duration_ms=round((time.monotonic() - live.started) * 1000),
            cert=live.cert,
        )

    async def _give_back(
        self,
        live: LiveSession,
        task: task_store.Task,
        record: session_logs.NewSessionLog | None,
        superseded: bool,
        reason: str,
    ) -> bool:
        """An abandoned session's job back in the queue (or given up: True), its lock
        released, then its log."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                refunded = superseded and await task_store.refund_attempt(
                    conn, live.device_id, live.session_id, self.settings.max_task_attempts
                )
                given_up = not refunded and task.attempts + 1 >= self.settings.max_task_attempts
                if given_up:
                    # the CPE went away in the middle of this job every time: give up
                    why = (
                        f"timeout: the CPE did not answer in {task.attempts + 1} "
                        f"sessions ({reason or 'session abandoned'})"
                    )
                    await task_store.give_up(conn, task.id, why)
                    await notify.job_closed(conn, task, fault_string=why)
                else:
                    await task_store.requeue_running(conn, live.device_id)
                await sessions.release_session(conn, live.device_id, live.session_id)
            await self._insert_log(conn, record)
        return given_up

    def _log_record(
        self, live: LiveSession, abandoned: bool, reason: str
    ) -> session_logs.NewSessionLog | None:
        """The session's log row (taken from the session: written at most once); None
        when logging is off. A quiet periodic session's carries its messages
        without bodies too (ACS_SESSION_LOG_BODIES)."""
        transcript, live.transcript = live.transcript, None
        if transcript is None:
            return None
        quiet = (
            not abandoned
            and self.settings.session_log_bodies == "eventful"
            and live.rpcs_sent == 0
            and live.tasks_done == 0
            and live.cpe_faults == 0
            and not live.policies_applied
            and not transcript.truncated
            and is_quiet(transcript.events, transcript.messages)
        )
        return session_logs.NewSessionLog(
            device_id=live.device_id,
            session_key=live.session_id,
            started_at=transcript.started_at,
            ended_at=now(),
            outcome="abandoned" if abandoned else "completed",
            reason=reason or None,
            events=transcript.events,
            remote_address=live.remote,
            message_count=transcript.message_count,
            stored_bytes=transcript.stored_bytes,
            truncated=transcript.truncated,
            messages=transcript.messages,
            elided=elided(transcript.messages) if quiet else None,
            full_tag=self.settings.session_log_full_tag if quiet else None,
        )

    async def _insert_log(
        self,
        conn: asyncpg.Connection,
        record: session_logs.NewSessionLog | None,
        release_lock: bool = False,
    ) -> bool:
        """One INSERT per session (with ``release_lock``, the lock's release too);
        True when it was written. A failure here is logged, never raised: the
        session's own work is already committed and must not be undone by it."""
        if record is None:
            return False
        try:
            await session_logs.insert(
                conn, record, self.settings.session_log_per_device, release_lock=release_lock
            )
        except LOG_REFUSED as exc:
            # e.g. the device was deleted while its session ran
            log(logger, logging.WARNING, "session_log_failed", device=record.device_id, error=exc)
            return False
        return True

    async def _end_quietly(self, record: session_logs.NewSessionLog) -> bool:
        """A quiet session's log row and lock release, batched with others' (True:
        both written); a failure is logged as _insert_log's is."""
        assert self.ends is not None
        try:
            return await self.ends.end(record)
        except LOG_REFUSED as exc:
            log(logger, logging.WARNING, "session_log_failed", device=record.device_id, error=exc)
            return False


def root_for(inform: m.Inform) -> str:
    return root_of([p.name for p in inform.parameter_list])
