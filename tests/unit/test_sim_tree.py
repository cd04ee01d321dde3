"""The per-device parameter tree: CPE-side RPC semantics, faults, density."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from acs.cwmp.messages import (
    ParameterInfoStruct,
    ParameterValueStruct,
    SetParameterAttributesStruct,
)
from cpe_simulator.datamodel import Identity, load_template
from cpe_simulator.faults import FAULT_STRINGS, CpeFault
from cpe_simulator.tree import DEFAULT_RPC_METHODS, ParameterTree

MS = "Device.ManagementServer."
SSID1 = "Device.WiFi.SSID.1.SSID"
PM = "Device.NAT.PortMapping."


class FakeClock:
    """A settable clock so UpTime and CurrentLocalTime are exact."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tree(clock: FakeClock) -> ParameterTree:
    return ParameterTree(
        load_template("tr181-gateway"),
        Identity.from_serial("SIM00000042", software_version="1.0.0"),
        acs_url="http://127.0.0.1:7547/cwmp",
        connection_request_url="http://127.0.0.1:30042/cr",
        connection_request_username="cruser",
        connection_request_password="crpass",
        acs_username="acsuser",
        acs_password="acspass",
        clock=clock,
    )


@pytest.fixture
def igd(clock: FakeClock) -> ParameterTree:
    return ParameterTree(
        load_template("tr098-gateway"),
        Identity.from_serial("SIM00000043"),
        acs_url="http://127.0.0.1:7547/cwmp",
        connection_request_url="http://127.0.0.1:30043/cr",
        clock=clock,
    )


def pv(name: str, value: str, xsd_type: str = "xsd:string") -> ParameterValueStruct:
    return ParameterValueStruct(name, value, xsd_type)


def values(tree: ParameterTree, *names: str) -> dict[str, str]:
    return {p.name: p.value for p in tree.get_parameter_values(list(names))}


def fault_of(call: object, *args: object) -> CpeFault:
    assert callable(call)
    with pytest.raises(CpeFault) as info:
        call(*args)
    return info.value


# ------------------------------------------------------------------ GetRPCMethods, faults


def test_get_rpc_methods(tree: ParameterTree) -> None:
    methods = tree.get_rpc_methods()
    assert methods == list(DEFAULT_RPC_METHODS)
    assert {"GetParameterValues", "SetParameterValues", "AddObject", "DeleteObject"} <= set(methods)


def test_cpe_fault_carries_the_spec_string() -> None:
    fault = CpeFault(9005)
    assert (fault.code, fault.string) == (9005, "Invalid parameter name")
    assert fault.set_parameter_values_faults == []
    assert CpeFault(9003, "custom").string == "custom"
    assert FAULT_STRINGS[9008] == "Attempt to set a non-writable parameter"


# ------------------------------------------------------------------ GetParameterNames


def test_gpn_empty_path(tree: ParameterTree) -> None:
    assert tree.get_parameter_names("", True) == [ParameterInfoStruct("Device.", False)]
    everything = tree.get_parameter_names("", False)
    names = [p.name for p in everything]
    assert names[0] == "Device."  # the root object is included
    assert len(names) == len(set(names))
    params = [n for n in names if not n.endswith(".")]
    assert len(params) == load_template("tr181-gateway").parameter_count
    assert "Device.WiFi.SSID.4.SSID" in names and "Device.NAT.PortMapping." in names


def test_gpn_root_next_level(tree: ParameterTree) -> None:
    level = tree.get_parameter_names("Device.", True)
    names = [p.name for p in level]
    assert "Device." not in names
    assert "Device.RootDataModelVersion" in names
    assert "Device.DeviceInfo." in names and "Device.WiFi." in names
    # Only direct children: nothing two levels down.
    assert all(n[len("Device.") :].rstrip(".").count(".") == 0 for n in names)


