"""Inform input past TR-069's bounds is a CWMP fault naming the field, with nothing
written; an Inform with an empty Event list is served and keeps the device's last
events."""

from __future__ import annotations

import asyncpg
import pytest

from acs.cwmp import messages as m
from acs.cwmp.soap import parse_envelope
from acs.store import devices, session_logs
from acs.store.ids import device_id
from acs.web.server import Running
from tests.e2e.conftest import cwmp_url
from tests.e2e.cpe_double import CpeDouble

pytestmark = pytest.mark.db


def fault_of(body: bytes) -> m.Fault:
    env = parse_envelope(body)
    assert env is not None and isinstance(env.body, m.Fault), body[:400]
    return env.body


def set_value(inform: m.Inform, suffix: str, value: str) -> None:
    for p in inform.parameter_list:
        if p.name.endswith(suffix):
            p.value = value
            return
    inform.parameter_list.append(m.ParameterValueStruct("Device." + suffix, value))


def _serial(inform: m.Inform, v: str) -> None:
    inform.device_id.serial_number = v


def _product_class(inform: m.Inform, v: str) -> None:
    inform.device_id.product_class = v


def _manufacturer(inform: m.Inform, v: str) -> None:
    inform.device_id.manufacturer = v


def _oui(inform: m.Inform, v: str) -> None:
    inform.device_id.oui = v


def _event_code(inform: m.Inform, v: str) -> None:
    inform.events[0].event_code = v


def _command_key(inform: m.Inform, v: str) -> None:
    inform.events[0].command_key = v


def _many_events(inform: m.Inform, _v: str) -> None:
    inform.events = [m.EventStruct("M X_ACME_Thing") for _ in range(65)]


def _name(inform: m.Inform, _v: str) -> None:
    inform.parameter_list.append(m.ParameterValueStruct("Device." + "A" * 300, "1"))


def _value(inform: m.Inform, _v: str) -> None:
    inform.parameter_list.append(m.ParameterValueStruct("Device.X_Big", "v" * 70_000))


def _xsd_type(inform: m.Inform, _v: str) -> None:
    inform.parameter_list.append(m.ParameterValueStruct("Device.X_T", "1", "xsd:" + "t" * 100))


CASES = [
    (_serial, "S" * 1400, "DeviceId.SerialNumber", "1400 characters, at most 64"),
    (_serial, "S" * 65, "DeviceId.SerialNumber", "65 characters, at most 64"),
    (_product_class, "P" * 3000, "DeviceId.ProductClass", "3000 characters, at most 64"),
    (_manufacturer, "M" * 65, "DeviceId.Manufacturer", "at most 64"),
    (_oui, "ACDE481", "DeviceId.OUI", "six hexadecimal digits"),
    (_oui, "ACDEZZ", "DeviceId.OUI", "six hexadecimal digits"),
    (_oui, "", "DeviceId.OUI", "six hexadecimal digits"),
    (
        lambda i, v: set_value(i, "DeviceInfo.SoftwareVersion", v),
        "1." * 2000,
        "DeviceInfo.SoftwareVersion).Value",
        "4000 characters, at most 64",
    ),
    (
        lambda i, v: set_value(i, "DeviceInfo.HardwareVersion", v),
        "H" * 65,
        "DeviceInfo.HardwareVersion).Value",
        "at most 64",
    ),
    (
        lambda i, v: set_value(i, "ManagementServer.ConnectionRequestURL", v),
        "http://x/" + "a" * 300,
        "ConnectionRequestURL).Value",
        "at most 256",
    ),
    (_event_code, "E" * 65, "Event[0].EventCode", "at most 64"),
    (_event_code, " ", "Event[0].EventCode", "must not be empty"),
    (_command_key, "k" * 33, "Event[0].CommandKey", "at most 32"),
    (_many_events, "", "Event", "65 events, at most 64"),
    (_name, "", "ParameterList[", "at most 256"),
    (_value, "", "(Device.X_Big).Value", "70000 characters, at most 65536"),
    (_xsd_type, "", "xsi:type", "at most 64"),
]


@pytest.mark.parametrize(("mutate", "value", "field", "problem"), CASES)
async def test_inform_past_a_bound_is_fault_8003_naming_the_field(
    acs: Running, db_pool: asyncpg.Pool, unique_serial, mutate, value, field, problem
) -> None:
    serial = unique_serial("BND")
    cpe = CpeDouble(cwmp_url(acs), serial)
    try:
        inform = cpe.inform_message(["1 BOOT"])
        mutate(inform, value)
        reply = await cpe.post(inform)
        assert reply.status == 400, reply.body[:300]
        fault = fault_of(reply.body)
        assert fault.fault_code == 8003
        assert field in fault.fault_string and problem in fault.fault_string, fault.fault_string
        async with db_pool.acquire() as conn:
            # by serial: this test's own (other tests share the OUI and product class)
            written = await conn.fetchval(
                "SELECT count(*) FROM devices WHERE serial_number = ANY($1::text[])",
                [serial, inform.device_id.serial_number],
            )
        assert written == 0
        assert acs.cwmp.by_id == {}
    finally:
        await cpe.close()


async def test_inform_at_the_bounds_is_served(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    """64 characters (multi-byte ones included) is allowed, and stored whole."""
    serial = (unique_serial("BND") + "é" * 64)[:64]
    product_class = "Ж" * 64
    cpe = CpeDouble(cwmp_url(acs), serial, product_class=product_class)
    try:
        inform = cpe.inform_message(["1 BOOT"])
        set_value(inform, "DeviceInfo.SoftwareVersion", "𝟘" * 64)
        reply = await cpe.post(inform)
        assert reply.status == 200 and isinstance(reply.message, m.InformResponse)
        async with db_pool.acquire() as conn:
            dev = await devices.get_device(conn, device_id("ACDE48", product_class, serial))
        assert dev is not None
        assert dev.serial_number == serial and dev.product_class == product_class
        assert dev.software_version == "𝟘" * 64
    finally:
        await cpe.close()


async def test_empty_event_list_keeps_the_last_events(
    acs: Running, db_pool: asyncpg.Pool, unique_serial
) -> None:
    cpe = CpeDouble(cwmp_url(acs), unique_serial("EVT"))
    ident = cpe.identity
    dev_id = device_id(ident.oui, ident.product_class, ident.serial_number)
    try:
        await cpe.session(["0 BOOTSTRAP", "1 BOOT"])
        async with db_pool.acquire() as conn:
            before = await devices.get_device(conn, dev_id)
        assert before is not None and before.last_events == ["0 BOOTSTRAP", "1 BOOT"]

        # firmware that reloaded its configuration: an Inform with no event at all
        await cpe.session([])
        async with db_pool.acquire() as conn:
            after = await devices.get_device(conn, dev_id)
            logs = await session_logs.list_sessions(conn, dev_id)
        assert after is not None
        assert after.last_events == ["0 BOOTSTRAP", "1 BOOT"]
        assert after.last_inform is not None and before.last_inform is not None
        assert after.last_inform > before.last_inform  # the Inform itself was recorded
        # the newest session is on record as one without events
        assert len(logs) == 2
        assert logs[0].events == [] and logs[0].outcome == "completed"
        assert logs[1].events == ["0 BOOTSTRAP", "1 BOOT"]

        # a later Inform with events replaces them as before
        await cpe.session(["2 PERIODIC"])
        async with db_pool.acquire() as conn:
            later = await devices.get_device(conn, dev_id)
        assert later is not None and later.last_events == ["2 PERIODIC"]
    finally:
        await cpe.close()
