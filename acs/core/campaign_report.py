"""A campaign report's CSV: one row per device, from the report's JSON shape (pure).

The API's CSV download and the UI's both write rows with this, so the two
files are the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# CSV column -> the report's JSON field (acs.web.api.health_models.ReportDeviceOut)
COLUMNS: dict[str, str] = {
    "device": "device",
    "stage": "stage",
    "state": "state",
    "rollback": "rollback",
    "started": "started",
    "finished": "finished",
    "version_before": "versionBefore",
    "version_after": "versionAfter",
    "health": "health",
    "soak_started": "soakStarted",
    "soak_finished": "soakFinished",
    "signals": "signals",
    "tripped": "tripped",
    "note": "note",
    "failure_code": "failureCode",
    "fault_code": "faultCode",
    "reason": "reason",
}


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list) and value and isinstance(value[0], Mapping):
        # one signal per "; ": name=value (limit), and a * when it tripped
        text = "; ".join(
            f"{s.get('signal')}={s.get('value')} ({s.get('limit')})"
            + ("*" if s.get("tripped") else "")
            for s in value
        )
    elif isinstance(value, list):
        text = " ".join(str(v) for v in value)
    else:
        text = str(value)
    # a cell starting with = + - @ is a formula to spreadsheet programs: a CPE's
    # fault string or a device id could otherwise plant one
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def row(device: Mapping[str, Any]) -> list[str]:
    """One device of the report (its JSON form: times as RFC 3339 text)."""
    return [cell(device.get(field)) for field in COLUMNS.values()]