def test_gpn_partial_path(tree: ParameterTree) -> None:
    level = {p.name: p.writable for p in tree.get_parameter_names("Device.WiFi.SSID.", True)}
    assert level == {f"Device.WiFi.SSID.{n}.": True for n in (1, 2, 3, 4)}
    one = {p.name: p.writable for p in tree.get_parameter_names("Device.WiFi.SSID.1.", True)}
    assert one["Device.WiFi.SSID.1.SSID"] is True
    assert one["Device.WiFi.SSID.1.BSSID"] is False
    assert one["Device.WiFi.SSID.1.Stats."] is False
    assert "Device.WiFi.SSID.1.Stats.BytesSent" not in one
    subtree = [p.name for p in tree.get_parameter_names("Device.WiFi.SSID.1.", False)]
    assert subtree[0] == "Device.WiFi.SSID.1."
    assert "Device.WiFi.SSID.1.Stats.BytesSent" in subtree
    assert not any(n.startswith("Device.WiFi.SSID.2.") for n in subtree)
    hosts = tree.get_parameter_names("Device.Hosts.Host.", True)
    assert all(p.writable is False for p in hosts) and len(hosts) == 8


def test_gpn_parameter(tree: ParameterTree) -> None:
    assert tree.get_parameter_names(SSID1, False) == [ParameterInfoStruct(SSID1, True)]
    assert fault_of(tree.get_parameter_names, SSID1, True).code == 9003


@pytest.mark.parametrize(
    "path",
    [
        "Device.Nothing.",
        "Device.WiFi.SSID.9.",
        "Device.WiFi.SSID.01.",
        "Device.WiFi.SSID.1.NoSuch",
        "InternetGatewayDevice.",
        "Device.WiFi.SSID.1.SSID.",
        "Device..",
    ],
)
def test_gpn_unknown_path(tree: ParameterTree, path: str) -> None:
    assert fault_of(tree.get_parameter_names, path, False).code == 9005


# ------------------------------------------------------------------ GetParameterValues


def test_gpv_identity_and_defaults(tree: ParameterTree, clock: FakeClock) -> None:
    ident = tree.identity
    got = values(
        tree,
        "Device.DeviceInfo.SerialNumber",
        "Device.DeviceInfo.ManufacturerOUI",
        "Device.DeviceInfo.SoftwareVersion",
        "Device.Ethernet.Interface.2.MACAddress",
        SSID1,
        MS + "URL",
        MS + "ConnectionRequestURL",
        MS + "PeriodicInformInterval",
        "Device.DeviceInfo.UpTime",
    )
    assert got["Device.DeviceInfo.SerialNumber"] == "SIM00000042"
    assert got["Device.DeviceInfo.ManufacturerOUI"] == ident.oui
    assert got["Device.DeviceInfo.SoftwareVersion"] == "1.0.0"
    assert got["Device.Ethernet.Interface.2.MACAddress"] == ident.mac(2)
    assert got[SSID1] == ident.ssid(1)
    assert got[MS + "URL"] == "http://127.0.0.1:7547/cwmp"
    assert got[MS + "ConnectionRequestURL"] == "http://127.0.0.1:30042/cr"
    assert got[MS + "PeriodicInformInterval"] == "3600"
    assert got["Device.DeviceInfo.UpTime"] == "0"
    clock.now += 125.7
    assert values(tree, "Device.DeviceInfo.UpTime")["Device.DeviceInfo.UpTime"] == "125"
    assert tree.uptime == 125


def test_gpv_types_partial_paths_and_hidden(tree: ParameterTree) -> None:
    got = tree.get_parameter_values(["Device.ManagementServer."])
    by_name = {p.name: p for p in got}
    assert by_name[MS + "PeriodicInformInterval"].xsd_type == "xsd:unsignedInt"
    assert by_name[MS + "PeriodicInformEnable"].xsd_type == "xsd:boolean"
    # Passwords read back empty (the model's hidden/secured) but the device knows them.
    assert by_name[MS + "ConnectionRequestPassword"].value == ""
    assert tree.connection_request_password == "crpass"
    assert tree.management_server_password == "acspass"
    assert all(p.name.startswith(MS) for p in got)
    assert len(tree.get_parameter_values(["Device."])) == len(tree.get_parameter_values([""]))


