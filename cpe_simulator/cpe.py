"""One simulated CPE: its CWMP sessions, events, reboots and transfers.

A session follows TR-069 3.7 from the CPE's side, checked by the same
``Conversation`` state machine the ACS runs: Inform, the CPE's own requests
(TransferComplete), an empty POST, then one answer per ACS request until the
ACS answers empty. Events stay pending until an InformResponse acknowledges
them (TR-069 3.2.1), so a failed session repeats them, with RetryCount.

What the ACS asks that outlives the session (Reboot, FactoryReset, Download,
Upload, ScheduleInform) is queued and carried out after the session ends, as
a real CPE does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp

from acs.cwmp import messages as m
from acs.cwmp.session import Conversation, ProtocolError
from acs.cwmp.soap import CwmpParseError, Envelope, parse_envelope, serialize_envelope
from cpe_simulator import diagnostics, health_faults, scheduled
from cpe_simulator.faults import CpeFault
from cpe_simulator.firmware import BadImage, verify_image
from cpe_simulator.software import Package, SoftwareModules
from cpe_simulator.transfers import (
    Transfer,
    check_url,
    config_file,
    config_file_parameters,
    download,
    upload,
)
from cpe_simulator.tree import ParameterTree

if TYPE_CHECKING:
    from cpe_simulator.fleet import Fleet

logger = logging.getLogger("cpe_simulator")

CPE_RPCS = (
    "GetRPCMethods",
    "GetParameterNames",
    "GetParameterValues",
    "SetParameterValues",
    "GetParameterAttributes",
    "SetParameterAttributes",
    "AddObject",
    "DeleteObject",
    "Reboot",
    "FactoryReset",
    "Download",
    "Upload",
    "ScheduleInform",
    "GetQueuedTransfers",
    "GetAllQueuedTransfers",
    "CancelTransfer",
    "ChangeDUState",
    "ScheduleDownload",
)


class SessionFailed(Exception):
    """The session could not complete; the CPE retries with back-off."""


@dataclass(slots=True)
class SessionLog:
    started: float
    ok: bool
    reason: str = ""
    requests: list[str] = field(default_factory=list)


class SimulatedCpe:
    __slots__ = (
        "fleet",
        "tree",
        "profiles",
        "rng",
        "events",
        "retry_count",
        "cookie",
        "state",
        "transfers",
        "transfer_results",
        "after_session",
        "in_session",
        "sessions_ok",
        "sessions_failed",
        "last_session",
        "auth",
        "bootstrapped",
        "next_wakeup",
        "session_waiters",
        "firmware_before",
        "last_requests",
        "requests_seen",
        "reboots_owed",
        "du_reports",
        "local_du_installed",
        "cpe_requests",
        "cpe_answers",
        "silent",
    )

    def __init__(self, fleet: Fleet, tree: ParameterTree, profiles: frozenset[str]) -> None:
        self.fleet = fleet
        self.tree = tree
        self.profiles = profiles
        self.rng = random.Random(tree.identity.serial_number)
        # pending events in order, as (EventCode, CommandKey); an ordered set
        self.events: dict[tuple[str, str], None] = {}
        self.retry_count = 0
        self.cookie: str | None = None
        self.state = "down"  # down | up | bricked
        self.transfers: list[Transfer] = []
        self.transfer_results: list[m.TransferComplete] = []
        self.after_session: list[Callable[[], Any]] = []
        self.in_session = False
        self.sessions_ok = 0
        self.sessions_failed = 0
        self.last_session: SessionLog | None = None
        self.auth: aiohttp.DigestAuthMiddleware | None = None
        self.bootstrapped = False
        self.next_wakeup = 0.0
        self.session_waiters: list[asyncio.Future[None]] = []
        self.firmware_before: str | None = None
        self.last_requests: list[str] = []
        # every ACS request this CPE ever received, by RPC: what tests count across
        # sessions (a session cut after a request still counts it)
        self.requests_seen: Counter[str] = Counter()
        # CommandKeys of Reboots accepted and not yet carried out, in order
        self.reboots_owed: dict[str, None] = {}
        # DUStateChangeComplete / AutonomousDUStateChangeComplete not yet delivered
        self.du_reports: list[m.DUStateChangeComplete | m.AutonomousDUStateChangeComplete] = []
        self.local_du_installed = False
        # the CPE's own requests still to send (RequestDownload, Kicked, ...), and
        # each one sent with the ACS's answer, for tests to read
        self.cpe_requests: list[m.Message] = []
        self.cpe_answers: list[tuple[m.Message, m.Message]] = []
        # no more periodic Informs (the silent-after-upgrade profile)
        self.silent = False

    @property
    def serial(self) -> str:
        return self.tree.identity.serial_number

    def has(self, profile: str) -> bool:
        return profile in self.profiles

    # ------------------------------------------------------------ events

    def add_event(self, code: str, command_key: str = "") -> None:
        # TR-069 3.7.1.5: a numbered event appears once, with no CommandKey; an "M"
        # event once per CommandKey (two Downloads finishing -> two "M Download")
        key = command_key if code.startswith("M ") else ""
        self.events.setdefault((code, key), None)

    def power_on(self) -> None:
        """Boot: 0 BOOTSTRAP the first time (and after a factory reset), 1 BOOT always."""
        self.state = "up"
        self.tree.reboot()
        if not self.bootstrapped and not self.has("no-bootstrap"):
            self.add_event("0 BOOTSTRAP")
        self.add_event("1 BOOT")
        scheduled.ask_at_boot(self)

    # ------------------------------------------------------------ one session

    async def run_session(self) -> bool:
        """One CWMP session; True when it completed."""
        self.in_session = True
        log = SessionLog(time.monotonic(), False)
        try:
            await self._session(log)
            log.ok = True
        except SessionFailed as exc:
            log.reason = str(exc)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            log.reason = f"{type(exc).__name__}: {exc}"
        finally:
            self.in_session = False
            self.last_session = log
        if log.ok:
            self.sessions_ok += 1
            self.retry_count = 0
        elif not self.fleet.closing:  # sessions cut by the fleet's own stop are no failures
            self.sessions_failed += 1
            self.retry_count += 1
            self.fleet.count("session_failed", log.reason.split(":")[0])
            logger.debug("event=session_failed serial=%s reason=%r", self.serial, log.reason)
        for waiter in self.session_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.session_waiters.clear()
        if log.ok:
            actions, self.after_session = self.after_session, []
            for action in actions:
                await action()
            if self.has("autonomous-du") and not self.local_du_installed:
                self._install_local_module()
            if self.has("autonomous-transfer") and self.sessions_ok == 1:
                # after its first session the CPE takes an image on its own
                new = f"{self.tree.software_version}-local"
                scheduled.ask(self, scheduled.autonomous_firmware(self, new))
                self.fleet.wake(self)
        return log.ok

    async def _session(self, log: SessionLog) -> None:
        conv = Conversation()
        self.cookie = None
        inform = self._inform()
        sent = dict(self.events)
        conv.cpe_sends(inform)
        env = await self._exchange(inform, None)
        if env is None or not isinstance(env.body, m.InformResponse):
            raise SessionFailed(f"Inform answered with {_describe(env)}")
        self._acs_sends(conv, env.body)
        # the ACS has the events now (TR-069 3.2.1): they are delivered. Only those
        # the Inform carried: one raised meanwhile (a connection request arriving
        # during the exchange) waits for the next session.
        if ("0 BOOTSTRAP", "") in sent:
            self.bootstrapped = True
        for event in sent:
            self.events.pop(event, None)
        self.tree.take_value_changes()

        for tc in list(self.transfer_results):
            conv.cpe_sends(tc)
            env = await self._exchange(tc, None)
            if env is None or not isinstance(env.body, m.TransferCompleteResponse):
                raise SessionFailed(f"TransferComplete answered with {_describe(env)}")
            self._acs_sends(conv, env.body)
            self.transfer_results.remove(tc)

        for report in list(self.du_reports):
            conv.cpe_sends(report)
            env = await self._exchange(report, None)
            wanted = (
                m.DUStateChangeCompleteResponse
                if isinstance(report, m.DUStateChangeComplete)
                else m.AutonomousDUStateChangeCompleteResponse
            )
            if env is None or not isinstance(env.body, wanted):
                raise SessionFailed(f"{report.element_name} answered with {_describe(env)}")
            self._acs_sends(conv, env.body)
            self.du_reports.remove(report)
        for request in list(self.cpe_requests):  # TR-069 3.7.2.2: before the empty POST
            conv.cpe_sends(request)
            env = await self._exchange(request, None)
            if env is None:
                raise SessionFailed(f"{request.element_name} answered with an empty response")
            self._acs_sends(conv, env.body)
            self.cpe_requests.remove(request)
            self.cpe_answers.append((request, env.body))

        # a faulty device breaks about half of its sessions, at one of the first answers
        drop_at = self._fails_at("drop")
        garble_at = self._fails_at("http-error")
        if drop_at == -1:
            raise SessionFailed("drop: connection closed mid-session")
        conv.cpe_sends(None)
        # the POST whose response brings the request we drop at asks for the TCP
        # connection to close, so the ACS sees the connection die mid-session
        env = await self._exchange(None, None, close=drop_at == 0, garbled=garble_at == -1)
        self.last_requests = []
        while env is not None:
            request = env.body
            self._acs_sends(conv, request)
            log.requests.append(request.element_name)
            self.last_requests.append(request.element_name)
            self.requests_seen[request.element_name] += 1
            if len(log.requests) - 1 == drop_at:
                raise SessionFailed("drop: connection closed mid-session")
            answer = await self.answer(request)
            conv.cpe_sends(answer)
            garbled = len(log.requests) - 1 == garble_at
            close = len(log.requests) == drop_at
            env = await self._exchange(answer, env.cwmp_id, garbled=garbled, close=close)
        self._acs_sends(conv, None)

    def _fails_at(self, profile: str) -> int | None:
        """Where a faulty device breaks this session (about half of them): -1 at its
        empty POST, so that sessions without ACS requests fail too, else at the n-th
        answer; None when this session goes through."""
        if self.has(profile) and self.rng.random() < 0.5:
            return self.rng.randint(-1, 3)
        return None

    def _acs_sends(self, conv: Conversation, message: m.Message | None) -> None:
        try:
            conv.acs_sends(message)
        except ProtocolError as broken:
            self.fleet.count("acs_protocol_error", broken.reason)
            raise SessionFailed(f"ACS broke the session rules: {broken.reason}") from None

    def _inform(self) -> m.Inform:
        if self.tree.has_value_changes():
            self.add_event("4 VALUE CHANGE")
        ident = self.tree.identity
        return m.Inform(
            device_id=m.DeviceIdStruct(
                ident.manufacturer, ident.oui, ident.product_class, ident.serial_number
            ),
            events=[m.EventStruct(code, key) for code, key in self.events],
            max_envelopes=1,
            current_time=datetime.now(UTC),
            retry_count=self.retry_count,
            parameter_list=self.tree.inform_parameters(),
        )

    async def _exchange(
        self,
        message: m.Message | None,
        cwmp_id: str | None,
        *,
        garbled: bool = False,
        close: bool = False,
    ) -> Envelope | None:
        """POST one message (None: empty POST); the ACS's answer (None: empty, session over)."""
        if message is None:
            body = b""
        else:
            if cwmp_id is None:
                cwmp_id = f"{self.serial}-{self.rng.getrandbits(32):x}"
            envelope = Envelope(body=message, cwmp_id=cwmp_id, cwmp_ns=self.fleet.cwmp_ns)
            if isinstance(message, m.Inform) and self.fleet.config.cwmp_version == "1.4":
                envelope.supported_cwmp_versions = "1.0,1.1,1.2,1.3,1.4"
            body = serialize_envelope(envelope)
            if self.has("odd-prefixes"):
                body = odd_prefixes(body)
        if garbled:
            body = b"<garbage"
        if self.has("slow"):
            await asyncio.sleep(self.fleet.timing.slow_s)
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": ""}
        if self.cookie and not self.has("ignore-cookies"):
            headers["Cookie"] = self.cookie
        if close or self.has("new-connection"):
            # closed after the answer: the next POST comes on a new connection
            headers["Connection"] = "close"
        async with self.fleet.http_for(self).post(
            self.fleet.acs_url,
            data=body,
            headers=headers,
            middlewares=self.fleet.auth_for(self),
        ) as resp:
            data = await resp.read()
            status = resp.status
            for cookie in resp.headers.getall("Set-Cookie", []):
                self.cookie = cookie.split(";", 1)[0]
        self.fleet.count("http", str(status))
        if status == 204 or (status == 200 and not data.strip()):
            return None
        if status != 200:
            raise SessionFailed(f"HTTP {status}: {data[:120]!r}")
        try:
            env = parse_envelope(data)
        except CwmpParseError as bad:
            self.fleet.count("acs_bad_xml", bad.reason[:40])
            raise SessionFailed(f"unparseable ACS message: {bad.reason}") from None
        return env

    # ------------------------------------------------------------ answering the ACS

    async def answer(self, request: m.Message) -> m.Message:
        self.fleet.count("acs_rpc", request.element_name)
        try:
            return await self._answer(request)
        except CpeFault as fault:
            if fault.code == 9005 and self.has("slow-9005"):
                await asyncio.sleep(self.fleet.timing.slow_s)
            return m.Fault(fault.code, fault.string, list(fault.set_parameter_values_faults))

    async def _answer(self, r: m.Message) -> m.Message:
        tree = self.tree
        if isinstance(r, m.GetParameterNames):
            if self.has("reject-root-gpn") and r.parameter_path in ("", tree.root):
                raise CpeFault(9005)
            return m.GetParameterNamesResponse(
                tree.get_parameter_names(r.parameter_path, r.next_level)
            )
        if isinstance(r, m.GetParameterValues):
            if self.has("no-partial-gpv") and any(
                n == "" or n.endswith(".") for n in r.parameter_names
            ):
                raise CpeFault(9005, "Invalid parameter name: partial paths are not supported")
            return m.GetParameterValuesResponse(tree.get_parameter_values(r.parameter_names))
        if isinstance(r, m.SetParameterValues):
            status = tree.set_parameter_values(r.parameter_list, r.parameter_key)
            diagnostics.requested(self, r.parameter_list)  # tests run after the session
            return m.SetParameterValuesResponse(status)
        if isinstance(r, m.GetParameterAttributes):
            return m.GetParameterAttributesResponse(
                tree.get_parameter_attributes(r.parameter_names)
            )
        if isinstance(r, m.SetParameterAttributes):
            tree.set_parameter_attributes(r.parameter_list)
            return m.SetParameterAttributesResponse()
        if isinstance(r, m.AddObject):
            return m.AddObjectResponse(tree.add_object(r.object_name, r.parameter_key), 0)
        if isinstance(r, m.DeleteObject):
            tree.delete_object(r.object_name, r.parameter_key)
            return m.DeleteObjectResponse(0)
        if isinstance(r, m.GetRPCMethods):
            return m.GetRPCMethodsResponse(list(CPE_RPCS))
        if isinstance(r, m.Reboot):
            # A device owing two Reboots (one accepted in a session that then failed,
            # and the ACS asking again) restarts once and reports each CommandKey:
            # a reboot wipes whatever else was queued in RAM.
            if not self.reboots_owed:
                self.after_session.append(self._reboot_owed)
            self.reboots_owed[r.command_key] = None
            return m.RebootResponse()
        if isinstance(r, m.FactoryReset):
            self.after_session.append(self.factory_reset)
            return m.FactoryResetResponse()
        if isinstance(r, m.Download):
            return self._accept_transfer(
                r.command_key,
                True,
                r.file_type,
                r.url,
                r.username,
                r.password,
                r.file_size,
                r.target_file_name,
                r.delay_seconds,
            )
        if isinstance(r, m.Upload):
            return self._accept_transfer(
                r.command_key,
                False,
                r.file_type,
                r.url,
                r.username,
                r.password,
                0,
                "",
                r.delay_seconds,
            )
        if isinstance(r, m.ScheduleInform):
            self.fleet.schedule(
                self, r.delay_seconds, ("3 SCHEDULED", ""), ("M ScheduleInform", r.command_key)
            )
            return m.ScheduleInformResponse()
        if isinstance(r, m.ScheduleDownload):
            return scheduled.accept(self, r)
        if isinstance(r, m.GetQueuedTransfers):
            return m.GetQueuedTransfersResponse(
                [m.QueuedTransferStruct(t.command_key, t.state) for t in self.transfers]
            )
        if isinstance(r, m.GetAllQueuedTransfers):
            return m.GetAllQueuedTransfersResponse(
                [
                    m.AllQueuedTransferStruct(
                        t.command_key,
                        t.state,
                        t.is_download,
                        t.file_type,
                        t.file_size,
                        t.target_file_name,
                    )
                    for t in self.transfers
                ]
            )
        if isinstance(r, m.ChangeDUState):
            return self._accept_du_change(r)
        if isinstance(r, m.CancelTransfer):
            for t in self.transfers:
                if t.command_key == r.command_key:
                    if t.state != 1:
                        raise CpeFault(9021)
                    self.transfers.remove(t)
                    return m.CancelTransferResponse()
            raise CpeFault(9003, "Invalid arguments: no such transfer")
        raise CpeFault(9000)

    def _accept_transfer(
        self,
        command_key: str,
        is_download: bool,
        file_type: str,
        url: str,
        username: str,
        password: str,
        size: int,
        target: str,
        delay: int,
    ) -> m.Message:
        check_url(url)
        transfer = Transfer(
            command_key, is_download, file_type, url, username, password, size, target
        )
        self.transfers.append(transfer)

        async def start_later() -> None:
            # an awaitable, like every after-session action: a plain call returning
            # None made the session loop crash there and skip the actions after it
            self.fleet.later(max(delay, 0), self.run_transfer(transfer))

        self.after_session.append(start_later)
        if is_download:
            return m.DownloadResponse(status=1)
        return m.UploadResponse(status=1)

    def _accept_du_change(self, r: m.ChangeDUState) -> m.Message:
        """Accepted in the session, carried out after it (TR-069 A.4.2.1)."""
        modules = SoftwareModules(self.tree)
        if not modules.supported:
            raise CpeFault(9000)
        if not r.operations:
            raise CpeFault(9003, "Invalid arguments: no operations")

        async def run() -> None:
            report = await modules.execute(self.fleet.http, r)
            self.du_reports.append(report)
            self.add_event("11 DU STATE CHANGE COMPLETE")
            self.add_event("M ChangeDUState", r.command_key)
            self.fleet.count("du_change", "ok" if _all_ok(report) else "fault")
            self.fleet.wake(self)

        async def start_later() -> None:
            self.fleet.later(0, run())

        self.after_session.append(start_later)
        return m.ChangeDUStateResponse()

    def _install_local_module(self) -> None:
        """The autonomous-du profile: a module installed on the device itself,
        reported with AutonomousDUStateChangeComplete (TR-069 A.3.3.3)."""
        modules = SoftwareModules(self.tree)
        self.local_du_installed = True
        if not modules.supported:
            return
        self.du_reports.append(modules.install_local(Package("local-tools", "1.0", ("shell",))))
        self.add_event("12 AUTONOMOUS DU STATE CHANGE COMPLETE")
        self.fleet.wake(self)

    # ------------------------------------------------------------ after the session

    async def reboot(self, *events: tuple[str, str]) -> None:
        self.state = "down"
        if self.has("brick"):
            self.state = "bricked"
            self.fleet.count("bricked", "reboot")
            return
        await asyncio.sleep(self.fleet.timing.reboot_s)
        self.power_on()
        for code, key in events:
            self.add_event(code, key)
        self.fleet.wake(self)

    async def _reboot_owed(self) -> None:
        keys, self.reboots_owed = list(self.reboots_owed), {}
        await self.reboot(*(("M Reboot", key) for key in keys))

    async def factory_reset(self) -> None:
        self.tree.factory_reset()
        self.bootstrapped = False
        await self.reboot()

    async def run_transfer(self, t: Transfer) -> None:
        if t not in self.transfers:
            return  # cancelled meanwhile
        t.state = 2
        start = datetime.now(UTC)
        fault = m.FaultStruct()
        new_version: str | None = None
        try:
            if t.is_download:
                data = await self._download(t)
                if t.file_type.startswith("1"):
                    new_version = verify_image(data)
                elif t.file_type.startswith("3"):
                    self._apply_config(data)
            else:
                await self._upload(t)
        except CpeFault as err:
            fault = m.FaultStruct(err.code, err.string)
        except BadImage as err:
            fault = m.FaultStruct(9018, f"File transfer failure: file corrupted ({err})")
        t.state = 3
        self.transfers.remove(t)
        tc = m.TransferComplete(t.command_key, fault, start, datetime.now(UTC))
        self.fleet.count("transfer", "ok" if not fault.fault_code else str(fault.fault_code))
        if new_version is not None and not fault.fault_code:
            await self._flash(new_version, tc, t.event or "M Download")
            return
        self.transfer_results.append(tc)
        if not self.has("tc-without-event"):
            self.add_event("7 TRANSFER COMPLETE")
        self.add_event(t.event or ("M Download" if t.is_download else "M Upload"), t.command_key)
        self.fleet.wake(self)

    async def _flash(self, version: str, tc: m.TransferComplete, event: str = "M Download") -> None:
        """Install and reboot; come back on the new version (or not, by profile)."""
        self.state = "down"
        if self.has("brick"):
            self.state = "bricked"
            self.fleet.count("bricked", "flash")
            return
        await asyncio.sleep(self.fleet.timing.reboot_s)
        if self.has("power-loss"):
            # power lost while writing flash: the old image boots, the transfer
            # state is gone with the RAM, so no TransferComplete is sent
            self.fleet.count("power_loss", "flash")
            self.power_on()
            self.fleet.wake(self)
            return
        self.firmware_before = self.tree.software_version
        self.tree.set_value_internal(f"{self.tree.root}DeviceInfo.SoftwareVersion", version)
        self.power_on()
        health_faults.after_upgrade(self)
        self.transfer_results.append(tc)
        if not self.has("tc-without-event"):
            self.add_event("7 TRANSFER COMPLETE")
        self.add_event(event, tc.command_key)
        self.fleet.wake(self)

    async def _download(self, t: Transfer) -> bytes:
        return await download(
            self.fleet.http,
            t,
            truncate=self.has("truncated-download"),
            corrupt=self.has("corrupt-download"),
        )

    async def _upload(self, t: Transfer) -> None:
        """A vendor configuration file (or log) of the device's own making."""
        await upload(self.fleet.http, t, config_file(self.tree))

    def _apply_config(self, data: bytes) -> None:
        """A vendor configuration file, applied all or nothing."""
        try:
            self.tree.set_parameter_values(config_file_parameters(data), "")
        except CpeFault as err:
            if err.code == 9018:
                raise
            raise CpeFault(
                9018, f"File transfer failure: configuration rejected ({err.string})"
            ) from None


