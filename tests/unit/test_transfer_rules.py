"""Scheduled downloads and transfer management: validation, plans, the campaign
window, and the simulator's side of TimeWindows."""

from __future__ import annotations

import time
from typing import Any

import pytest

from acs.core import tasks, transfers
from acs.cwmp import messages as m
from cpe_simulator import scheduled
from tests.unit.test_sim_runtime import make_cpe

NS = "urn:dslforum-org:cwmp-1-"


def sd(**kw: Any) -> dict[str, Any]:
    return {"url": "http://acs/f.bin", "timeWindows": [{"windowStart": 0, "windowEnd": 60}]} | kw


def test_valid_schedule_download_and_its_plan() -> None:
    args = sd(
        timeWindows=[
            {"windowStart": 10, "windowEnd": 70, "windowMode": "2 Immediately"},
            {
                "windowStart": 70,
                "windowEnd": 3600,
                "windowMode": "X 00D09E Night",
                "userMessage": "ok?",
                "maxRetries": -1,
            },
        ],
        commandKey="k1",
    )
    plan = tasks.plan_for(
        7, "scheduleDownload", args, type_of=lambda _p: None, batch_size=10, root="Device."
    )
    rpc = next(plan)
    assert isinstance(rpc, m.ScheduleDownload) and rpc.command_key == "k1"
    assert [
        (w.window_start, w.window_end, w.window_mode, w.max_retries) for w in rpc.time_window_list
    ] == [
        (10, 70, "2 Immediately", 0),
        (70, 3600, "X 00D09E Night", -1),
    ]
    with pytest.raises(StopIteration) as done:
        plan.send(m.ScheduleDownloadResponse())
    # status 1: the session driver keeps the job open for TransferComplete, and the
    # timeout counts from the last window's end
    assert done.value.value == {"commandKey": "k1", "status": 1, "windowEndS": 3600}
    assert transfers.last_window_end(args) == 3600
    assert tasks.file_of("scheduleDownload", {"fileName": "fw.bin", "timeWindows": []}) == "fw.bin"


@pytest.mark.parametrize(
    ("windows", "says"),
    [
        ([], "at least 1"),
        ([{"windowStart": 5, "windowEnd": 5}], "greater than windowStart"),
        ([{"windowStart": 9, "windowEnd": 5}], "greater than windowStart"),
        ([{"windowStart": 0, "windowEnd": 60}, {"windowStart": 59, "windowEnd": 90}], "overlap"),
        ([{"windowStart": 100, "windowEnd": 160}, {"windowStart": 0, "windowEnd": 60}], "overlap"),
        ([{"windowStart": i * 10, "windowEnd": i * 10 + 5} for i in range(3)], "at most 2"),
        ([{"windowStart": 0, "windowEnd": 5, "windowMode": "5 Later"}], "pattern"),
        ([{"windowStart": 0, "windowEnd": 5, "maxRetries": -2}], "greater than or equal"),
        ([{"windowStart": 0, "windowEnd": 2**32}], "less than or equal"),
    ],
)
def test_bad_windows_are_refused_with_the_field(windows: list[Any], says: str) -> None:
    with pytest.raises(tasks.InvalidTask) as bad:
        tasks.validate_task("scheduleDownload", sd(timeWindows=windows))
    assert any(says in e["message"] for e in bad.value.errors), bad.value.errors


def test_one_source_and_cancel_needs_a_command_key() -> None:
    with pytest.raises(tasks.InvalidTask):
        tasks.validate_task("scheduleDownload", sd(fileName="fw.bin"))
    with pytest.raises(tasks.InvalidTask) as bad:
        tasks.validate_task("cancelTransfer", {})
    assert bad.value.errors[0]["path"] == "commandKey"