def test_gpv_unknown_name_faults(tree: ParameterTree) -> None:
    assert fault_of(tree.get_parameter_values, [SSID1, "Device.Bogus"]).code == 9005
    assert fault_of(tree.get_parameter_values, ["Device.WiFi.SSID.7."]).code == 9005


def test_number_of_entries_is_live(tree: ParameterTree) -> None:
    count = "Device.NAT.PortMappingNumberOfEntries"
    assert values(tree, count)[count] == "0"
    tree.add_object(PM, "")
    tree.add_object(PM, "")
    assert values(tree, count)[count] == "2"
    assert values(tree, "Device.WiFi.SSIDNumberOfEntries")["Device.WiFi.SSIDNumberOfEntries"] == "4"


# ------------------------------------------------------------------ SetParameterValues


def test_spv_applies_and_sets_parameter_key(tree: ParameterTree) -> None:
    status = tree.set_parameter_values(
        [
            pv(SSID1, "HomeNet"),
            pv(MS + "PeriodicInformInterval", "600", "xsd:unsignedInt"),
            pv(MS + "PeriodicInformEnable", "false", "xsd:boolean"),
            pv(MS + "ConnectionRequestPassword", "newsecret"),
        ],
        "key-1",
    )
    assert status == 0
    assert values(tree, SSID1)[SSID1] == "HomeNet"
    assert tree.periodic_inform_interval == 600
    assert tree.periodic_inform_enable is False
    assert tree.connection_request_password == "newsecret"
    assert tree.parameter_key == "key-1"
    # Writing a value equal to the default keeps no override.
    tree.set_parameter_values([pv(SSID1, tree.identity.ssid(1))], "key-2")
    assert tree._values is not None and SSID1 not in tree._values


def test_spv_accepts_other_type_prefixes_and_boolean_forms(tree: ParameterTree) -> None:
    tree.set_parameter_values([pv(MS + "PeriodicInformEnable", "0", "cwmp:boolean")], "")
    assert tree.periodic_inform_enable is False
    tree.set_parameter_values(
        [pv(MS + "PeriodicInformTime", "2026-12-01T03:00:00Z", "xsd:dateTime")], ""
    )
    when = tree.periodic_inform_time
    assert when is not None and when.hour == 3
    assert tree.set_parameter_values([pv("Device.WiFi.Reset", "true", "xsd:boolean")], "") == 0
    # A command parameter triggers; it does not keep the written value.
    assert values(tree, "Device.WiFi.Reset")["Device.WiFi.Reset"] == "false"


@pytest.mark.parametrize(
    ("struct", "code"),
    [
        (pv("Device.DeviceInfo.NoSuchThing", "x"), 9005),
        (pv("Device.WiFi.SSID.9.SSID", "x"), 9005),
        (pv("Device.DeviceInfo.SerialNumber", "x"), 9008),
        (pv("Device.DeviceInfo.UpTime", "1", "xsd:unsignedInt"), 9008),
        (pv(MS + "PeriodicInformInterval", "600", "xsd:string"), 9006),
        (pv(MS + "PeriodicInformInterval", "ten", "xsd:unsignedInt"), 9006),
        (pv(MS + "PeriodicInformInterval", "-5", "xsd:unsignedInt"), 9006),
        (pv(MS + "PeriodicInformInterval", "4294967296", "xsd:unsignedInt"), 9006),
        (pv(MS + "PeriodicInformEnable", "yes", "xsd:boolean"), 9006),
        (pv(MS + "PeriodicInformTime", "tomorrow", "xsd:dateTime"), 9006),
        (pv(MS + "PeriodicInformInterval", "0", "xsd:unsignedInt"), 9007),  # range min 1
        (pv("Device.WiFi.AccessPoint.1.Security.ModeEnabled", "WEP-64"), 9007),  # not supported
        (pv("Device.WiFi.AccessPoint.1.Security.KeyPassphrase", "short"), 9007),  # 8..63
        (pv(SSID1, "x" * 33), 9007),
        (pv("Device.WiFi.Radio.1.OperatingFrequencyBand", "5GHz"), 9007),  # radio 1 is 2.4GHz
    ],
)
def test_spv_fault_codes(tree: ParameterTree, struct: ParameterValueStruct, code: int) -> None:
    fault = fault_of(tree.set_parameter_values, [struct], "k")
    assert fault.code == 9003
    assert [(f.parameter_name, f.fault_code) for f in fault.set_parameter_values_faults] == [
        (struct.name, code)
    ]
    assert fault.set_parameter_values_faults[0].fault_string == FAULT_STRINGS[code]
    assert tree.parameter_key == ""


