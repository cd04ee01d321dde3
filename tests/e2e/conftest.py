"""The ACS running for real: HTTP on 127.0.0.1, the test run's PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from acs.config import Settings
from acs.web.server import Running, running_acs


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "cwmp_port": 0,
        "api_port": 0,
        "files_port": 0,
        "stun_port": 0,
        "cpe_auth": "none",
        "session_timeout_s": 30.0,
        "gpv_batch_size": 100,
        # tests share one database: fleet-wide defaults would reach every test's devices
        "default_policies": False,
    }
    base.update(overrides)
    return Settings(**base)


StartAcs = Callable[..., Awaitable[Running]]


@pytest_asyncio.fixture(loop_scope="session")
async def start_acs(database_url: str, tmp_path: Any) -> AsyncIterator[StartAcs]:
    """Start an ACS with the given settings; all are stopped after the test."""
    contexts: list[Any] = []

    async def start(**overrides: Any) -> Running:
        overrides.setdefault("data_dir", tmp_path)
        ctx = running_acs(make_settings(**overrides), database_url)
        running = await ctx.__aenter__()
        contexts.append(ctx)
        return running

    yield start
    for ctx in reversed(contexts):
        await ctx.__aexit__(None, None, None)


@pytest_asyncio.fixture(loop_scope="session")
async def acs(start_acs: StartAcs) -> Running:
    return await start_acs()


def cwmp_url(running: Running) -> str:
    return running.url("cwmp")  # https when the ACS runs with TLS


pytestmark = pytest.mark.db
