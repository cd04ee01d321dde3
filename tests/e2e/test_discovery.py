"""Discovery through the real ACS with the simulator as the CPE: one partial-path
GetParameterValues where the CPE takes it, names and byte-sized batches where it
refuses (profile no-partial-gpv), and in both cases the stored tree is the CPE's."""

from __future__ import annotations

import asyncpg
import pytest

from acs.store import devices
from acs.web.server import Running
from tests.e2e.conftest import StartAcs
from tests.e2e.test_simulator_fleet import dev_id, fleet_of

pytestmark = pytest.mark.db

# values that move on their own between the ACS's read and ours
VOLATILE = ("UpTime", "CurrentLocalTime")


@pytest.fixture
async def acs(start_acs: StartAcs) -> Running:
    return await start_acs(
        cpe_auth="digest",
        cpe_username="cpe",
        cpe_password="cpe-pw",
        connection_request_username="cr",
        connection_request_password="cr-secret",
        session_timeout_s=10.0,
        gpv_batch_bytes=8192,  # several batches for the CPE that refuses partial paths
    )


@pytest.mark.parametrize(
    ("model", "faults", "partial"),
    [
        ("tr181-gateway", "", True),
        ("tr098-gateway", "", True),
        ("tr181-gateway", "no-partial-gpv", False),
        ("tr098-gateway", "no-partial-gpv", False),
    ],
)
async def test_the_stored_tree_is_the_cpes_in_as_few_round_trips_as_it_allows(
    acs: Running, db_pool: asyncpg.Pool, unique_serial, model: str, faults: str, partial: bool
) -> None:
    fleet = await fleet_of(acs, unique_serial("DS"), 1, model=model, faults=faults)
    try:
        (cpe,) = fleet.devices.values()
        await fleet.wait_for(lambda: cpe.sessions_ok >= 1, 60)
        async with db_pool.acquire() as conn:
            stored = await devices.get_parameters(conn, dev_id(fleet, cpe.serial))
        tree = cpe.tree
        names = {i.name: i.writable for i in tree.get_parameter_names(tree.root, False)}
        values = {v.name: v for v in tree.get_parameter_values([tree.root])}
        assert len(values) > 500
        # every parameter and object the CPE lists, nothing else, writable as it says
        assert set(stored) - {tree.root} == set(names) - {tree.root}
        assert {k: r.writable for k, r in stored.items() if k in names} == names
        for name, value in values.items():
            record = stored[name]
            assert record.xsd_type == value.xsd_type, name
            if record.sealed is None and not name.endswith(VOLATILE):
                assert record.value == value.value, name
        rpcs = fleet.summary()["acs_rpcs"]
        if partial:
            assert rpcs["GetParameterNames"] == 1
            # the discovery's one read; the shipped policies' reads come on top
            assert rpcs["GetParameterValues"] < 5
        else:
            # names, the refused partial read, then batches of about 8 KB each
            assert rpcs["GetParameterValues"] >= 1 + len(values) * 150 // 8192
            assert rpcs["GetParameterValues"] < len(values) / 25
        assert cpe.sessions_failed == 0
    finally:
        await fleet.stop()
