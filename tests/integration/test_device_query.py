"""Device search in PostgreSQL: every operator, tags, parameters, paging, projection, indexes.

Each test creates devices of a product class of its own (``unique_serial``),
so tests sharing the database never see each other's devices.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from acs.core.filters import Comparison, parse_filter
from acs.cwmp.messages import ParameterValueStruct as PV
from acs.store import device_query, devices
from acs.store.ids import device_id

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 1, tzinfo=UTC)
OUI = "00259E"


async def inform(
    conn: asyncpg.Connection,
    product: str,
    serial: str,
    at: datetime,
    parameters: list[PV],
    events: tuple[str, ...] = ("2 PERIODIC",),
) -> str:
    rec = devices.InformRecord(
        device_id=device_id(OUI, product, serial),
        manufacturer="Acme",
        oui=OUI,
        product_class=product,
        serial_number=serial,
        events=list(events),
        remote_address=None,
        cwmp_version="1.0",
        at=at,
        parameters=parameters,
    )
    await devices.upsert_from_inform(conn, rec)
    return rec.device_id


async def fleet(conn: asyncpg.Connection, unique_serial: Callable[..., str], n: int = 6) -> str:
    """n devices of a product class of their own, device i with software "V3.i"; the class."""
    product = unique_serial("PC")
    for i in range(n):
        dev = await inform(
            conn,
            product,
            unique_serial(),
            T0 + timedelta(hours=i),
            [
                PV("Device.DeviceInfo.SoftwareVersion", f"V3.{i}"),
                PV(
                    "Device.ManagementServer.PeriodicInformInterval",
                    str(300 * (i + 1)),
                    "xsd:unsignedInt",
                ),
            ]
            + ([PV("Device.DeviceInfo.ProvisioningCode", "ISP1")] if i % 2 else []),
            ("1 BOOT",) if i == 0 else ("2 PERIODIC",),
        )
        await devices.merge_parameter_values(
            conn, dev, [PV("Device.WiFi.SSID.1.SSID", f"net-{i % 3}")], T0
        )
    return product


async def versions(conn: asyncpg.Connection, pc: str, text: str = "") -> set[str]:
    """softwareVersion of the class's devices matching ``text`` (ANDed with the class)."""
    base = f'DeviceID.ProductClass = "{pc}"'
    expr = parse_filter(f"{base} AND ({text})" if text else base)
    page = await device_query.list_devices(conn, expr, limit=1000)
    assert page.total == len(page.items) == await device_query.count_devices(conn, expr)
    return {d["softwareVersion"] for d in page.items}


def vs(*indexes: int) -> set[str]:
    return {f"V3.{i}" for i in indexes}


async def test_operators_on_device_columns(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial)
    assert await versions(conn, pc) == vs(0, 1, 2, 3, 4, 5)
    assert await versions(conn, pc, 'SoftwareVersion = "V3.2"') == vs(2)
    assert await versions(conn, pc, 'SoftwareVersion != "V3.2"') == vs(0, 1, 3, 4, 5)
    assert await versions(conn, pc, 'SoftwareVersion < "V3.2"') == vs(0, 1)
    assert await versions(conn, pc, 'SoftwareVersion <= "V3.2"') == vs(0, 1, 2)
    assert await versions(conn, pc, 'SoftwareVersion > "V3.4"') == vs(5)
    assert await versions(conn, pc, 'SoftwareVersion >= "V3.4"') == vs(4, 5)
    assert await versions(conn, pc, 'SoftwareVersion LIKE "V3._"') == vs(0, 1, 2, 3, 4, 5)
    assert await versions(conn, pc, 'SoftwareVersion NOT LIKE "%3.1"') == vs(0, 2, 3, 4, 5)
    assert await versions(conn, pc, "ProvisioningCode IS NULL") == vs(0, 2, 4)
    assert await versions(conn, pc, "ProvisioningCode IS NOT NULL") == vs(1, 3, 5)
    # != is "not equal": devices without a provisioning code match it
    assert await versions(conn, pc, 'ProvisioningCode != "ISP1"') == vs(0, 2, 4)
    assert await versions(conn, pc, f'DeviceID.OUI = "{OUI}"') == vs(0, 1, 2, 3, 4, 5)
    assert await versions(conn, pc, 'DeviceID.Manufacturer = "Other"') == set()
    assert await versions(
        conn, pc, 'HardwareVersion IS NULL AND DeviceID.ID LIKE "00259E-%"'
    ) == vs(0, 1, 2, 3, 4, 5)
    one = await device_query.list_devices(conn, parse_filter(f'DeviceID.ProductClass = "{pc}"'))
    first = one.items[0]
    assert await versions(conn, pc, f'DeviceID.ID = "{first["id"]}"') == {first["softwareVersion"]}
    assert await versions(conn, pc, f'DeviceID.SerialNumber = "{first["serialNumber"]}"') == {
        first["softwareVersion"]
    }


