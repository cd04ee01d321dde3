"""A transfer job taken again after a session that died asks the CPE's queue first."""

from __future__ import annotations

from typing import Any

from acs.core.tasks import plan_for
from acs.cwmp import messages as m

ARGS = {"url": "http://files/fw.bin", "fileType": "1 Firmware Upgrade Image", "commandKey": "ck-1"}


def plan(name: str = "download", sent_before: bool = True, **args: Any) -> Any:
    return plan_for(
        7,
        name,
        args or ARGS,
        type_of=lambda _p: None,
        batch_size=100,
        root="Device.",
        sent_before=sent_before,
    )


def finish(p: Any, response: m.Message) -> dict[str, Any]:
    try:
        p.send(response)
    except StopIteration as done:
        return dict(done.value)
    raise AssertionError("the plan asked for more")


def queued(*keys: str) -> m.GetAllQueuedTransfersResponse:
    return m.GetAllQueuedTransfersResponse(
        [m.AllQueuedTransferStruct(k, 1, True, "1 Firmware Upgrade Image", 0, "") for k in keys]
    )


def test_first_attempt_sends_the_download_at_once() -> None:
    p = plan(sent_before=False)
    assert isinstance(next(p), m.Download)


def test_transfer_the_cpe_already_holds_is_adopted_not_sent_again() -> None:
    p = plan()
    assert isinstance(next(p), m.GetAllQueuedTransfers)
    result = finish(p, queued("other", "ck-1"))
    assert result["commandKey"] == "ck-1" and result["status"] == 1 and result["adopted"]


def test_transfer_missing_from_the_queue_is_sent() -> None:
    p = plan()
    assert isinstance(next(p), m.GetAllQueuedTransfers)
    sent = p.send(queued("other"))
    assert isinstance(sent, m.Download) and sent.command_key == "ck-1"
    assert finish(p, m.DownloadResponse(status=1))["status"] == 1


def test_cpe_without_the_optional_rpc_gets_the_download_again() -> None:
    p = plan()
    next(p)
    sent = p.send(m.Fault(9000, "Method not supported"))
    assert isinstance(sent, m.Download)


def test_upload_uses_its_task_command_key() -> None:
    p = plan("upload", url="http://files/up", fileType="1 Vendor Configuration File")
    assert isinstance(next(p), m.GetAllQueuedTransfers)
    queue = m.GetAllQueuedTransfersResponse(
        [m.AllQueuedTransferStruct("task-7", 2, False, "1 Vendor Configuration File", 0, "")]
    )
    assert finish(p, queue)["adopted"]


def test_other_jobs_are_not_affected() -> None:
    p = plan("reboot", sent_before=True, commandKey="r")
    assert isinstance(next(p), m.Reboot)
