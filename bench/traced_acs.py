"""`acs serve` with tracemalloc on: what the Python heap holds, by traceback.

    python -m bench.traced_acs DIR serve ...     # as `acs serve ...`

Each SIGUSR1 writes a snapshot (after a full collection) to DIR/snapshot-<n>
and then touches DIR/snapshot-<n>.done; bench.reboot compares two of them (a
warmed-up ACS, then the same ACS with many sessions parked) to say what one
in-flight session holds. Frames kept per allocation: ACS_BENCH_TRACE_FRAMES
(default 16). Tracing slows the process several times: its CPU and RSS are not
the ones to report.
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

# imported before tracing starts: imports under tracemalloc take minutes, and
# what modules hold is the same before and after the sessions anyway
import acs.web.server  # noqa: F401
from acs.cli import main


def install(out: Path) -> None:
    count = itertools.count(1)

    def dump(_signum: int, _frame: FrameType | None) -> None:
        gc.collect()
        n = next(count)
        tracemalloc.take_snapshot().dump(str(out / f"snapshot-{n}"))
        (out / f"snapshot-{n}.done").touch()

    signal.signal(signal.SIGUSR1, dump)


if __name__ == "__main__":
    out = Path(sys.argv.pop(1))
    out.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(int(os.environ.get("ACS_BENCH_TRACE_FRAMES", "16")))
    install(out)
    sys.argv[0] = "acs"
    main()