def test_queue_plans_return_the_cpes_queue() -> None:
    plan = tasks.plan_for(
        1, "getAllQueuedTransfers", {}, type_of=lambda _p: None, batch_size=1, root="Device."
    )
    assert isinstance(next(plan), m.GetAllQueuedTransfers)
    with pytest.raises(StopIteration) as done:
        plan.send(
            m.GetAllQueuedTransfersResponse(
                [m.AllQueuedTransferStruct("a", 1, True, "1 Firmware Upgrade Image", 9, "")]
            )
        )
    assert done.value.value["transfers"][0] == {
        "commandKey": "a",
        "state": 1,
        "isDownload": True,
        "fileType": "1 Firmware Upgrade Image",
        "fileSize": 9,
        "targetFileName": "",
    }
    cancel = tasks.plan_for(
        1,
        "cancelTransfer",
        {"commandKey": "a"},
        type_of=lambda _p: None,
        batch_size=1,
        root="Device.",
    )
    assert next(cancel) == m.CancelTransfer("a")
    with pytest.raises(tasks.PlanFault) as refused:
        cancel.send(
            m.Fault(9021, "Cancelation of file transfer not permitted in current transfer state")
        )
    assert refused.value.code == 9021


def test_rpcs_newer_than_the_cpes_namespace_are_not_sent() -> None:
    assert "cwmp-1-0" in (transfers.refused_by_namespace("scheduleDownload", NS + "0") or "")
    assert transfers.refused_by_namespace("cancelTransfer", NS + "1") is not None
    assert transfers.refused_by_namespace("getAllQueuedTransfers", NS + "0") is not None
    assert transfers.refused_by_namespace("getAllQueuedTransfers", NS + "1") is None
    assert transfers.refused_by_namespace("scheduleDownload", NS + "2") is None
    assert transfers.refused_by_namespace("getQueuedTransfers", NS + "0") is None
    assert transfers.refused_by_namespace("download", NS + "0") is None


def test_campaign_window_is_the_rest_of_the_maintenance_window_capped() -> None:
    assert transfers.campaign_window(None, 3600) is None  # no window bounds the campaign
    assert transfers.campaign_window(30, 3600) is None  # too little left: a Download
    assert transfers.campaign_window(900.7, 3600) == {
        "windowStart": 0,
        "windowEnd": 900,
        "windowMode": "1 At Any Time",
    }
    assert transfers.campaign_window(7200, 3600)["windowEnd"] == 1800  # type: ignore[index]


# ------------------------------------------------------------------ the simulator's side


def schedule(cpe: Any, *windows: m.TimeWindowStruct) -> m.Message:
    return m.ScheduleDownload(
        "s1", "1 Firmware Upgrade Image", "http://127.0.0.1:9/f", time_window_list=list(windows)
    )


async def test_simulator_refuses_bad_windows_with_9003() -> None:
    cpe = make_cpe()
    for windows in (
        [],
        [m.TimeWindowStruct(5, 5, "1 At Any Time")],
        [m.TimeWindowStruct(0, 60, "1 At Any Time"), m.TimeWindowStruct(30, 90, "1 At Any Time")],
        [m.TimeWindowStruct(0, 60, "7 Sometime")],
    ):
        answer = await cpe.answer(schedule(cpe, *windows))
        assert isinstance(answer, m.Fault) and answer.fault_code == 9003, windows
    assert cpe.transfers == []
    ftp = m.ScheduleDownload(
        "s",
        "1 Firmware Upgrade Image",
        "ftp://x/f",
        time_window_list=[m.TimeWindowStruct(0, 5, "1 At Any Time")],
    )
    answer = await cpe.answer(ftp)
    assert isinstance(answer, m.Fault) and answer.fault_code == 9013


async def test_simulator_queues_then_fails_9020_when_no_window_can_be_used() -> None:
    cpe = make_cpe()
    cpe.power_on()
    window = m.TimeWindowStruct(0, 60, "4 Confirmation Needed", "Upgrade?")
    assert isinstance(await cpe.answer(schedule(cpe, window)), m.ScheduleDownloadResponse)
    listed = await cpe.answer(m.GetQueuedTransfers())
    assert isinstance(listed, m.GetQueuedTransfersResponse)
    assert [(t.command_key, t.state) for t in listed.transfer_list] == [("s1", 1)]
    # nobody confirms on a simulated CPE: the only window passes unused
    await scheduled.run(cpe, cpe.transfers[0], [window], time.monotonic())
    assert cpe.transfers == []
    (tc,) = cpe.transfer_results
    assert tc.command_key == "s1" and tc.fault.fault_code == 9020
    assert ("M ScheduleDownload", "s1") in cpe.events and ("7 TRANSFER COMPLETE", "") in cpe.events