async def test_operators_on_times(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial)
    h4 = (T0 + timedelta(hours=4)).isoformat()
    assert await versions(conn, pc, f'LastInform >= "{h4}"') == vs(4, 5)
    assert await versions(conn, pc, f'LastInform > "{h4}"') == vs(5)
    assert await versions(conn, pc, f'LastInform < "{h4}"') == vs(0, 1, 2, 3)
    assert await versions(conn, pc, f'LastInform <= "{h4}"') == vs(0, 1, 2, 3, 4)
    assert await versions(conn, pc, f'LastInform = "{h4}"') == vs(4)
    assert await versions(conn, pc, f'LastInform != "{h4}"') == vs(0, 1, 2, 3, 5)
    # epoch seconds and a time without offset (UTC) mean the same instant
    epoch = int((T0 + timedelta(hours=4)).timestamp())
    assert await versions(conn, pc, f"LastInform >= {epoch}") == vs(4, 5)
    assert await versions(conn, pc, 'LastInform >= "2026-11-01T04:00:00"') == vs(4, 5)
    assert await versions(conn, pc, "LastBoot IS NOT NULL") == vs(0)
    assert await versions(conn, pc, "LastBootstrap IS NULL") == vs(0, 1, 2, 3, 4, 5)
    assert await versions(conn, pc, 'Registered <= "2026-11-01T01:00:00Z"') == vs(0, 1)


async def test_operators_on_parameters(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial)
    ssid = "Device.WiFi.SSID.1.SSID"
    interval = "Device.ManagementServer.PeriodicInformInterval"
    assert await versions(conn, pc, f'{ssid} = "net-1"') == vs(1, 4)
    assert await versions(conn, pc, f'{ssid} != "net-1"') == vs(0, 2, 3, 5)
    assert await versions(conn, pc, f'{ssid} < "net-1"') == vs(0, 3)
    assert await versions(conn, pc, f'{ssid} >= "net-1"') == vs(1, 2, 4, 5)
    assert await versions(conn, pc, f'{ssid} LIKE "net-2%"') == vs(2, 5)
    assert await versions(conn, pc, f'{ssid} NOT LIKE "net-2%"') == vs(0, 1, 3, 4)
    # numbers compare numerically: "1800" > 600 though "1800" < "600" as text
    assert await versions(conn, pc, f"{interval} > 600") == vs(2, 3, 4, 5)
    assert await versions(conn, pc, f"{interval} >= 600") == vs(1, 2, 3, 4, 5)
    assert await versions(conn, pc, f"{interval} < 600.5") == vs(0, 1)
    assert await versions(conn, pc, f"{interval} <= 300") == vs(0)
    assert await versions(conn, pc, f'{interval} < "600"') == vs(0, 3, 4, 5)  # text: "1800" < "600"
    # = on a number compares its canonical text (the indexed containment)
    assert await versions(conn, pc, f"{interval} = 900") == vs(2)
    assert await versions(conn, pc, f"{interval} != 900") == vs(0, 1, 3, 4, 5)
    assert await versions(conn, pc, "Device.DeviceInfo.ProvisioningCode IS NOT NULL") == vs(1, 3, 5)
    assert await versions(conn, pc, "Device.DeviceInfo.ProvisioningCode IS NULL") == vs(0, 2, 4)
    assert await versions(conn, pc, "Device.No.Such.Thing = 1") == set()
    assert await versions(conn, pc, "Device.No.Such.Thing > 1") == set()