def test_spv_is_atomic(tree: ParameterTree) -> None:
    before = {p.name: p.value for p in tree.get_parameter_values([""])}
    batch = [
        pv(SSID1, "HomeNet"),
        pv("Device.WiFi.SSID.2.SSID", "HomeNet-5G"),
        pv(MS + "PeriodicInformInterval", "60", "xsd:unsignedInt"),
        pv("Device.DeviceInfo.ProvisioningCode", "ABC"),
        pv("Device.Time.LocalTimeZone", "UTC0", "xsd:unsignedInt"),  # the one bad apple
    ]
    fault = fault_of(tree.set_parameter_values, batch, "key-x")
    assert fault.code == 9003
    assert [(f.parameter_name, f.fault_code) for f in fault.set_parameter_values_faults] == [
        ("Device.Time.LocalTimeZone", 9006)
    ]
    after = {p.name: p.value for p in tree.get_parameter_values([""])}
    assert after == before
    assert tree._values is None


def test_spv_reports_every_bad_parameter(tree: ParameterTree) -> None:
    fault = fault_of(
        tree.set_parameter_values,
        [pv("Device.Nope", "1"), pv(SSID1, "ok"), pv("Device.DeviceInfo.Manufacturer", "x")],
        "",
    )
    assert [(f.parameter_name, f.fault_code) for f in fault.set_parameter_values_faults] == [
        ("Device.Nope", 9005),
        ("Device.DeviceInfo.Manufacturer", 9008),
    ]


def test_spv_duplicate_name_is_invalid_arguments(tree: ParameterTree) -> None:
    fault = fault_of(tree.set_parameter_values, [pv(SSID1, "a"), pv(SSID1, "b")], "")
    assert fault.code == 9003 and fault.set_parameter_values_faults == []
    assert values(tree, SSID1)[SSID1] == tree.identity.ssid(1)


def test_spv_list_items_are_checked(tree: ParameterTree) -> None:
    path = "Device.WiFi.AccessPoint.1.WPS.ConfigMethodsEnabled"
    tree.set_parameter_values([pv(path, "PushButton,PIN")], "")
    assert values(tree, path)[path] == "PushButton,PIN"
    fault = fault_of(tree.set_parameter_values, [pv(path, "PushButton,Telepathy")], "")
    assert fault.set_parameter_values_faults[0].fault_code == 9007


# ------------------------------------------------------------------ attributes


def test_attributes_default_and_set(tree: ParameterTree) -> None:
    got = {
        a.name: a
        for a in tree.get_parameter_attributes([SSID1, "Device.DeviceInfo.SoftwareVersion"])
    }
    assert got[SSID1].notification == 0 and got[SSID1].access_list == []
    # forceEnabled in the model: active by default.
    assert got["Device.DeviceInfo.SoftwareVersion"].notification == 2
    tree.set_parameter_attributes(
        [SetParameterAttributesStruct(SSID1, True, 1, True, ["Subscriber"])]
    )
    (attr,) = tree.get_parameter_attributes([SSID1])
    assert (attr.notification, attr.access_list) == (1, ["Subscriber"])
    # Back to the defaults: nothing kept for this device.
    tree.set_parameter_attributes([SetParameterAttributesStruct(SSID1, True, 0, True, [])])
    assert tree._attrs is None


