"""Event hooks: the event types, the document a hook receives, its signature,
and when a failed delivery is tried again. No I/O here."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from acs.core.secrets import mask_document
from acs.core.times import rfc3339

DEVICE_REGISTERED = "device.registered"
JOB_FINISHED = "job.finished"
JOB_FAULTED = "job.faulted"
CAMPAIGN_STATE_CHANGED = "campaign.state_changed"
FAULT_RAISED = "fault.raised"
# a health soak gate of a campaign stage decided (acs.services.soak)
CAMPAIGN_HEALTH_GATE = "campaign.health_gate"

EVENT_TYPES = (
    DEVICE_REGISTERED,
    JOB_FINISHED,
    JOB_FAULTED,
    CAMPAIGN_STATE_CHANGED,
    FAULT_RAISED,
    CAMPAIGN_HEALTH_GATE,
)

SIGNATURE_HEADER = "X-ACS-Signature"
EVENT_HEADER = "X-ACS-Event"
DELIVERY_HEADER = "X-ACS-Delivery"

MAX_RETRY_DELAY_S = 3600.0


def envelope(event_type: str, data: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    """The document every hook of this event receives; ``id`` is the same for all
    of them and for every retry, so a receiver can drop duplicates. Secrets are
    masked: a hook is outside the ACS (a CPE's fault string may quote one)."""
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "occurredAt": rfc3339(at or datetime.now(UTC)),
        "data": mask_document(data),
    }


def body_of(document: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent (compact, keys sorted)."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()


def signature(secret: str, body: bytes) -> str:
    """The X-ACS-Signature header value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(attempts: int, base_s: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling from
    ``base_s``, capped at an hour, with up to 10% jitter so hooks that come
    back after an outage are not hit by every pending event at once."""
    delay = min(MAX_RETRY_DELAY_S, base_s * 2 ** max(0, attempts - 1))
    return delay * (1 + 0.1 * (rng or random).random())
