"""When a connection request is worth sending again soon. No I/O.

A CPE limits how many connection requests it accepts in a period (TR-069
3.2.2) and answers the rest with 503: it is up, only busy, so a knock a little
later gets through. Other failures (no answer, wrong credentials) are not
helped by knocking again soon; those devices come at their next Inform.
"""

from __future__ import annotations

#: seconds until a device that answered "busy" is knocked again
BUSY_AGAIN_AFTER_S = 30.0
BUSY_STATUS = 503


def again_after(status: int | None) -> float | None:
    """Seconds until a device whose knock got HTTP ``status`` is knocked again, or None."""
    return BUSY_AGAIN_AFTER_S if status == BUSY_STATUS else None