def test_attributes_partial_path(tree: ParameterTree) -> None:
    tree.set_parameter_attributes(
        [SetParameterAttributesStruct("Device.DeviceInfo.", True, 2, False, [])]
    )
    attrs = {a.name: a.notification for a in tree.get_parameter_attributes(["Device.DeviceInfo."])}
    assert attrs["Device.DeviceInfo.ProvisioningCode"] == 2
    # canDeny parameters under a partial path are left alone rather than failing the call.
    assert attrs["Device.DeviceInfo.UpTime"] == 0


def test_attribute_faults(tree: ParameterTree) -> None:
    uptime_active = SetParameterAttributesStruct("Device.DeviceInfo.UpTime", True, 2, False, [])
    ok = SetParameterAttributesStruct(SSID1, True, 1, False, [])
    assert fault_of(tree.set_parameter_attributes, [ok, uptime_active]).code == 9009
    assert tree._attrs is None  # validated before anything changed
    # Passive notification on UpTime is fine.
    tree.set_parameter_attributes(
        [SetParameterAttributesStruct("Device.DeviceInfo.UpTime", True, 1, False, [])]
    )
    force_off = SetParameterAttributesStruct(
        "Device.DeviceInfo.SoftwareVersion", True, 0, False, []
    )
    assert fault_of(tree.set_parameter_attributes, [force_off]).code == 9009
    unknown = SetParameterAttributesStruct("Device.Nope", True, 1, False, [])
    assert fault_of(tree.set_parameter_attributes, [unknown]).code == 9005
    bad_value = SetParameterAttributesStruct(SSID1, True, 9, False, [])
    assert fault_of(tree.set_parameter_attributes, [bad_value]).code == 9003
    assert fault_of(tree.get_parameter_attributes, ["Device.Nope."]).code == 9005


# ------------------------------------------------------------------ AddObject / DeleteObject


def test_add_object_creates_the_table_parameters(tree: ParameterTree) -> None:
    first = tree.add_object(PM, "add-1")
    second = tree.add_object(PM, "add-2")
    assert (first, second) == (1, 2)
    assert tree.parameter_key == "add-2"
    names = {p.name: p.writable for p in tree.get_parameter_names(f"{PM}1.", True)}
    assert {f"{PM}1.Enable", f"{PM}1.ExternalPort", f"{PM}1.InternalClient"} <= set(names)
    assert names[f"{PM}1.Status"] is False
    got = values(tree, f"{PM}1.Enable", f"{PM}1.Alias", f"{PM}2.Alias", f"{PM}1.Protocol")
    assert got[f"{PM}1.Enable"] == "false"
    assert (got[f"{PM}1.Alias"], got[f"{PM}2.Alias"]) == ("cpe-1", "cpe-2")
    tree.set_parameter_values(
        [
            pv(f"{PM}2.ExternalPort", "8080", "xsd:unsignedInt"),
            pv(f"{PM}2.InternalClient", "192.168.1.50"),
            pv(f"{PM}2.Enable", "true", "xsd:boolean"),
        ],
        "",
    )
    assert values(tree, f"{PM}2.ExternalPort")[f"{PM}2.ExternalPort"] == "8080"
    assert [p.name for p in tree.get_parameter_names(PM, True)] == [f"{PM}1.", f"{PM}2."]


def test_add_object_on_a_table_with_template_rows_and_nested_tables(tree: ParameterTree) -> None:
    number = tree.add_object("Device.IP.Interface.", "")
    assert number == 3
    # The new row comes with its sub-objects and (empty) sub-tables.
    names = [p.name for p in tree.get_parameter_names("Device.IP.Interface.3.", False)]
    assert "Device.IP.Interface.3.Stats.BytesSent" in names
    assert "Device.IP.Interface.3.IPv4Address." in names
    assert tree.add_object("Device.IP.Interface.3.IPv4Address.", "") == 1
    assert tree.add_object("Device.IP.Interface.1.IPv4Address.", "") == 2


