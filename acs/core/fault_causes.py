"""A job's fault in words, with the cause a CPE hides inside it.

A SetParameterValues (or AddObject with values) refused as a whole answers
9003 "Invalid arguments"; the real reason, one per parameter, sits in its
SetParameterValuesFault list (TR-069 A.3.2.1). Operators must see that reason
(a 9005 unknown name, a 9007 bad value, a 9008 read-only parameter), not the
9003 wrapper, both on a job and when faults are grouped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from acs.cwmp.faults import fault_name

# how many per-parameter causes one line names before "and N more"
SHOWN = 3


def parameter_faults(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The per-parameter faults stored with a faulted job, or []."""
    found = (result or {}).get("setParameterValuesFaults")
    if not isinstance(found, list):
        return []
    return [f for f in found if isinstance(f, dict) and isinstance(f.get("faultCode"), int)]


def root_code(code: int | None, result: dict[str, Any] | None) -> int | None:
    """The code that says what went wrong: for a 9003 whose parameters all share
    one fault, that fault's code; otherwise the job's own code."""
    inner = {f["faultCode"] for f in parameter_faults(result)}
    if code == 9003 and len(inner) == 1:
        return inner.pop()
    return code


def cause(code: int | None, string: str | None, result: dict[str, Any] | None) -> str | None:
    """One line: the fault's code and name (or the CPE's text), then each
    parameter that caused it."""
    if code is None and not string:
        return None
    head = f"{code} {fault_name(code)}" if code is not None else ""
    text = (string or "").strip()
    if text and text.lower() != fault_name(code or 0).lower():
        head = f"{head}: {text}" if head else text
    faults = parameter_faults(result)
    if not faults:
        return head
    parts = [
        f"{f.get('parameterName') or '?'}: {f['faultCode']} {fault_name(f['faultCode'])}"
        for f in faults[:SHOWN]
    ]
    if len(faults) > SHOWN:
        parts.append(f"and {len(faults) - SHOWN} more")
    return f"{head} — " + "; ".join(parts)


def common_causes(results: list[dict[str, Any] | None], limit: int = 3) -> list[dict[str, Any]]:
    """The most frequent per-parameter causes across a group of faulted jobs."""
    counts: Counter[tuple[str, int]] = Counter()
    for result in results:
        for f in parameter_faults(result):
            counts[(str(f.get("parameterName") or "?"), f["faultCode"])] += 1
    return [
        {"parameter": name, "faultCode": code, "name": fault_name(code), "count": n}
        for (name, code), n in counts.most_common(limit)
    ]
