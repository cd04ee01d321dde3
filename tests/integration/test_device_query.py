"""Device search in PostgreSQL: every operator, tags, parameters, paging, indexes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from acs.core.filters import parse_filter
from acs.cwmp.messages import ParameterValueStruct as PV
from acs.store import device_query, devices
from acs.store.ids import device_id

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 1, tzinfo=UTC)


async def fleet(conn: asyncpg.Connection, unique_serial: Callable[..., str], n: int = 6) -> str:
    """n devices of a product class of their own, with varied values; returns the class."""
    product = unique_serial("PC")
    for i in range(n):
        serial = unique_serial()
        rec = devices.InformRecord(
            device_id=device_id("ACDE48", product, serial),
            manufacturer="Acme",
            oui="ACDE48",
            product_class=product,
            serial_number=serial,
            events=["2 PERIODIC"],
            remote_address=None,
            cwmp_version="1.0",
            at=T0 + timedelta(hours=i),
            parameters=[
                PV("Device.DeviceInfo.SoftwareVersion", f"V3.{i}"),
                PV(
                    "Device.ManagementServer.PeriodicInformInterval",
                    str(300 * (i + 1)),
                    "xsd:unsignedInt",
                ),
            ]
            + ([PV("Device.DeviceInfo.ProvisioningCode", "ISP1")] if i % 2 else []),
        )
        await devices.upsert_from_inform(conn, rec)
        await devices.merge_parameter_values(
            conn, rec.device_id, [PV("Device.WiFi.SSID.1.SSID", f"net-{i % 3}")], T0
        )
    return product


async def ids(conn: asyncpg.Connection, text: str, **kw) -> list[str]:
    page = await device_query.list_devices(conn, parse_filter(text), limit=1000, **kw)
    return [d["softwareVersion"] for d in page.items]


async def test_operators_on_columns_and_parameters(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial)
    base = f'DeviceID.ProductClass = "{pc}"'
    got = set(await ids(conn, base))
    assert got == {f"V3.{i}" for i in range(6)}
    assert set(await ids(conn, f'{base} AND SoftwareVersion >= "V3.4"')) == {"V3.4", "V3.5"}
    assert set(await ids(conn, f'{base} AND Device.DeviceInfo.SoftwareVersion < "V3.2"')) == {
        "V3.0",
        "V3.1",
    }
    # numbers compare numerically: "1800" > 600 though "1800" < "600" as text
    assert set(
        await ids(conn, f"{base} AND Device.ManagementServer.PeriodicInformInterval > 600")
    ) == {"V3.2", "V3.3", "V3.4", "V3.5"}
    assert set(await ids(conn, f'{base} AND Device.WiFi.SSID.1.SSID = "net-1"')) == {"V3.1", "V3.4"}
    assert set(await ids(conn, f'{base} AND Device.WiFi.SSID.1.SSID != "net-1"')) == {
        "V3.0",
        "V3.2",
        "V3.3",
        "V3.5",
    }
    assert set(await ids(conn, f'{base} AND Device.WiFi.SSID.1.SSID LIKE "net-2%"')) == {
        "V3.2",
        "V3.5",
    }
    assert set(await ids(conn, f"{base} AND ProvisioningCode IS NULL")) == {"V3.0", "V3.2", "V3.4"}
    assert set(await ids(conn, f"{base} AND Device.DeviceInfo.ProvisioningCode IS NOT NULL")) == {
        "V3.1",
        "V3.3",
        "V3.5",
    }
    assert set(
        await ids(conn, f'{base} AND NOT (SoftwareVersion = "V3.0" OR SoftwareVersion = "V3.1")')
    ) == {"V3.2", "V3.3", "V3.4", "V3.5"}
    assert set(
        await ids(conn, f'{base} AND LastInform >= "{(T0 + timedelta(hours=4)).isoformat()}"')
    ) == {"V3.4", "V3.5"}


async def test_tags(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial, 3)
    page = await device_query.list_devices(conn, parse_filter(f'DeviceID.ProductClass = "{pc}"'))
    first = page.items[0]["id"]
    assert await device_query.add_tags(conn, first, ["lab", "b:2", "lab"])
    assert not await device_query.add_tags(conn, "no-such-device", ["lab"])
    with pytest.raises(ValueError, match="invalid tag"):
        await device_query.add_tags(conn, first, ["white space"])
    tagged = await device_query.list_devices(
        conn, parse_filter(f'DeviceID.ProductClass = "{pc}" AND tag = "lab"')
    )
    assert [d["id"] for d in tagged.items] == [first]
    assert tagged.items[0]["tags"] == ["b:2", "lab"]
    untagged = await device_query.count_devices(
        conn, parse_filter(f'DeviceID.ProductClass = "{pc}" AND tag != "lab"')
    )
    assert untagged == 2
    assert await device_query.remove_tags(conn, first, ["lab"])
    assert (
        await device_query.count_devices(
            conn, parse_filter(f'tag = "lab" AND DeviceID.ProductClass = "{pc}"')
        )
        == 0
    )


@pytest.mark.parametrize("sort", ["id", "last_inform", "software_version", "serial_number"])
@pytest.mark.parametrize("descending", [False, True])
async def test_cursor_paging_visits_every_device_once(
    conn, unique_serial, sort: str, descending: bool
) -> None:
    pc = await fleet(conn, unique_serial, 7)
    expr = parse_filter(f'DeviceID.ProductClass = "{pc}"')
    everything = await device_query.list_devices(
        conn, expr, sort=sort, descending=descending, limit=100
    )
    seen: list[str] = []
    cursor = None
    while True:
        page = await device_query.list_devices(
            conn, expr, sort=sort, descending=descending, limit=3, cursor=cursor
        )
        assert page.total == 7
        seen += [d["id"] for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [d["id"] for d in everything.items]
    assert len(set(seen)) == 7


async def test_projection_and_bad_cursor(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial, 2)
    page = await device_query.list_devices(
        conn,
        parse_filter(f'DeviceID.ProductClass = "{pc}"'),
        projection=["Device.DeviceInfo.SoftwareVersion", "Device.WiFi."],
    )
    params = page.items[0]["parameters"]
    assert set(params) == {"Device.DeviceInfo.SoftwareVersion", "Device.WiFi.SSID.1.SSID"}
    assert params["Device.DeviceInfo.SoftwareVersion"]["value"] == "V3.0"
    with pytest.raises(ValueError, match="invalid cursor"):
        await device_query.list_devices(conn, None, cursor="!!not-a-cursor")
    with pytest.raises(ValueError, match="cannot sort"):
        await device_query.list_devices(conn, None, sort="password")


async def test_parameter_equality_uses_the_gin_index(conn, unique_serial) -> None:
    await fleet(conn, unique_serial, 2)
    where, params = device_query.compile_filter(parse_filter('Device.WiFi.SSID.1.SSID = "x"'))
    async with conn.transaction():
        # tiny test tables make a scan of the whole table cheapest; take that
        # choice away, leaving the planner the indexes that fit the condition
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_indexscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT d.id FROM devices d LEFT JOIN device_parameters dp"
                f" ON dp.device_id = d.id WHERE {where}",
                *params,
            )
        )
    assert "device_parameters_tree_idx" in plan, plan
    where, params = device_query.compile_filter(parse_filter('DeviceID.ProductClass = "x"'))
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                f"EXPLAIN SELECT d.id FROM devices d LEFT JOIN device_parameters dp"
                f" ON dp.device_id = d.id WHERE {where}",
                *params,
            )
        )
    assert "devices_product_class_idx" in plan, plan