def test_add_object_faults(tree: ParameterTree) -> None:
    assert fault_of(tree.add_object, "Device.NAT.Nothing.", "").code == 9005
    assert fault_of(tree.add_object, "Device.Hosts.Host.", "").code == 9003  # read-only table
    assert fault_of(tree.add_object, "Device.DeviceInfo.", "").code == 9003  # not a table
    assert fault_of(tree.add_object, "Device.WiFi.SSID.1.", "").code == 9003  # an instance
    assert fault_of(tree.add_object, "Device.NAT.PortMapping", "").code == 9005  # no dot
    assert tree.parameter_key == ""


def test_delete_object(tree: ParameterTree) -> None:
    tree.add_object(PM, "")
    tree.add_object(PM, "")
    tree.set_parameter_values([pv(f"{PM}1.Description", "web")], "")
    tree.delete_object(f"{PM}1.", "del-1")
    assert tree.parameter_key == "del-1"
    assert [p.name for p in tree.get_parameter_names(PM, True)] == [f"{PM}2."]
    assert fault_of(tree.get_parameter_values, [f"{PM}1.Description"]).code == 9005
    assert tree._values is not None and not any(k.startswith(f"{PM}1.") for k in tree._values)
    # Instance numbers are not reused.
    assert tree.add_object(PM, "") == 3
    tree.delete_object(f"{PM}3.", "")
    assert tree.add_object(PM, "") == 4
    # A template row of a writable table can be deleted too.
    tree.delete_object("Device.WiFi.SSID.4.", "")
    assert fault_of(tree.get_parameter_values, ["Device.WiFi.SSID.4.SSID"]).code == 9005
    assert tree.add_object("Device.WiFi.SSID.", "") == 5


def test_delete_object_faults(tree: ParameterTree) -> None:
    assert fault_of(tree.delete_object, f"{PM}1.", "").code == 9005
    assert fault_of(tree.delete_object, "Device.Hosts.Host.1.", "").code == 9003
    assert fault_of(tree.delete_object, PM, "").code == 9003  # the table, not a row
    assert fault_of(tree.delete_object, "Device.DeviceInfo.", "").code == 9003


# ------------------------------------------------------------------ device life, Inform


def test_factory_reset(tree: ParameterTree, clock: FakeClock) -> None:
    tree.set_parameter_values([pv(SSID1, "Mine"), pv(MS + "URL", "http://127.0.0.1:9/")], "k")
    tree.add_object(PM, "")
    tree.delete_object("Device.WiFi.SSID.3.", "")
    tree.set_parameter_attributes([SetParameterAttributesStruct(SSID1, True, 2, False, [])])
    clock.now += 1000
    tree.factory_reset()
    assert values(tree, SSID1)[SSID1] == tree.identity.ssid(1)
    assert tree.acs_url == "http://127.0.0.1:7547/cwmp"
    assert tree.parameter_key == ""
    assert tree.get_parameter_names(PM, True) == []
    assert len(tree.get_parameter_names("Device.WiFi.SSID.", True)) == 4
    assert tree.get_parameter_attributes([SSID1])[0].notification == 0
    assert tree.uptime == 0
    assert (tree._values, tree._attrs, tree._instances) == (None, None, None)
    # An upgraded device stays upgraded after a factory reset.
    tree.set_value_internal("Device.DeviceInfo.SoftwareVersion", "2.0.0")
    tree.factory_reset()
    assert tree.software_version == "2.0.0"


def test_inform_parameters(tree: ParameterTree, igd: ParameterTree) -> None:
    forced = {p.name: p.value for p in tree.inform_parameters()}
    assert forced["Device.RootDataModelVersion"] == "2.17"
    assert forced["Device.DeviceInfo.SoftwareVersion"] == "1.0.0"
    assert forced[MS + "ConnectionRequestURL"] == "http://127.0.0.1:30042/cr"
    assert forced["Device.IP.Interface.2.IPv4Address.1.IPAddress"] == tree.identity.wan_ip()
    assert {
        MS + "ParameterKey",
        "Device.DeviceInfo.HardwareVersion",
        "Device.DeviceInfo.ProvisioningCode",
    } <= set(forced)
    old = {p.name: p.value for p in igd.inform_parameters()}
    assert "InternetGatewayDevice.DeviceSummary" in old
    wan = (
        "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1."
        "ExternalIPAddress"
    )
    assert old[wan] == igd.identity.wan_ip()


