"""ScheduleDownload as a CPE carries it out (TR-069 A.4.1.8), and the CPE's own
requests (RequestDownload, Kicked, AutonomousTransferComplete) its fault
profiles make it send.

A scheduled download waits for its first usable TimeWindow, counted from the
moment the RPC arrived, and starts there:

- ``1 At Any Time`` and ``2 Immediately``: at the window's start (the CPE may
  pick any moment inside; starting at once is the simplest choice and the one
  a test can check against the window);
- ``3 When Idle``: at the window's start once no session is running;
- ``4 Confirmation Needed``: the simulated CPE has no user to confirm, so the
  window passes unused.

When no window is left, the CPE reports TransferComplete with fault 9020
("Unable to complete download within specified time windows"). A transfer
cancelled meanwhile (CancelTransfer) is simply dropped.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from acs.cwmp import messages as m
from cpe_simulator.faults import CpeFault, fault_string
from cpe_simulator.transfers import Transfer, check_url

if TYPE_CHECKING:
    from cpe_simulator.cpe import SimulatedCpe

EVENT = "M ScheduleDownload"
MODES = ("1 At Any Time", "2 Immediately", "3 When Idle", "4 Confirmation Needed")


def accept(cpe: SimulatedCpe, r: m.ScheduleDownload) -> m.ScheduleDownloadResponse:
    """Queue the transfer (state 1 until its window); refuse what cannot be done."""
    check_url(r.url)
    windows = r.time_window_list
    if not 1 <= len(windows) <= 2:
        raise CpeFault(9003, "Invalid arguments: one or two TimeWindows")
    for w in windows:
        if w.window_end <= w.window_start:
            raise CpeFault(9003, "Invalid arguments: WindowEnd before WindowStart")
        if w.window_mode not in MODES and not w.window_mode.startswith("X "):
            raise CpeFault(9003, f"Invalid arguments: WindowMode {w.window_mode!r}")
    if len(windows) == 2 and windows[1].window_start < windows[0].window_end:
        raise CpeFault(9003, "Invalid arguments: TimeWindows overlap")
    t = Transfer(
        r.command_key,
        True,
        r.file_type,
        r.url,
        r.username,
        r.password,
        r.file_size,
        r.target_file_name,
        event=EVENT,
    )
    cpe.transfers.append(t)
    accepted = time.monotonic()

    async def start_waiting() -> None:
        cpe.fleet.spawn(run(cpe, t, list(windows), accepted))

    cpe.after_session.append(start_waiting)
    return m.ScheduleDownloadResponse()


async def run(
    cpe: SimulatedCpe, t: Transfer, windows: list[m.TimeWindowStruct], accepted: float
) -> None:
    for w in windows:
        opens, closes = accepted + w.window_start, accepted + w.window_end
        if w.window_mode == "4 Confirmation Needed" or time.monotonic() >= closes:
            continue
        await asyncio.sleep(max(0.0, opens - time.monotonic()))
        if w.window_mode == "3 When Idle":
            if cpe.in_session and not await _idle_before(cpe, closes):
                continue
        if t not in cpe.transfers:
            return  # cancelled while it waited
        await cpe.run_transfer(t)
        return
    if t in cpe.transfers:
        give_up(cpe, t, 9020)


async def _idle_before(cpe: SimulatedCpe, closes: float) -> bool:
    """Wait for the running session to end; False if the window closes first."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cpe.session_waiters.append(waiter)
    try:
        await asyncio.wait_for(waiter, timeout=max(0.0, closes - time.monotonic()))
    except TimeoutError:
        return False
    return time.monotonic() < closes


def give_up(cpe: SimulatedCpe, t: Transfer, code: int) -> None:
    """TransferComplete with ``code``, the transfer never started."""
    cpe.transfers.remove(t)
    now = datetime.now(UTC)
    cpe.transfer_results.append(
        m.TransferComplete(t.command_key, m.FaultStruct(code, fault_string(code)), now, now)
    )
    cpe.fleet.count("transfer", str(code))
    cpe.add_event("7 TRANSFER COMPLETE")
    cpe.add_event(t.event, t.command_key)
    cpe.fleet.wake(cpe)


# ------------------------------------------------------------ the CPE's own requests


# TR-069 3.7.1.5: the Inform event each request comes with
_EVENTS = {
    "RequestDownload": "9 REQUEST DOWNLOAD",
    "Kicked": "5 KICKED",
    "AutonomousTransferComplete": "10 AUTONOMOUS TRANSFER COMPLETE",
}


def ask(cpe: SimulatedCpe, request: m.Message) -> None:
    """Send ``request`` in the next session, with its Inform event."""
    cpe.cpe_requests.append(request)
    cpe.add_event(_EVENTS[request.rpc])


def ask_at_boot(cpe: SimulatedCpe) -> None:
    """What the CPE's fault profiles make it ask after each boot."""
    if cpe.has("request-download"):
        ask(cpe, m.RequestDownload("1 Firmware Upgrade Image"))
    if cpe.has("kicked"):
        ask(
            cpe,
            m.Kicked(
                command="reset",
                referer="http://192.168.1.1/portal",
                arg="",
                next="http://192.168.1.1/portal/done",
            ),
        )


def autonomous_firmware(cpe: SimulatedCpe, version: str) -> m.AutonomousTransferComplete:
    """The CPE took an image on its own (a LAN-side upgrade): it runs ``version`` now,
    and an AutonomousTransferComplete says so."""
    start = datetime.now(UTC)
    cpe.tree.set_value_internal(f"{cpe.tree.root}DeviceInfo.SoftwareVersion", version)
    return m.AutonomousTransferComplete(
        announce_url="",
        transfer_url=f"http://192.168.1.10/images/{version}.img",
        is_download=True,
        file_type="1 Firmware Upgrade Image",
        file_size=0,
        target_file_name="",
        fault=m.FaultStruct(),
        start_time=start,
        complete_time=datetime.now(UTC),
    )