async def test_not_and_missing_values_are_two_valued(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial, 3)
    # a device with no parameter tree at all, and one whose number is not a number
    await inform(conn, pc, unique_serial(), T0, [])
    weird = await inform(conn, pc, unique_serial(), T0, [])
    await devices.merge_parameter_values(
        conn, weird, [PV("Device.ManagementServer.PeriodicInformInterval", "soon")], T0
    )
    interval = "Device.ManagementServer.PeriodicInformInterval"
    assert await versions(conn, pc, f"{interval} > 0") == vs(0, 1, 2)
    # NOT (unknown) is true: X and NOT X together cover every device
    assert await versions(conn, pc, f"NOT {interval} > 0") == {None}
    assert (
        await device_query.count_devices(
            conn, parse_filter(f'DeviceID.ProductClass = "{pc}" AND NOT {interval} > 0')
        )
        == 2
    )
    assert await versions(
        conn, pc, 'NOT (SoftwareVersion = "V3.0" OR SoftwareVersion = "V3.1")'
    ) == {
        "V3.2",
        None,
    }
    assert await versions(conn, pc, 'Device.WiFi.SSID.1.SSID != "net-0"') == {"V3.1", "V3.2", None}
    assert await versions(conn, pc, 'NOT NOT Device.WiFi.SSID.1.SSID = "net-0"') == vs(0)
    assert await versions(
        conn, pc, 'SoftwareVersion = "V3.0" OR Device.WiFi.SSID.1.SSID = "net-2"'
    ) == vs(0, 2)


async def test_values_never_reach_the_sql_text(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial, 2)
    nasty = "x'; DROP TABLE devices; --"
    expr = parse_filter(
        f'DeviceID.ProductClass = "{pc}" AND (Device.A = "{nasty}" OR SoftwareVersion LIKE'
        f' "{nasty}" OR tag = "{nasty}" OR Device.B < "{nasty}")'
    )
    where, params = device_query.compile_filter(expr)
    assert "DROP" not in where and pc not in where
    assert params.count(nasty) == 4
    assert await device_query.count_devices(conn, expr) == 0
    where, params = device_query.compile_filter(expr, first_param=5)
    used = {int(n) for n in re.findall(r"\$(\d+)", where)}
    assert used == set(range(5, 5 + len(params)))
    with pytest.raises(ValueError, match="unknown field"):
        device_query.compile_filter(Comparison("devices; --", "=", "x"))


async def test_tags(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial, 3)
    page = await device_query.list_devices(conn, parse_filter(f'DeviceID.ProductClass = "{pc}"'))
    first = page.items[0]["id"]
    assert await device_query.add_tags(conn, first, ["lab", "b:2", "lab"])
    assert await device_query.add_tags(conn, first, ["lab"])  # idempotent
    assert not await device_query.add_tags(conn, "no-such-device", ["lab"])
    assert not await device_query.remove_tags(conn, "no-such-device", ["lab"])
    for bad in (["white space"], [""], ["x" * 65], ["é"]):
        with pytest.raises(ValueError, match="invalid tag"):
            await device_query.add_tags(conn, first, bad)
    with pytest.raises(ValueError, match="list of strings"):
        await device_query.add_tags(conn, first, "lab")  # type: ignore[arg-type]
    await device_query.add_tags(conn, first, ["A-z_0.9:" + "x" * 55])
    tagged = await device_query.list_devices(
        conn, parse_filter(f'DeviceID.ProductClass = "{pc}" AND tag = "lab"')
    )
    assert [d["id"] for d in tagged.items] == [first]
    assert tagged.items[0]["tags"] == ["A-z_0.9:" + "x" * 55, "b:2", "lab"]
    assert await versions(conn, pc, 'tag != "lab"') == vs(1, 2)
    assert await versions(conn, pc, 'tag = "lab" AND tag = "b:2"') == vs(0)
    assert await versions(conn, pc, 'tag = "lab" AND tag = "nope"') == set()
    assert await device_query.remove_tags(conn, first, ["lab", "not-there"])
    assert await versions(conn, pc, 'tag = "lab"') == set()
    page = await device_query.list_devices(conn, parse_filter(f'DeviceID.ID = "{first}"'))
    assert page.items[0]["tags"] == ["A-z_0.9:" + "x" * 55, "b:2"]