def test_value_change_tracking(tree: ParameterTree) -> None:
    # SoftwareVersion is forceEnabled (active): a firmware install must start a session.
    tree.set_value_internal("Device.DeviceInfo.SoftwareVersion", "2.0.0")
    assert tree.software_version == "2.0.0"
    assert tree.has_active_notification_change()
    inform = {p.name: p.value for p in tree.inform_parameters()}
    assert inform["Device.DeviceInfo.SoftwareVersion"] == "2.0.0"
    assert tree.take_value_changes() == ["Device.DeviceInfo.SoftwareVersion"]
    assert tree.take_value_changes() == [] and not tree.has_active_notification_change()

    # Passive notification: recorded, reported with the next Inform, no session of its own.
    tree.set_parameter_attributes([SetParameterAttributesStruct(SSID1, True, 1, False, [])])
    tree.set_value_internal(SSID1, "Renamed")
    assert not tree.has_active_notification_change()
    assert SSID1 in {p.name for p in tree.inform_parameters()}
    assert tree.take_value_changes() == [SSID1]

    # Notification off, same value, or a change made by the ACS: nothing recorded.
    tree.set_value_internal("Device.WiFi.SSID.2.SSID", "Other")
    tree.set_value_internal(SSID1, "Renamed")
    tree.set_parameter_values([pv(SSID1, "ByACS")], "")
    assert tree.take_value_changes() == []

    # A deleted row drops its pending change.
    tree.add_object(PM, "")
    tree.set_parameter_attributes(
        [SetParameterAttributesStruct(f"{PM}1.Description", True, 1, False, [])]
    )
    tree.set_value_internal(f"{PM}1.Description", "x")
    tree.delete_object(f"{PM}1.", "")
    assert tree.take_value_changes() == []
    assert fault_of(tree.set_value_internal, "Device.Nope", "1").code == 9005


def test_uptime_reset_via_set_value_internal(tree: ParameterTree, clock: FakeClock) -> None:
    clock.now += 500
    tree.set_value_internal("Device.DeviceInfo.UpTime", "0")
    assert tree.uptime == 0
    clock.now += 30
    assert values(tree, "Device.DeviceInfo.UpTime")["Device.DeviceInfo.UpTime"] == "30"
    tree.reboot()
    assert tree.uptime == 0


def test_tr098_tree_semantics(igd: ParameterTree) -> None:
    assert igd.root == "InternetGatewayDevice."
    assert igd.periodic_inform_enable is True and igd.periodic_inform_interval == 3600
    wlan = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1."
    igd.set_parameter_values(
        [pv(wlan + "SSID", "Casa"), pv(wlan + "Enable", "0", "xsd:boolean")], "p"
    )
    assert values(igd, wlan + "SSID")[wlan + "SSID"] == "Casa"
    table = "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.PortMapping."
    assert igd.add_object(table, "") == 1
    assert f"{table}1.ExternalPort" in values(igd, f"{table}1.")


# ------------------------------------------------------------------ density


def test_memory_per_device() -> None:
    template = load_template("tr181-gateway")
    count = 2000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        trees = [
            ParameterTree(
                template,
                Identity.from_serial(f"SIM{i:08d}"),
                acs_url="http://127.0.0.1:7547/cwmp",
                connection_request_url=f"http://127.0.0.1:{30000 + i}/cr",
                connection_request_username=f"cr{i}",
                connection_request_password="secret",
            )
            for i in range(count)
        ]
        fresh = (tracemalloc.get_traced_memory()[0] - before) / count
        for i, t in enumerate(trees):
            t.set_parameter_values(
                [pv(SSID1, f"net{i}"), pv(MS + "PeriodicInformInterval", "300", "xsd:unsignedInt")],
                "k",
            )
            t.add_object(PM, "")
        configured = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    print(f"\nbytes per device: fresh {fresh:.0f}, after SPV+AddObject {configured:.0f}")
    assert fresh < 20_000
    assert configured < 100_000
    assert len(trees) == count
