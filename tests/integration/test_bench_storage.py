"""bench/storage.py at a tiny scale, so the benchmark cannot rot between runs.

The loader must write trees exactly as a real session does (or the storage
figure measures something else), and the filter measurement must get exactly
the devices the fleet was built to match (or its latency is of a wrong answer).
"""

from __future__ import annotations

import json
import secrets
import socket
from datetime import timedelta

import pytest

from acs.cwmp.messages import ParameterValueStruct as PV
from acs.store import devices
from bench import storage

pytestmark = pytest.mark.db


async def test_loader_writes_what_the_store_writes(conn, unique_serial) -> None:
    """A loaded tree equals the tree the store's SQL writes for the same discovery."""
    builder = storage.FleetBuilder(100, prefix=unique_serial("BENCH"))
    i = 7  # a device with its own software version
    dev_id, serial, at, values, tree = builder.device(i)
    await devices.upsert_from_inform(
        conn,
        devices.InformRecord(
            device_id=dev_id,
            manufacturer="SimCPE",
            oui=storage.OUI,
            product_class=storage.PRODUCT_CLASS,
            serial_number=serial,
            events=["0 BOOTSTRAP"],
            remote_address=None,
            cwmp_version="1.4",
            parameters=[],
            at=at,
        ),
    )
    # what a discovery session stores: the names, then every value read
    await devices.merge_parameter_names(conn, dev_id, builder.root, False, builder.names, at)
    await devices.merge_parameter_values(conn, dev_id, values, at, read=True)
    stored = await conn.fetchval("SELECT tree FROM device_parameters WHERE device_id = $1", dev_id)
    assert len(stored) > 1000
    assert stored == tree
    # the loader's fast path (a JSON template) writes the same tree
    assert json.loads(builder.device_json(i)[0]) == stored

    # and a later Inform: only changed values move (the SQL merge's rule)
    later = at + timedelta(hours=1)
    inform = [
        PV(storage.SOFTWARE_PATH, "9.9.9"),
        PV("Device.DeviceInfo.HardwareVersion", tree["Device.DeviceInfo.HardwareVersion"]["v"]),
    ]
    written = await devices.merge_parameter_values(conn, dev_id, inform, later)
    assert devices.apply_parameter_values(tree, inform, later) == written == 1
    stored = await conn.fetchval("SELECT tree FROM device_parameters WHERE device_id = $1", dev_id)
    assert stored == tree
    assert stored[storage.SOFTWARE_PATH]["vt"] == int(later.timestamp())


def _free_port_block() -> int:
    """A port whose next two are free too (CWMP, API, files)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        ok = True
        for p in (port + 1, port + 2):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free block of three ports")


async def test_scenario_at_tiny_scale(pg_admin_url) -> None:
    """50 devices through the whole scenario: load, sizes, `acs serve`, filters, churn."""
    lines: list[str] = []
    result = await storage.run(
        pg_admin_url,
        50,
        churn_rounds=1,
        requests=3,
        port=_free_port_block(),
        db_name=f"bench_storage_test_{secrets.token_hex(3)}",
        out=lines.append,
    )
    filters = result["_filters"]
    assert [f.case.name for f in filters] == [c.name for c in storage.FILTER_CASES]
    for f in filters:
        # the fleet is built so that every case matches at 50 devices
        assert f.expected_total > 0, f.case.name
        assert f.total == f.expected_total, f.case.name
        assert f.first_page == f.expected_first_page, f.case.name
        assert len(f.latencies_ms) == 3
    # device 7 runs the release candidate, device 11 has the lab SSID
    rare_sw, common_sw, rare_ssid, common_ssid = filters
    assert rare_sw.first_page == [storage.device_id_of(7, result["_prefix"])]
    assert rare_ssid.first_page == [storage.device_id_of(11, result["_prefix"])]
    assert common_sw.total == common_ssid.total == 5

    storage_row, filter_row = result["rows"]
    # a TR-181 tree is ~20 KB compressed; less than that is not the whole
    # device, and a few hundred KB would be index bloat or a broken count
    assert 20 <= storage_row["value"] <= 300, storage_row
    assert result["_count"] == 50
    assert filter_row["value"] > 0
    assert isinstance(storage_row["met"], bool) and isinstance(filter_row["met"], bool)
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    assert json.loads(json.dumps(public))["scenario"] == "storage"
    assert any("A. storage after VACUUM" in line for line in lines)
