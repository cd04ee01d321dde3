"""The backup store against a real PostgreSQL and disk: an upload is a row and
a file or neither, and retention removes both together."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from acs.services import backups as service
from acs.store import backups, tasks
from tests.e2e.conftest import make_settings
from tests.integration.test_store import new_device

pytestmark = pytest.mark.db


async def body(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def waiting_upload(conn: asyncpg.Connection, dev: str) -> backups.Grant:
    """An upload job the CPE accepted (running, out of its session), with its grant."""
    job = await tasks.enqueue(conn, dev, "upload", {"fileType": "3 Vendor Configuration File"})
    await tasks.mark_running(conn, job.id, "s")
    await tasks.await_transfer(conn, job.id, f"task-{job.id}", {"status": 1})
    token = await backups.put_grant(
        conn,
        token=f"t-{job.id}",
        task_id=job.id,
        device_id=dev,
        direction="upload",
        username=service.username_of(job.id),
        ha1="0" * 32,
    )
    grant = await backups.grant_by_token(conn, token)
    assert grant is not None and grant.task_status == "running"
    return grant


def on_disk(root: Path) -> list[str]:
    return sorted(os.listdir(root)) if root.exists() else []


async def test_an_upload_is_a_row_and_its_file_or_neither(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    dev = await new_device(conn, unique_serial)
    grant = await waiting_upload(conn, dev)
    with pytest.raises(backups.TooLarge):
        await backups.store_upload(conn, tmp_path, grant, body(b"a" * 6, b"b" * 6), max_bytes=10)
    assert on_disk(tmp_path) == [] and await backups.list_backups(conn, dev) == []

    stored = await backups.store_upload(
        conn, tmp_path, grant, body(b"k=v\n", b"x=y\n"), max_bytes=10
    )
    assert stored.size == 8 and stored.file_type == "3 Vendor Configuration File"
    assert (tmp_path / stored.storage_name).read_bytes() == b"k=v\nx=y\n"
    assert on_disk(tmp_path) == [stored.storage_name]
    # the grant is spent: a second body (raced past the handler's check) is refused
    with pytest.raises(backups.NotWaiting):
        await backups.store_upload(conn, tmp_path, grant, body(b"again"), max_bytes=10)
    assert on_disk(tmp_path) == [stored.storage_name]

    # a job that ended while its body streamed: refused, its temporary file gone
    other = await waiting_upload(conn, dev)
    await tasks.mark_done(conn, other.task_id, {})
    with pytest.raises(backups.NotWaiting):
        await backups.store_upload(conn, tmp_path, other, body(b"late"), max_bytes=10)
    assert on_disk(tmp_path) == [stored.storage_name]
    assert [b.id for b in await backups.list_backups(conn, dev)] == [stored.id]

    assert await backups.delete_backup(conn, tmp_path, stored.id)
    assert on_disk(tmp_path) == [] and not await backups.delete_backup(conn, tmp_path, stored.id)


async def test_retention_keeps_the_newest_per_device_and_drops_old_ones_with_their_files(
    conn: asyncpg.Connection, tmp_path: Path, unique_serial
) -> None:
    dev, other = await new_device(conn, unique_serial), await new_device(conn, unique_serial)
    made: dict[str, list[backups.Backup]] = {dev: [], other: []}
    for device, n in ((dev, 4), (other, 1)):
        for i in range(n):
            grant = await waiting_upload(conn, device)
            made[device].append(
                await backups.store_upload(conn, tmp_path, grant, body(b"%d" % i), max_bytes=10)
            )
    # ages: dev's oldest is 400 days old, the others follow in order
    for age, b in zip((400, 3, 2, 1), made[dev], strict=True):
        await conn.execute(
            "UPDATE device_backups SET created_at = now() - make_interval(days => $2)"
            " WHERE id = $1",
            b.id,
            age,
        )
    settings = make_settings(data_dir=tmp_path, backups_per_device=2, backup_max_age_s=365 * 86400)
    root = settings.backups_dir
    # the rows were stored under tmp_path itself: move them where the settings say
    root.mkdir()
    for b in made[dev] + made[other]:
        os.replace(tmp_path / b.storage_name, root / b.storage_name)
    stray = root / "0123456789abcdef"
    stray.write_bytes(b"a device deleted by cascade left this")
    old = time.time() - 3600
    os.utime(stray, (old, old))
    fresh_temp = root / f"{backups.TEMP_PREFIX}inflight"
    fresh_temp.write_bytes(b"an upload streaming now")

    gone = await service.prune(conn, settings)
    assert gone == 3  # two of dev's (beyond 2, one of them also too old) and the stray
    kept = {b.id for b in await backups.list_backups(conn, dev)}
    assert kept == {made[dev][2].id, made[dev][3].id}
    assert [b.id for b in await backups.list_backups(conn, other)] == [made[other][0].id]
    names = {b.storage_name for b in made[dev][2:] + made[other]}
    assert set(on_disk(root)) == names | {fresh_temp.name}

    # no count limit: only age applies
    unlimited = make_settings(data_dir=tmp_path, backups_per_device=0, backup_max_age_s=1.5 * 86400)
    assert await service.prune(conn, unlimited) == 1  # dev's 2-day-old one
    assert {b.id for b in await backups.list_backups(conn, dev)} == {made[dev][3].id}
