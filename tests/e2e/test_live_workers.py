"""Live updates under `acs serve --workers 2`: each worker process holds one
LISTEN connection whatever the number of streams it serves, and a write heard
by PostgreSQL reaches the streams of every worker."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import aiohttp
import pytest

from acs.store import tokens
from acs.store.db import connect
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_live_events import events
from tests.e2e.test_survival import (  # noqa: F401  (fresh_database is a fixture)
    AcsProcess,
    free_ports,
    fresh_database,
)

pytestmark = pytest.mark.db

# new TCP connections are spread over the workers by the kernel (SO_REUSEPORT)
STREAMS = 8


async def test_every_workers_streams_hear_a_session_and_each_worker_listens_once(
    fresh_database: str,  # noqa: F811
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="acs-live-"))
    cwmp_port, api_port, files_port = free_ports(3)
    env = {
        **os.environ,
        "ACS_DATABASE_URL": fresh_database,
        "ACS_DATA_DIR": str(workdir),
        "ACS_HOST": "127.0.0.1",
        "ACS_CWMP_PORT": str(cwmp_port),
        "ACS_API_PORT": str(api_port),
        "ACS_FILES_PORT": str(files_port),
        "ACS_STUN_PORT": "0",
        "ACS_WORKERS": "2",
        "ACS_CPE_AUTH": "none",
        "ACS_DEFAULT_POLICIES": "false",
        "PYTHONUNBUFFERED": "1",
    }
    acs = AcsProcess(env, workdir / "acs.log")
    conn = await connect(fresh_database)
    sessions: list[aiohttp.ClientSession] = []
    try:
        secret = await tokens.create_token(conn, "live-workers", "viewer")
        await acs.start()
        serial = "LIVEWORKERS1"
        device = f"ACDE48-HGW-{serial}"
        streams = []
        listeners = 0

        async def count_listeners() -> int:
            return await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )

        # new connections until both workers serve some (the second worker may
        # bind its ports a moment after the first answered /readyz)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 60  # a loaded machine starts its second worker late
        while loop.time() < give_up and (len(streams) < STREAMS or listeners < 2):
            # a session each: a connection of its own, so the kernel picks a worker
            http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"})
            sessions.append(http)
            resp = await http.get(f"{acs.api}/api/v1/events", params={"topics": f"device:{device}"})
            assert resp.status == 200
            await events(resp, "ready")
            streams.append(resp)
            listeners = await count_listeners()
            assert listeners <= 2, "one LISTEN connection per worker, not one per stream"
            if listeners < 2:
                await asyncio.sleep(0.5)
        assert listeners == 2, f"{len(streams)} streams all served by one worker"
        cpe = CpeDouble(f"http://127.0.0.1:{cwmp_port}/", serial)
        try:
            await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        finally:
            await cpe.close()
        heard = await asyncio.gather(*(events(r, f"device:{device}") for r in streams))
        assert all(h[-1]["data"] == f"device:{device}" for h in heard)
        for r in streams:
            r.close()
    finally:
        for http in sessions:
            await http.close()
        await conn.close()
        acs.stop()
        log_text = acs.log_path.read_text() if acs.log_path.exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
    assert acs.proc is not None and acs.proc.returncode == 0, log_text[-3000:]