def _all_ok(report: m.DUStateChangeComplete) -> bool:
    return not any(r.fault.fault_code for r in report.results)


def _describe(env: Envelope | None) -> str:
    if env is None:
        return "an empty response"
    if isinstance(env.body, m.Fault):
        return f"fault {env.body.fault_code} {env.body.fault_string}"
    return env.body.element_name


def odd_prefixes(body: bytes) -> bytes:
    """Like CPEs whose SOAP stack names things its own way: other prefixes, and the
    RPC element in a default namespace instead of a prefix."""
    body = body.replace(b"soap-env:", b"SOAP-ENV:").replace(b"xmlns:soap-env=", b"xmlns:SOAP-ENV=")
    body = body.replace(b"soap-enc:", b"SOAP-ENC:").replace(b"xmlns:soap-enc=", b"xmlns:SOAP-ENC=")
    start = body.find(b"<SOAP-ENV:Body><cwmp:")
    if start >= 0:
        name_start = start + len(b"<SOAP-ENV:Body><cwmp:")
        name_end = min(
            i
            for i in (
                body.find(b">", name_start),
                body.find(b" ", name_start),
                body.find(b"/", name_start),
            )
            if i > 0
        )
        name = body[name_start:name_end]
        ns_at = body.find(b'xmlns:cwmp="')
        ns = body[ns_at + 12 : body.find(b'"', ns_at + 12)]
        body = (
            body[:start]
            + b"<SOAP-ENV:Body><"
            + name
            + b' xmlns="'
            + ns
            + b'"'
            + body[name_end:].replace(b"</cwmp:" + name + b">", b"</" + name + b">", 1)
        )
    return body
