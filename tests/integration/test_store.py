"""The PostgreSQL store against a real server (see tests/conftest.py)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from acs.cwmp.messages import (
    ParameterAttributeStruct,
    ParameterInfoStruct,
    ParameterValueStruct,
)
from acs.store import credentials, devices, sessions, tasks
from acs.store.db import (
    connect,
    drop_database,
    ensure_database,
    migrate,
    migration_files,
)
from acs.store.ids import device_id

pytestmark = pytest.mark.db

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PV = ParameterValueStruct


# --------------------------------------------------------------------------- ids


def test_device_id_plain() -> None:
    assert device_id("00259E", "HG8245H", "4857544312345678") == "00259E-HG8245H-4857544312345678"


def test_device_id_escapes_like_genieacs() -> None:
    assert device_id("001122", "Home Gateway", "ab-1") == "001122-Home%20Gateway-ab%2D1"
    # bytes below 0x10 have no zero padding
    assert device_id("001122", "X", "a\nb") == "001122-X-a%Ab"
    assert device_id("001122", "X", "a_b.c") == "001122-X-a_b%2Ec"


def test_device_id_unicode_is_utf8_bytes() -> None:
    assert device_id("001122", "Box", "é") == "001122-Box-%C3%A9"
    assert device_id("001122", "Box", "€1") == "001122-Box-%E2%82%AC1"


def test_device_id_without_product_class() -> None:
    assert device_id("001122", "", "SN1") == "001122-SN1"


# --------------------------------------------------------------------------- helpers


def inform(
    serial: str,
    params: list[ParameterValueStruct] | None = None,
    *,
    events: list[str] | None = None,
    at: datetime = T0,
    root: str = "Device.",
) -> devices.InformRecord:
    if params is None:
        params = [
            PV(root + "DeviceInfo.SoftwareVersion", "1.0"),
            PV(root + "DeviceInfo.HardwareVersion", "HW1"),
            PV(root + "DeviceInfo.ProvisioningCode", "PC"),
            PV(root + "ManagementServer.ConnectionRequestURL", "http://10.0.0.1:7547/cr"),
            PV(root + "ManagementServer.PeriodicInformInterval", "300", "xsd:unsignedInt"),
        ]
    return devices.InformRecord(
        device_id=device_id("00259E", "HG8245H", serial),
        manufacturer="Huawei",
        oui="00259E",
        product_class="HG8245H",
        serial_number=serial,
        events=events if events is not None else ["2 PERIODIC"],
        remote_address="10.0.0.1",
        cwmp_version="urn:dslforum-org:cwmp-1-2",
        parameters=params,
        at=at,
    )


async def new_device(conn: asyncpg.Connection, unique_serial: Callable[..., str]) -> str:
    dev, created = await devices.upsert_from_inform(conn, inform(unique_serial(), params=[]))
    assert created
    return dev.id


async def tree_xmin(conn: asyncpg.Connection, dev_id: str) -> str:
    xmin: str = await conn.fetchval(
        "SELECT xmin::text FROM device_parameters WHERE device_id = $1", dev_id
    )
    return xmin


# --------------------------------------------------------------------------- devices


async def test_upsert_from_inform_creates_then_updates(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev, created = await devices.upsert_from_inform(
        conn, inform(serial, events=["0 BOOTSTRAP", "1 BOOT"])
    )
    assert created
    assert dev.id == f"00259E-HG8245H-{serial}"
    assert (dev.software_version, dev.hardware_version, dev.provisioning_code) == (
        "1.0",
        "HW1",
        "PC",
    )
    assert dev.connection_request_url == "http://10.0.0.1:7547/cr"
    assert dev.last_inform == dev.last_boot == dev.last_bootstrap == T0
    assert dev.last_events == ["0 BOOTSTRAP", "1 BOOT"]
    assert dev.parameter_count == 5
    assert dev.cwmp_version == "urn:dslforum-org:cwmp-1-2"

    later = T0 + timedelta(minutes=5)
    rec = inform(serial, [PV("Device.DeviceInfo.SoftwareVersion", "2.0")], at=later)
    rec.remote_address = None
    dev2, created2 = await devices.upsert_from_inform(conn, rec)
    assert not created2
    assert dev2.last_inform == later
    assert dev2.last_boot == T0  # no "1 BOOT" this time
    assert dev2.last_events == ["2 PERIODIC"]
    assert dev2.software_version == "2.0"
    # absent from this Inform: kept
    assert dev2.connection_request_url == "http://10.0.0.1:7547/cr"
    assert dev2.remote_address == "10.0.0.1"
    assert dev2.parameter_count == 5
    assert await devices.get_device(conn, dev.id) == dev2


async def test_tr098_root_hot_fields(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev, _ = await devices.upsert_from_inform(
        conn, inform(unique_serial(), root="InternetGatewayDevice.")
    )
    assert dev.software_version == "1.0"
    assert dev.connection_request_url == "http://10.0.0.1:7547/cr"


async def test_unchanged_inform_does_not_rewrite_tree(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev, _ = await devices.upsert_from_inform(conn, inform(serial))
    xmin = await tree_xmin(conn, dev.id)
    await devices.upsert_from_inform(conn, inform(serial, at=T0 + timedelta(minutes=5)))
    assert await tree_xmin(conn, dev.id) == xmin
    # GetParameterValues repeating known values: no write either
    changed = await devices.merge_parameter_values(
        conn, dev.id, [PV("Device.DeviceInfo.SoftwareVersion", "1.0")], T0 + timedelta(hours=1)
    )
    assert changed == 0
    assert await tree_xmin(conn, dev.id) == xmin

    # one changed value: the row is rewritten, only that entry's timestamp moves
    later = T0 + timedelta(minutes=10)
    params = inform(serial).parameters
    params[0] = PV("Device.DeviceInfo.SoftwareVersion", "1.1")
    await devices.upsert_from_inform(conn, inform(serial, params, at=later))
    assert await tree_xmin(conn, dev.id) != xmin
    tree = await devices.get_parameters(conn, dev.id)
    assert tree["Device.DeviceInfo.SoftwareVersion"].value == "1.1"
    assert tree["Device.DeviceInfo.SoftwareVersion"].value_at == later
    assert tree["Device.DeviceInfo.HardwareVersion"].value_at == T0


async def test_explicit_read_moves_the_read_time_of_unchanged_values(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    serial = unique_serial()
    dev, _ = await devices.upsert_from_inform(conn, inform(serial))
    later = T0 + timedelta(hours=2)
    written = await devices.merge_parameter_values(
        conn, dev.id, [PV("Device.DeviceInfo.SoftwareVersion", "1.0")], later, read=True
    )
    assert written == 1
    tree = await devices.get_parameters(conn, dev.id)
    assert tree["Device.DeviceInfo.SoftwareVersion"].value == "1.0"
    assert tree["Device.DeviceInfo.SoftwareVersion"].value_at == later
    assert tree["Device.DeviceInfo.HardwareVersion"].value_at == T0


async def test_type_change_alone_is_a_change(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    p = "Device.ManagementServer.PeriodicInformInterval"
    assert await devices.merge_parameter_values(conn, dev_id, [PV(p, "300")], T0) == 1
    assert (
        await devices.merge_parameter_values(conn, dev_id, [PV(p, "300", "xsd:unsignedInt")], T0)
        == 1
    )
    rec = (await devices.get_parameters(conn, dev_id))[p]
    assert rec.xsd_type == "xsd:unsignedInt"
    raw = await conn.fetchval(
        "SELECT tree -> $2 FROM device_parameters WHERE device_id = $1", dev_id, p
    )
    assert raw["t"] == "unsignedInt"  # stored without the prefix


async def test_merge_values_and_get_parameters(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    values = [
        PV("Device.WiFi.SSID.1.SSID", "home"),
        PV("Device.WiFi.SSID.1.Enable", "true", "xsd:boolean"),
        PV("Device.IP.Interface.1.Enable", "1", "xsd:boolean"),
    ]
    assert await devices.merge_parameter_values(conn, dev_id, values, T0) == 3
    wifi = await devices.get_parameters(conn, dev_id, "Device.WiFi.")
    assert set(wifi) == {"Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.1.Enable"}
    rec = wifi["Device.WiFi.SSID.1.Enable"]
    assert rec == devices.ParameterRecord(
        value="true",
        xsd_type="xsd:boolean",
        writable=None,
        notification=None,
        access_list=None,
        value_at=T0,
        attributes_at=None,
        names_at=None,
        object=False,
    )
    dev = await devices.get_device(conn, dev_id)
    assert dev is not None and dev.parameter_count == 3
    assert await devices.get_parameters(conn, "no-such-device") == {}


async def _discovered(conn: asyncpg.Connection, dev_id: str) -> None:
    names = [
        ("Device.", False),
        ("Device.WiFi.", False),
        ("Device.WiFi.SSID.", False),
        ("Device.WiFi.SSID.1.", True),
        ("Device.WiFi.SSID.1.SSID", True),
        ("Device.WiFi.SSID.2.", True),
        ("Device.WiFi.SSID.2.SSID", True),
        ("Device.WiFi.SSID.2.Stats.", False),
        ("Device.WiFi.SSID.2.Stats.BytesSent", False),
        ("Device.WiFi.SSIDNumberOfEntries", False),
    ]
    infos = [ParameterInfoStruct(n, w) for n, w in names]
    await devices.merge_parameter_names(conn, dev_id, "Device.", False, infos, T0)


async def test_gpn_full_deletes_unlisted_entries_below_path(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    assert await devices.tree_is_empty(conn, dev_id)
    await _discovered(conn, dev_id)
    assert not await devices.tree_is_empty(conn, dev_id)
    tree = await devices.get_parameters(conn, dev_id)
    assert tree["Device.WiFi.SSID.1."].object and tree["Device.WiFi.SSID.1."].writable
    assert tree["Device.WiFi.SSID.1.SSID"].names_at == T0

    later = T0 + timedelta(hours=1)
    infos = [
        ParameterInfoStruct("Device.WiFi.SSID.", False),
        ParameterInfoStruct("Device.WiFi.SSID.1.", True),
        ParameterInfoStruct("Device.WiFi.SSID.1.SSID", False),  # writable changed
    ]
    await devices.merge_parameter_names(conn, dev_id, "Device.WiFi.SSID.", False, infos, later)
    tree = await devices.get_parameters(conn, dev_id)
    assert set(tree) == {
        "Device.",
        "Device.WiFi.",
        "Device.WiFi.SSID.",
        "Device.WiFi.SSID.1.",
        "Device.WiFi.SSID.1.SSID",
        "Device.WiFi.SSIDNumberOfEntries",  # outside the path: untouched
    }
    assert tree["Device.WiFi.SSID.1.SSID"].writable is False
    assert tree["Device.WiFi.SSID.1.SSID"].names_at == later
    assert tree["Device.WiFi.SSID.1."].names_at == T0  # unchanged entries keep their time
    dev = await devices.get_device(conn, dev_id)
    assert dev is not None and dev.parameter_count == 6


async def test_gpn_next_level_deletes_unlisted_children_with_subtrees(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    await _discovered(conn, dev_id)
    infos = [ParameterInfoStruct("Device.WiFi.SSID.1.", True)]
    await devices.merge_parameter_names(conn, dev_id, "Device.WiFi.SSID.", True, infos, T0)
    tree = await devices.get_parameters(conn, dev_id, "Device.WiFi.")
    # instance 2 is gone with its subtree; instance 1 keeps its own children
    assert set(tree) == {
        "Device.WiFi.",
        "Device.WiFi.SSID.",
        "Device.WiFi.SSID.1.",
        "Device.WiFi.SSID.1.SSID",
        "Device.WiFi.SSIDNumberOfEntries",
    }


async def test_gpn_unchanged_does_not_rewrite(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    await _discovered(conn, dev_id)
    xmin = await tree_xmin(conn, dev_id)
    await _discovered(conn, dev_id)
    assert await tree_xmin(conn, dev_id) == xmin


async def test_parameter_attributes(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    await devices.merge_parameter_values(conn, dev_id, [PV("Device.WiFi.SSID.1.SSID", "x")], T0)
    attrs = [ParameterAttributeStruct("Device.WiFi.SSID.1.SSID", 2, ["Subscriber"])]
    await devices.merge_parameter_attributes(conn, dev_id, attrs, T0)
    rec = (await devices.get_parameters(conn, dev_id))["Device.WiFi.SSID.1.SSID"]
    assert (rec.value, rec.notification, rec.access_list, rec.attributes_at) == (
        "x",
        2,
        ["Subscriber"],
        T0,
    )


async def test_add_and_delete_object(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    await _discovered(conn, dev_id)
    await devices.add_object_instance(conn, dev_id, "Device.WiFi.SSID.", 3, T0)
    tree = await devices.get_parameters(conn, dev_id)
    assert "Device.WiFi.SSID.3." in tree and tree["Device.WiFi.SSID.3."].object
    await devices.delete_object(conn, dev_id, "Device.WiFi.SSID.2.")
    tree = await devices.get_parameters(conn, dev_id, "Device.WiFi.SSID.")
    assert sorted(tree) == [
        "Device.WiFi.SSID.",
        "Device.WiFi.SSID.1.",
        "Device.WiFi.SSID.1.SSID",
        "Device.WiFi.SSID.3.",
    ]
    dev = await devices.get_device(conn, dev_id)
    assert dev is not None and dev.parameter_count == 10 + 1 - 4


async def test_delete_device_cascades(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    await devices.merge_parameter_values(conn, dev_id, [PV("Device.X", "1")], T0)
    task = await tasks.enqueue(conn, dev_id, "reboot", {})
    assert await devices.delete_device(conn, dev_id)
    assert not await devices.delete_device(conn, dev_id)
    assert await devices.get_device(conn, dev_id) is None
    assert await tasks.get_task(conn, task.id) is None
    assert await devices.get_parameters(conn, dev_id) == {}


async def test_changes_inside_caller_transaction_roll_back(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    with pytest.raises(RuntimeError):
        async with conn.transaction():
            await devices.merge_parameter_names(
                conn, dev_id, "", False, [ParameterInfoStruct("Device.", False)], T0
            )
            raise RuntimeError
    assert await devices.tree_is_empty(conn, dev_id)


# --------------------------------------------------------------------------- storage size


def synthetic_tr181(n_target: int = 1000) -> tuple[list[ParameterInfoStruct], list[PV]]:
    """A TR-181-ish tree of about n_target entries with realistic names and values."""
    infos: list[ParameterInfoStruct] = []
    values: list[PV] = []

    def obj(path: str, writable: bool = False) -> None:
        infos.append(ParameterInfoStruct(path, writable))

    def param(path: str, value: str, xsd: str = "xsd:string", writable: bool = True) -> None:
        infos.append(ParameterInfoStruct(path, writable))
        values.append(PV(path, value, xsd))

    obj("Device.")
    obj("Device.DeviceInfo.")
    for name, value in [
        ("Manufacturer", "Huawei Technologies Co., Ltd"),
        ("ManufacturerOUI", "00259E"),
        ("ModelName", "HG8245H"),
        ("SerialNumber", "4857544312345678"),
        ("SoftwareVersion", "V3R017C10S115"),
        ("HardwareVersion", "1E8D.A"),
        ("UpTime", "123456"),
    ]:
        param(f"Device.DeviceInfo.{name}", value, writable=False)
    i = 0
    while len(infos) < n_target:
        i += 1
        base = f"Device.IP.Interface.{i}."
        obj(base, True)
        param(base + "Enable", "true", "xsd:boolean")
        param(base + "Status", "Up", writable=False)
        param(base + "Alias", f"cpe-ip-{i}")
        param(base + "Name", f"eth0.{i}", writable=False)
        param(base + "LastChange", str(1000 + i), "xsd:unsignedInt", writable=False)
        param(base + "LowerLayers", f"Device.Ethernet.Link.{i}.")
        param(base + "MaxMTUSize", "1500", "xsd:unsignedInt")
        param(base + "Type", "Normal", writable=False)
        obj(base + "IPv4Address.")
        obj(base + "IPv4Address.1.", True)
        param(base + "IPv4Address.1.Enable", "true", "xsd:boolean")
        param(base + "IPv4Address.1.IPAddress", f"192.168.{i % 255}.1")
        param(base + "IPv4Address.1.SubnetMask", "255.255.255.0")
        param(base + "IPv4Address.1.AddressingType", "Static", writable=False)
        obj(base + "Stats.")
        for counter in ("BytesSent", "BytesReceived", "PacketsSent", "PacketsReceived"):
            param(
                base + "Stats." + counter,
                str(secrets.randbelow(10**9)),
                "xsd:unsignedLong",
                writable=False,
            )
    return infos, values


async def test_storage_per_device_for_1000_parameters(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    infos, values = synthetic_tr181()
    await devices.merge_parameter_names(conn, dev_id, "Device.", False, infos, T0)
    await devices.merge_parameter_values(conn, dev_id, values, T0)
    attrs = [ParameterAttributeStruct(v.name, 0, []) for v in values[:50]]
    await devices.merge_parameter_attributes(conn, dev_id, attrs, T0)
    row = await conn.fetchrow(
        """
        SELECT pg_column_size(dp.tree) AS tree_bytes,
               pg_column_size(dp.*) AS tree_row_bytes,
               octet_length(dp.tree::text) AS tree_text_bytes,
               (SELECT pg_column_size(d.*) FROM devices d WHERE d.id = dp.device_id) AS dev_row,
               pg_column_compression(dp.tree) AS compression,
               (SELECT parameter_count FROM devices WHERE id = dp.device_id) AS n
        FROM device_parameters dp WHERE device_id = $1
        """,
        dev_id,
    )
    assert row is not None
    print(
        f"\n[storage] {row['n']} entries: tree {row['tree_bytes']} B on disk "
        f"({row['tree_text_bytes']} B as text), tree row {row['tree_row_bytes']} B, "
        f"device row {row['dev_row']} B, compression={row['compression']}"
    )
    assert row["n"] == len(infos) >= 1000
    assert row["tree_row_bytes"] + row["dev_row"] <= 64 * 1024


# --------------------------------------------------------------------------- sessions


async def test_session_lock(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    assert await sessions.acquire_session(conn, dev_id, "A", 0.5)
    assert await sessions.acquire_session(conn, dev_id, "A", 0.5)  # ours already
    async with db_pool.acquire() as other:
        assert not await sessions.acquire_session(other, dev_id, "B", 30)
        assert not await sessions.renew_session(other, dev_id, "B", 30)
        assert await sessions.renew_session(conn, dev_id, "A", 0.2)
        await asyncio.sleep(0.3)
        assert await sessions.acquire_session(other, dev_id, "B", 30)
        assert not await sessions.renew_session(conn, dev_id, "A", 30)
        await sessions.release_session(conn, dev_id, "A")  # not ours any more: no-op
        dev = await devices.get_device(conn, dev_id)
        assert dev is not None and dev.session_id == "B"
        await sessions.release_session(other, dev_id, "B")
    assert await sessions.acquire_session(conn, dev_id, "C", 30)
    with pytest.raises(LookupError):
        await sessions.acquire_session(conn, "no-such-device", "A", 30)


# --------------------------------------------------------------------------- tasks


async def test_task_lifecycle(conn: asyncpg.Connection, unique_serial: Callable[..., str]) -> None:
    dev_id = await new_device(conn, unique_serial)
    assert not await tasks.has_pending(conn, dev_id)
    args = {"parameterValues": [["Device.WiFi.SSID.1.SSID", "x", "xsd:string"]]}
    t1 = await tasks.enqueue(conn, dev_id, "setParameterValues", args)
    t2 = await tasks.enqueue(conn, dev_id, "reboot", {}, command_key="ck")
    assert t1.status == "pending" and t1.args == args and t1.attempts == 0
    assert await tasks.has_pending(conn, dev_id)

    async with conn.transaction():
        got = await tasks.next_pending(conn, dev_id)
        assert got is not None and got.id == t1.id
        await tasks.mark_running(conn, got.id, "S1")
    running = await tasks.get_task(conn, t1.id)
    assert running is not None
    assert (running.status, running.attempts, running.session_id) == ("running", 1, "S1")
    assert running.started_at is not None
    await tasks.mark_done(conn, t1.id, {"status": 0})

    nxt = await tasks.next_pending(conn, dev_id)
    assert nxt is not None and nxt.id == t2.id and nxt.command_key == "ck"
    await tasks.mark_running(conn, t2.id, "S1")
    await tasks.mark_fault(conn, t2.id, 9002, "Internal error", {"detail": 1})
    assert await tasks.next_pending(conn, dev_id) is None
    assert not await tasks.has_pending(conn, dev_id)

    done, fault = await tasks.list_tasks(conn, dev_id)
    assert (done.status, done.result, done.finished_at is not None) == ("done", {"status": 0}, True)
    assert (fault.status, fault.fault_code, fault.fault_string, fault.result) == (
        "fault",
        9002,
        "Internal error",
        {"detail": 1},
    )


async def test_unique_key_replaces_pending(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    first = await tasks.enqueue(conn, dev_id, "download", {"v": 1}, unique_key="fw")
    second = await tasks.enqueue(conn, dev_id, "download", {"v": 2}, unique_key="fw")
    other = await tasks.enqueue(conn, dev_id, "reboot", {}, unique_key="rb")
    by_id = {t.id: t for t in await tasks.list_tasks(conn, dev_id)}
    assert by_id[first.id].status == "cancelled"
    assert by_id[second.id].status == "pending"
    assert by_id[other.id].status == "pending"


async def test_unique_key_concurrent_enqueues_leave_one_pending(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)

    async def enqueue(i: int) -> None:
        async with db_pool.acquire() as c:
            await tasks.enqueue(c, dev_id, "download", {"i": i}, unique_key="fw")

    await asyncio.gather(*(enqueue(i) for i in range(6)))
    statuses = [t.status for t in await tasks.list_tasks(conn, dev_id)]
    assert statuses.count("pending") == 1 and statuses.count("cancelled") == 5


async def test_not_before_and_expiry(
    conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    now = await conn.fetchval("SELECT now()")
    late = await tasks.enqueue(conn, dev_id, "reboot", {}, not_before=now + timedelta(hours=1))
    stale = await tasks.enqueue(
        conn, dev_id, "factoryReset", {}, expires_at=now - timedelta(seconds=1)
    )
    assert not await tasks.has_pending(conn, dev_id)
    assert await tasks.next_pending(conn, dev_id) is None
    stale_now = await tasks.get_task(conn, stale.id)
    late_now = await tasks.get_task(conn, late.id)
    assert stale_now is not None and stale_now.status == "expired"
    assert late_now is not None and late_now.status == "pending"


async def test_next_pending_skips_locked(
    db_pool: asyncpg.Pool, conn: asyncpg.Connection, unique_serial: Callable[..., str]
) -> None:
    dev_id = await new_device(conn, unique_serial)
    t1 = await tasks.enqueue(conn, dev_id, "reboot", {})
    t2 = await tasks.enqueue(conn, dev_id, "getParameterValues", {"parameterNames": ["Device."]})
    async with db_pool.acquire() as other, conn.transaction(), other.transaction():
        a = await tasks.next_pending(conn, dev_id)
        b = await tasks.next_pending(other, dev_id)  # must not wait for conn's lock
        assert a is not None and b is not None
        assert (a.id, b.id) == (t1.id, t2.id)


async def test_requeue_running(conn: asyncpg.Connection, unique_serial: Callable[..., str]) -> None:
    dev_id = await new_device(conn, unique_serial)
    t1 = await tasks.enqueue(conn, dev_id, "reboot", {})
    t2 = await tasks.enqueue(conn, dev_id, "download", {"v": 1}, unique_key="fw")
    for t in (t1, t2):
        await tasks.mark_running(conn, t.id, "dead-session")
    t3 = await tasks.enqueue(conn, dev_id, "download", {"v": 2}, unique_key="fw")
    assert await tasks.requeue_running(conn, dev_id) == 1
    by_id = {t.id: t for t in await tasks.list_tasks(conn, dev_id)}
    assert by_id[t1.id].status == "pending" and by_id[t1.id].session_id is None
    assert by_id[t1.id].attempts == 1
    assert by_id[t2.id].status == "cancelled"  # superseded by t3 while it was running
    assert by_id[t3.id].status == "pending"
    assert await tasks.requeue_running(conn, dev_id) == 0


# --------------------------------------------------------------------------- credentials


async def test_credentials(conn: asyncpg.Connection, unique_serial: Callable[..., str]) -> None:
    user = unique_serial("user")
    assert await credentials.get_credential(conn, user) is None
    await credentials.set_credential(conn, user, "secret", "acs")
    ha1, realm, dev = await credentials.get_credential(conn, user) or ("", "", "")
    assert ha1 == credentials.compute_ha1(user, "acs", "secret") and len(ha1) == 32
    assert (realm, dev) == ("acs", None)
    await credentials.set_credential(conn, user, "other", "acs2", device_id="D-1")
    assert await credentials.get_credential(conn, user) == (
        credentials.compute_ha1(user, "acs2", "other"),
        "acs2",
        "D-1",
    )
    assert await credentials.delete_credential(conn, user)
    assert not await credentials.delete_credential(conn, user)


def test_ha1_known_value() -> None:
    # RFC 2617 section 3.5 example: Mufasa / testrealm@host.com / Circle Of Life
    assert (
        credentials.compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
        == "939e7578ed9e3c518a452acee763bce9"
    )


# --------------------------------------------------------------------------- migrations


async def test_concurrent_migrate_applies_each_file_once(pg_admin_url: str) -> None:
    name = f"acs_test_mig_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    try:
        c1, c2 = await connect(url), await connect(url)
        try:
            r1, r2 = await asyncio.gather(migrate(c1), migrate(c2))
            expected = [n for n, _ in migration_files()]
            assert sorted(r1 + r2) == expected
            assert await migrate(c1) == []
            recorded = await c1.fetch("SELECT name FROM schema_migrations ORDER BY name")
            assert [r["name"] for r in recorded] == expected
        finally:
            await c1.close()
            await c2.close()
    finally:
        await drop_database(pg_admin_url, name)


async def test_ensure_database_is_idempotent(pg_admin_url: str) -> None:
    name = f"acs_test_db_{secrets.token_hex(4)}"
    try:
        url1 = await ensure_database(pg_admin_url, name)
        url2 = await ensure_database(pg_admin_url, name)
        assert url1 == url2
        c = await connect(url1)
        try:
            assert await c.fetchval("SELECT current_database()") == name
        finally:
            await c.close()
    finally:
        await drop_database(pg_admin_url, name)