async def test_simulator_window_already_over_and_when_idle_behind_a_session() -> None:
    cpe = make_cpe()
    cpe.power_on()
    window = m.TimeWindowStruct(0, 5, "1 At Any Time")
    await cpe.answer(schedule(cpe, window))
    await scheduled.run(cpe, cpe.transfers[0], [window], time.monotonic() - 10)
    assert cpe.transfer_results[-1].fault.fault_code == 9020

    idle = m.TimeWindowStruct(0, 1, "3 When Idle")
    await cpe.answer(schedule(cpe, idle))
    cpe.in_session = True  # a session that outlasts the window
    await scheduled.run(cpe, cpe.transfers[0], [idle], time.monotonic())
    assert cpe.transfer_results[-1].fault.fault_code == 9020 and cpe.transfers == []


async def test_simulator_drops_a_cancelled_scheduled_transfer() -> None:
    cpe = make_cpe()
    window = m.TimeWindowStruct(0, 5, "2 Immediately")
    await cpe.answer(schedule(cpe, window))
    t = cpe.transfers[0]
    assert isinstance(await cpe.answer(m.CancelTransfer("s1")), m.CancelTransferResponse)
    await scheduled.run(cpe, t, [window], time.monotonic())
    assert cpe.transfer_results == [] and cpe.transfers == []


def test_profiles_queue_the_cpes_own_requests_with_their_events() -> None:
    cpe = make_cpe(frozenset({"request-download", "kicked"}))
    cpe.power_on()
    assert [r.rpc for r in cpe.cpe_requests] == ["RequestDownload", "Kicked"]
    assert ("9 REQUEST DOWNLOAD", "") in cpe.events and ("5 KICKED", "") in cpe.events
    plain = make_cpe()
    plain.power_on()
    assert plain.cpe_requests == []


def test_a_resent_schedule_download_is_adopted_with_its_window_end() -> None:
    args = sd(timeWindows=[{"windowStart": 0, "windowEnd": 900}], commandKey="again")
    plan = tasks.plan_for(
        3,
        "scheduleDownload",
        args,
        type_of=lambda _p: None,
        batch_size=1,
        root="Device.",
        sent_before=True,
    )
    assert isinstance(next(plan), m.GetAllQueuedTransfers)
    queue = [m.AllQueuedTransferStruct("again", 1, True, "1 Firmware Upgrade Image", 0, "")]
    with pytest.raises(StopIteration) as done:
        plan.send(m.GetAllQueuedTransfersResponse(queue))
    assert done.value.value["adopted"] is True and done.value.value["windowEndS"] == 900
    # not in the CPE's queue: sent again
    plan = tasks.plan_for(
        3,
        "scheduleDownload",
        args,
        type_of=lambda _p: None,
        batch_size=1,
        root="Device.",
        sent_before=True,
    )
    next(plan)
    assert isinstance(plan.send(m.GetAllQueuedTransfersResponse([])), m.ScheduleDownload)


def test_discovery_of_a_cwmp_1_2_cpe_ends_with_get_rpc_methods() -> None:
    from acs.core.plans import discover

    assert transfers.asks_rpc_methods(NS + "2") and not transfers.asks_rpc_methods(NS + "0")
    plan = transfers.with_rpc_methods(discover("Device.", 10))
    rpc = next(plan)
    assert isinstance(rpc, m.GetParameterValues | m.GetParameterNames)
    while not isinstance(rpc, m.GetRPCMethods):
        if isinstance(rpc, m.GetParameterNames):
            rpc = plan.send(m.GetParameterNamesResponse([]))
        else:
            rpc = plan.send(m.GetParameterValuesResponse([]))
    with pytest.raises(StopIteration) as done:
        plan.send(m.GetRPCMethodsResponse(["GetRPCMethods", "ScheduleDownload"]))
    assert done.value.value["rpcMethods"] == 2
