"""Which event loop runs an ACS process (ACS_EVENT_LOOP).

uvloop (libuv under asyncio's API) spends less CPU per socket read, write
and callback than asyncio's own selector loop, and a periodic CWMP session is
mostly such small steps; it is the default when it is installed. asyncio's
loop stays a choice: for a platform uvloop does not support, and to compare
(BENCHMARKS.md has both figures from one run).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from acs.logs import log

logger = logging.getLogger("acs")

T = TypeVar("T")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice``; None means asyncio's default loop."""
    if choice != "uvloop":
        return None
    if importlib.util.find_spec("uvloop") is None:
        # a setting's default must not stop the server: say so once, and go on
        log(logger, logging.WARNING, "event_loop_fallback", wanted="uvloop", reason="not installed")
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """asyncio.run(main) on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)


def running_name() -> str:
    """The running loop's kind, for the start-up line and the metrics."""
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
