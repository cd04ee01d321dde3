"""Discovery through the real ACS with the simulator as the CPE: one partial-path
GetParameterValues where the CPE takes it, names and byte-sized batches where it
refuses (profile no-partial-gpv), and in both cases the stored tree is the CPE's."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.store import devices
from acs.store.ids import device_id
from acs.web.server import Running
from tests.e2e.conftest import StartAcs, cwmp_url
from tests.e2e.cpe_double import CpeDouble
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


async def test_a_discovery_cut_mid_way_writes_nothing_and_starts_again(
    start_acs: StartAcs, db_pool: asyncpg.Pool, unique_serial
) -> None:
    """The names and values of a discovery are written together when it ends: a
    CPE gone between its GetParameterNames answer and its values leaves the tree
    as the Inform left it (no name without its value), and the next session,
    a periodic one, discovers the whole tree."""
    acs = await start_acs(session_timeout_s=0.6)
    cpe = CpeDouble(cwmp_url(acs), unique_serial("CUT"))
    dev = device_id(cpe.identity.oui, cpe.identity.product_class, cpe.identity.serial_number)
    try:
        await cpe.post(cpe.inform_message(["0 BOOTSTRAP", "1 BOOT"]))
        gpn = (await cpe.post(None)).message
        assert isinstance(gpn, m.GetParameterNames)
        gpv = (await cpe.post(cpe.answer(gpn))).message
        assert gpv == m.GetParameterValues(parameter_names=["Device."])
        await cpe.http.close()  # gone with the values unsent
        for _ in range(50):
            await asyncio.sleep(0.1)
            if not acs.cwmp.by_id:
                break
        assert not acs.cwmp.by_id, "the idle session was not reaped"
        async with db_pool.acquire() as conn:
            stored = await devices.get_parameters(conn, dev)
            assert await devices.tree_is_empty(conn, dev)
        # only what the Inform carried: every entry with its value, none with a name read
        assert 0 < len(stored) < 30
        assert all(r.value is not None and r.writable is None for r in stored.values())
    finally:
        await cpe.close()
    again = CpeDouble(cwmp_url(acs), cpe.identity.serial_number)
    try:
        requests = await again.session(["2 PERIODIC"])
        assert [r.rpc for r in requests[:2]] == ["GetParameterNames", "GetParameterValues"]
        async with db_pool.acquire() as conn:
            stored = await devices.get_parameters(conn, dev)
        names = again.tree.get_parameter_names(again.tree.root, False)
        assert set(stored) - {again.tree.root} == {i.name for i in names} - {again.tree.root}
        assert all(stored[i.name].writable == i.writable for i in names)
    finally:
        await again.close()
