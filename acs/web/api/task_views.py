"""A job as the API shows it: its arguments, result and fault with secrets masked.

Its own module because several route modules answer with jobs (the job routes,
the overview's latest faults) and none of them should import another.
"""

from __future__ import annotations

from acs.connreq.http import ConnectionRequestResult
from acs.core import fault_causes
from acs.core.secrets import mask_document
from acs.store import tasks as task_store
from acs.web.api import models as M


def task_out(t: task_store.Task, cr: ConnectionRequestResult | None = None) -> M.TaskOut:
    fault = None
    if t.status == "fault" or t.fault_string:
        message = mask_document(t.fault_string)
        fault = {
            "code": t.fault_code,
            "message": message,
            # the reason in words: a 9003 names the parameters that caused it
            "cause": fault_causes.cause(t.fault_code, message, t.result),
        }
    args = mask_document(t.args)
    return M.TaskOut(
        id=t.id,
        device=t.device_id,
        name=t.name,
        args=args,
        status=t.status,  # type: ignore[arg-type]
        created=t.created_at,
        notBefore=t.not_before,
        expires=t.expires_at,
        uniqueKey=t.unique_key,
        attempts=t.attempts,
        started=t.started_at,
        finished=t.finished_at,
        result=mask_document(t.result),
        fault=fault,
        connectionRequest=None
        if cr is None
        else {
            "ok": cr.ok,
            "status": cr.status,
            "reason": cr.reason,
            "elapsedS": cr.elapsed_s,
            "channel": cr.channel,  # which one brought the device (http, udp, xmpp)
            "channels": cr.channels,
        },
    )