async def _walk(
    conn: asyncpg.Connection, pc: str, sort: str, descending: bool, limit: int
) -> list[str]:
    expr = parse_filter(f'DeviceID.ProductClass = "{pc}"')
    seen: list[str] = []
    cursor = None
    while True:
        page = await device_query.list_devices(
            conn, expr, sort=sort, descending=descending, limit=limit, cursor=cursor
        )
        assert len(page.items) <= limit
        seen += [d["id"] for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen
        assert len(seen) <= page.total


def _expected_order(items: list[dict[str, Any]], sort: str, descending: bool) -> list[str]:
    field = {
        "id": "id",
        "last_inform": "lastInform",
        "product_class": "productClass",
        "software_version": "softwareVersion",
        "serial_number": "serialNumber",
    }[sort]

    # NULLs after every value ascending, before them descending (PostgreSQL's default)
    def key(d: dict[str, Any]) -> tuple[bool, str, str]:
        v = d[field]
        if field == "lastInform" and v is not None:
            v = datetime.fromisoformat(v).astimezone(UTC).isoformat()
        return (v is None, v or "", d["id"])

    return [d["id"] for d in sorted(items, key=key, reverse=descending)]


@pytest.mark.parametrize(
    "sort", ["id", "last_inform", "product_class", "software_version", "serial_number"]
)
@pytest.mark.parametrize("descending", [False, True])
async def test_cursor_paging_visits_every_device_once_in_order(
    conn, unique_serial, sort: str, descending: bool
) -> None:
    pc = await fleet(conn, unique_serial, 7)
    # ties and NULLs in the sort keys: the id breaks ties, NULLs form their own block
    tied = [
        await inform(
            conn, pc, unique_serial(), T0, [PV("Device.DeviceInfo.SoftwareVersion", "V3.3")]
        )
        for _ in range(2)
    ]
    bare = [await inform(conn, pc, unique_serial(), T0, []) for _ in range(3)]
    await conn.execute(
        "UPDATE device_sessions SET last_inform = NULL WHERE device_id = ANY($1::text[])",
        [bare[0], tied[0]],
    )
    everything = await device_query.list_devices(
        conn, parse_filter(f'DeviceID.ProductClass = "{pc}"'), limit=1000
    )
    assert everything.total == 12 and everything.next_cursor is None
    expected = _expected_order(everything.items, sort, descending)
    # the collation may order text differently from Python; the DB's own one-page
    # order is the reference, and must agree with Python's for these ASCII keys
    one_page = await device_query.list_devices(
        conn,
        parse_filter(f'DeviceID.ProductClass = "{pc}"'),
        sort=sort,
        descending=descending,
        limit=1000,
    )
    assert [d["id"] for d in one_page.items] == expected
    for limit in (1, 2, 5, 12, 13):
        assert await _walk(conn, pc, sort, descending, limit) == expected


async def test_paging_is_stable_under_inserts(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial, 6)
    expr = parse_filter(f'DeviceID.ProductClass = "{pc}"')
    first = await device_query.list_devices(conn, expr, sort="last_inform", limit=3)
    assert [d["softwareVersion"] for d in first.items] == ["V3.0", "V3.1", "V3.2"]
    # a device that sorts before the cursor and one that sorts after it
    await inform(
        conn,
        pc,
        unique_serial(),
        T0 - timedelta(days=1),
        [PV("Device.DeviceInfo.SoftwareVersion", "early")],
    )
    await inform(
        conn,
        pc,
        unique_serial(),
        T0 + timedelta(days=1),
        [PV("Device.DeviceInfo.SoftwareVersion", "late")],
    )
    rest = await device_query.list_devices(
        conn, expr, sort="last_inform", limit=10, cursor=first.next_cursor
    )
    assert [d["softwareVersion"] for d in rest.items] == ["V3.3", "V3.4", "V3.5", "late"]
    assert rest.total == 8 and rest.next_cursor is None


async def test_projection_and_item_shape(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial, 2)
    first_id = (
        await device_query.list_devices(conn, parse_filter(f'DeviceID.ProductClass = "{pc}"'))
    ).items[0]["id"]
    # an object entry (GetParameterNames learns those) is not a parameter
    await devices.add_object_instance(conn, first_id, "Device.WiFi.SSID.", 2, T0)
    expr = parse_filter(f'DeviceID.ProductClass = "{pc}"')
    page = await device_query.list_devices(
        conn,
        expr,
        projection=["Device.DeviceInfo.SoftwareVersion", "Device.WiFi.", "Device.No.Such"],
    )
    item = page.items[0]
    assert set(item) == {
        "id", "oui", "productClass", "serialNumber", "manufacturer", "lastInform", "lastBoot",
        "lastBootstrap", "registered", "softwareVersion", "hardwareVersion", "provisioningCode",
        "connectionRequestUrl", "cwmpVersion", "tags", "parameters",
    }  # fmt: skip
    assert item["id"] == first_id and item["oui"] == OUI and item["productClass"] == pc
    at = "2026-11-01T00:00:00Z"
    assert item["lastInform"] == at and item["lastBoot"] == at
    assert item["lastBootstrap"] is None and item["cwmpVersion"] == "1.0"
    assert item["parameters"] == {
        "Device.DeviceInfo.SoftwareVersion": {
            "value": "V3.0",
            "type": "xsd:string",
            "writable": None,
            "valueAt": "2026-11-01T00:00:00Z",
        },
        "Device.WiFi.SSID.1.SSID": {
            "value": "net-0",
            "type": "xsd:string",
            "writable": None,
            "valueAt": "2026-11-01T00:00:00Z",
        },
    }
    # a prefix is a prefix, not a LIKE pattern: "%" and "_" are literal
    page = await device_query.list_devices(conn, expr, projection=["Device.%.", "Device.W_Fi."])
    assert page.items[0]["parameters"] == {}
    page = await device_query.list_devices(conn, expr)
    assert page.items[0]["parameters"] == {}


async def test_bad_arguments_are_value_errors(conn, unique_serial) -> None:
    pc = await fleet(conn, unique_serial, 3)
    expr = parse_filter(f'DeviceID.ProductClass = "{pc}"')
    with pytest.raises(ValueError, match="invalid cursor"):
        await device_query.list_devices(conn, None, cursor="!!not-a-cursor")
    with pytest.raises(ValueError, match="invalid cursor"):
        await device_query.list_devices(conn, None, cursor="WzEsMiwzXQ")  # [1,2,3]
    with pytest.raises(ValueError, match="cannot sort by 'password'"):
        await device_query.list_devices(conn, None, sort="password")
    with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
        await device_query.list_devices(conn, None, limit=0)
    with pytest.raises(ValueError, match="must start with Device."):
        await device_query.list_devices(conn, expr, projection=["Foo.Bar"])
    page = await device_query.list_devices(conn, expr, limit=1, sort="serial_number")
    assert page.next_cursor is not None
    with pytest.raises(ValueError, match="another sort order"):
        await device_query.list_devices(conn, expr, limit=1, sort="id", cursor=page.next_cursor)
    with pytest.raises(ValueError, match="another sort order"):
        await device_query.list_devices(
            conn, expr, limit=1, sort="serial_number", descending=True, cursor=page.next_cursor
        )


async def _plan(conn: asyncpg.Connection, sql: str, params: list[object]) -> str:
    rows = await conn.fetch(f"EXPLAIN {sql}", *params)
    return "\n".join(r[0] for r in rows)


async def test_filters_use_their_indexes(conn, unique_serial) -> None:
    """The planner picks the index for each indexed term.

    The test tables are small, where a sequential scan is the cheapest plan,
    so enable_seqscan=off (local to the transaction) takes that choice away;
    the index the planner then picks is the one the condition fits. The same
    plans without that setting on a few thousand devices are in the report of
    the change that added this module.
    """
    await fleet(conn, unique_serial, 2)
    cases = {
        'Device.WiFi.SSID.1.SSID = "x"': "device_parameters_tree_idx",
        'DeviceID.ProductClass = "x"': "devices_product_class_id_idx",
        'SoftwareVersion < "V3"': "devices_software_version_id_idx",
        'LastInform > "2026-01-01"': "device_sessions_last_inform_idx",
        'tag = "lab"': "devices_tags_idx",
        'DeviceID.ID = "x"': "devices_pkey",
    }
    for text, index in cases.items():
        where, params = device_query.compile_filter(parse_filter(text))
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            # and a full walk of another index (the primary key) with a filter:
            # what is left are scans whose condition is the index's
            await conn.execute("SET LOCAL enable_indexscan = off")
            plan = await _plan(
                conn,
                "SELECT d.id FROM devices d LEFT JOIN device_parameters dp"
                f" ON dp.device_id = d.id WHERE {where}",
                params,
            )
        assert index in plan, f"{text}:\n{plan}"
