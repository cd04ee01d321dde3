"""Schemathesis against the running API's own OpenAPI document: generated
requests, valid (positive) and invalid (negative), on every operation, with
an admin token. Every answer must be a documented status with its documented
content type and schema, and never a 5xx.

The default run is derandomized (the same examples every time) and bounded;
ACS_FUZZ_EXAMPLES=<n> asks for n examples per operation and mode, drawn anew
each run. The ACS
gets a database of its own: fuzzed policies, bulk jobs and campaigns would
otherwise reach the devices of the other tests sharing the run's database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from acs.store import tokens
from acs.store.db import drop_database, ensure_database
from acs.web.server import Running, running_acs
from tests.e2e.conftest import make_settings

pytestmark = pytest.mark.db

# the default run is the same every time (a fixed seed); asking for more
# examples also asks for new ones each run
EXAMPLES = int(os.environ.get("ACS_FUZZ_EXAMPLES", "0")) or 16
DERANDOMIZE = "ACS_FUZZ_EXAMPLES" not in os.environ
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# a fuzzed webhook would POST events to whatever host it names: keep it on loopback
LOOPBACK_HOOK = "http://127.0.0.1:9/fuzz-hook"


@pytest_asyncio.fixture(loop_scope="session")
async def fuzz_acs(pg_admin_url: str, tmp_path: Any) -> AsyncIterator[Running]:
    name = f"acs_fuzz_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    try:
        ctx = running_acs(make_settings(data_dir=tmp_path), url)
        running = await ctx.__aenter__()
        try:
            yield running
        finally:
            await ctx.__aexit__(None, None, None)
    finally:
        await drop_database(pg_admin_url, name)


def _fuzz(doc: dict[str, Any], base: str, token: str) -> tuple[list[str], dict[str, int]]:
    """Runs in a thread: schemathesis calls with blocking requests, and the ACS
    under test serves from this test's event loop meanwhile."""
    auth = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=base)
    http = requests.Session()
    failures: list[str] = []
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                derandomize=DERANDOMIZE,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                if case.path == "/api/v1/webhooks" and isinstance(case.body, dict):
                    case.body["url"] = LOOPBACK_HOOK
                key = f"{case.method} {case.path}"
                calls[key] = calls.get(key, 0) + 1
                case.call_and_validate(session=http, headers=auth, checks=CHECKS, timeout=30)

            try:
                check()
            # every operation's failures are reported, all at once; schemathesis
            # raises several distinct ones as a BaseExceptionGroup
            except (Exception, FailureGroup) as exc:
                where = f"{operation.method.upper()} {operation.path} ({mode.value})"
                failures.append(f"{where}:\n{str(exc)[:3000]}")
    http.close()
    return failures, calls


async def _document(base: str, token: str) -> dict[str, Any]:
    """The document the running API serves: what an operator's tools read."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(f"{base}/api/v1/openapi.json") as resp:
            assert resp.status == 200
            return await resp.json()


async def test_the_api_survives_schemathesis(fuzz_acs: Running) -> None:
    async with fuzz_acs.pool.acquire() as conn:
        token = await tokens.create_token(conn, "fuzz-admin", "admin")
    base = f"http://127.0.0.1:{fuzz_acs.ports['api']}"
    doc = await _document(base, token)
    failures, calls = await asyncio.to_thread(_fuzz, doc, base, token)
    documented = {f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops}
    assert not failures, f"{len(failures)} failing operation(s):\n\n" + "\n\n".join(failures)
    # every documented operation was called (an operation schemathesis skipped is untested)
    assert set(calls) == documented, documented ^ set(calls)
    # the run did reach the server: the admin token was used
    async with fuzz_acs.pool.acquire() as conn:
        used: asyncpg.Record = await conn.fetchrow(
            "SELECT last_used_at FROM api_tokens WHERE name = 'fuzz-admin'"
        )
    assert used["last_used_at"] is not None
